/**
 * The lookup tables at [0, TABLES_END) of a memory survive every later instantiation of the kernels
 * on it, as each worker of a pool makes one on the shared memory after the first filled the tables.
 * A module with a data segment (once the standard library's log2 table, at 1024) wrote it over
 * fp16 entries 0x0100-0x013f there, under every loaded model.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kernelModule } from '../src/backends/wasm/module-loader.js';
import { TABLES_END, instantiateKernels } from '../src/backends/wasm/kernels.js';
import { f16ToF32 } from '../src/formats/dtypes.js';
import { BUILDS, Heap, buildName } from './helpers/wasm-heap.js';

for (const variant of BUILDS) {
  test(`fp16 table and constants unchanged by further instantiations (${buildName(variant)})`, () => {
    const heap = new Heap(variant);
    const before = heap.u8(0, TABLES_END).slice();
    for (let i = 0; i < 3; i++) instantiateKernels(kernelModule(variant), heap.memory);
    const after = heap.u8(0, TABLES_END);
    let firstDiff = -1;
    for (let i = 0; i < TABLES_END && firstDiff < 0; i++) if (after[i] !== before[i]) firstDiff = i;
    assert.equal(
      firstDiff,
      -1,
      `byte ${firstDiff} of the tables changed (fp16 entry 0x${(firstDiff >> 2).toString(16)})`,
    );
    const table = heap.f32(0, 65536);
    for (let h = 0; h < 65536; h++) {
      const want = f16ToF32(h);
      if (!Object.is(table[h], want) && !(Number.isNaN(want) && Number.isNaN(table[h])))
        assert.fail(`fp16 0x${h.toString(16)}: table holds ${table[h]}, the value is ${want}`);
    }
  });
}
