/**
 * What `backend: 'auto'` picks (backends/choose.ts), given WebGPU adapters of the test's making:
 * none, a software one, one whose buffers are smaller than the model's largest tensor (named), and
 * one that holds every tensor. The byte counts come from the WebGPU backend's own layout of each
 * tensor, checked here against the fixture's tensor sizes; in Node, 'auto' is the wasm backend.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chooseBackend, webgpuVerdict } from '../src/backends/choose.js';
import { gpuTensorBytes } from '../src/backends/webgpu/weights.js';
import { openCheckpoint } from '../src/model/load.js';
import { expectedTensors } from '../src/model/weights-layout.js';
import { fixturePath } from './helpers/goldens.js';

function gpuWith(adapter: object | null) {
  return { requestAdapter: async () => adapter as never };
}

test('a WebGPU without an adapter is asked once (the browser warns at each null answer), one with adapters each time', async () => {
  const ck = await openCheckpoint(fixturePath('tiny-gqa'));
  try {
    const asked = (adapter: object | null) => {
      const gpu = {
        calls: 0,
        requestAdapter: async () => {
          gpu.calls++;
          return adapter as never;
        },
      };
      return gpu;
    };
    const none = asked(null);
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await webgpuVerdict(none, ck), { ok: false, why: 'WebGPU has no adapter here' });
    }
    assert.equal(none.calls, 1);
    // Another navigator.gpu (another page) asks for itself.
    const other = asked(null);
    await webgpuVerdict(other, ck);
    assert.equal(other.calls, 1);
    // An adapter is asked for at each load: adapters are used up by the device opened on them.
    const soft = asked({ limits: {}, info: { isFallbackAdapter: true } });
    await webgpuVerdict(soft, ck);
    await webgpuVerdict(soft, ck);
    assert.equal(soft.calls, 2);
  } finally {
    await ck.tensors.close();
  }
});

test("'auto' and a page's WebGPU adapter: none, software, too small (naming the tensor), fitting", async () => {
  const ck = await openCheckpoint(fixturePath('tiny-gqa'));
  try {
    const sizes = expectedTensors(ck.config).map((t) => ({
      name: t.name,
      bytes: gpuTensorBytes(ck.tensors.info(t.name)!),
    }));
    const largest = sizes.reduce((a, b) => (b.bytes > a.bytes ? b : a));
    // The embedding matrix is the largest tensor, and it takes at least its f32 bytes on the GPU.
    assert.equal(largest.name, 'transformer.wte.weight');
    assert.ok(largest.bytes >= ck.config.vocabSize * ck.config.dModel * 4);

    assert.deepEqual(await webgpuVerdict(undefined, ck), { ok: false, why: 'this browser has no WebGPU' });
    assert.equal((await webgpuVerdict(gpuWith(null), ck)).ok, false);
    const soft = await webgpuVerdict(gpuWith({ limits: {}, info: { isFallbackAdapter: true } }), ck);
    assert.match((soft as { why: string }).why, /software/);
    const limits = { maxStorageBufferBindingSize: largest.bytes - 4, maxBufferSize: 1 << 30 };
    const small = await webgpuVerdict(gpuWith({ limits, info: { description: 'Test GPU' } }), ck);
    assert.equal(small.ok, false);
    assert.match(
      (small as { why: string }).why,
      new RegExp(`tensor ${largest.name} takes ${largest.bytes} bytes.*Test GPU`),
    );
    const fits = await webgpuVerdict(
      gpuWith({ limits: { ...limits, maxStorageBufferBindingSize: largest.bytes } }),
      ck,
    );
    assert.deepEqual(fits, { ok: true, adapter: 'a GPU' });
  } finally {
    await ck.tensors.close();
  }
  assert.equal((await chooseBackend('auto', ck)).name, 'wasm', "Node: 'auto' is the wasm backend");
  assert.equal((await chooseBackend('reference')).name, 'reference');
});
