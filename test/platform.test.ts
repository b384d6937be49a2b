// The platform boundary in Node (the browser side runs in test/web-wasm.test.ts): index.ts picks
// node.ts here, its yield lets queued tasks run, and a page that may not create a shared wasm
// memory gets a typed error naming the headers it needs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkSharedWasmMemory } from '../src/backends/wasm/inline-pool.js';
import { PlatformError } from '../src/errors.js';
import { platform } from '../src/platform/index.js';

test('in Node the platform is node.ts: shared memory with workers, the cores and RAM of the machine', () => {
  assert.equal(platform.name, 'node');
  assert.equal(platform.canShareMemoryWithWorkers(), true);
  assert.ok(platform.hardwareConcurrency() >= 1);
  assert.ok(platform.totalMemory()! > 0);
});

test('yieldToEventLoop lets the tasks queued before it run (generate.ts yields between steps)', async () => {
  const ran: string[] = [];
  setImmediate(() => ran.push('immediate'));
  await platform.yieldToEventLoop();
  assert.deepEqual(ran, ['immediate']);
});

test('no shared wasm memory (some browsers, a page not cross-origin isolated): PlatformError naming COOP/COEP', () => {
  checkSharedWasmMemory(); // Node may
  const Memory = WebAssembly.Memory;
  // What such a browser answers (Firefox's words).
  const refusing = function (this: unknown, d: WebAssembly.MemoryDescriptor) {
    if (d.shared) throw new TypeError('WebAssembly.Memory: shared memory is disabled');
    return new Memory(d);
  };
  WebAssembly.Memory = refusing as unknown as typeof WebAssembly.Memory;
  try {
    assert.throws(
      () => checkSharedWasmMemory(),
      (e: unknown) =>
        e instanceof PlatformError &&
        /shared memory is disabled/.test(e.message) &&
        /Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp/.test(e.message),
    );
  } finally {
    WebAssembly.Memory = Memory;
  }
});
