// The row-interleaved (x4) forms of q4_0 / q8_0 matrices (src/backends/wasm/repack.ts): read back
// by a dequantizer written here from the layout's description alone, every matrix gives exactly
// the values ggml's dequantization gives for the plain matrix. Shapes include row counts that are
// not a multiple of 4 (plain rows after the groups), fewer than 4 rows, and K = 32.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dequantize, quantize } from '../src/formats/ggml-quants.js';
import { f16ToF32 } from '../src/formats/dtypes.js';
import { repackX4 } from '../src/backends/wasm/repack.js';
import { rand } from './helpers/wasm-heap.js';

const SHAPES: ReadonlyArray<readonly [number, number]> = [
  [4, 32],
  [1, 64],
  [3, 32],
  [5, 96],
  [8, 32],
  [13, 160],
  [16, 256],
];

/** Values of an x4 matrix, read as the layout is described (groups, then plain leftover rows). */
function dequantizeX4(t: 'q4_0' | 'q8_0', bytes: Uint8Array, rows: number, K: number): Float32Array {
  const nb = K / 32,
    q = t === 'q4_0' ? 16 : 32,
    blk = 8 + 4 * q;
  const out = new Float32Array(rows * K);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const groups = Math.floor(rows / 4);
  for (let g = 0; g < groups; g++)
    for (let b = 0; b < nb; b++) {
      const at = g * nb * blk + b * blk;
      for (let i = 0; i < 4; i++) {
        const d = f16ToF32(dv.getUint16(at + 2 * i, true));
        const qs = at + 8 + i * q,
          y = (4 * g + i) * K + b * 32;
        for (let j = 0; j < 32; j++) {
          let v: number;
          if (t === 'q4_0') {
            const byte = bytes[qs + (j & 15)]!;
            v = (j < 16 ? byte & 15 : byte >> 4) - 8;
          } else v = dv.getInt8(qs + j);
          out[y + j] = Math.fround(v * d);
        }
      }
    }
  const rest = 4 * groups;
  const plainRow = nb * (t === 'q4_0' ? 18 : 34);
  out.set(dequantize(t, bytes.subarray(rest * plainRow), (rows - rest) * K), rest * K);
  return out;
}

test('x4 repacked q4_0 / q8_0 matrices dequantize to the plain matrices values, leftover rows plain', () => {
  for (const t of ['q4_0', 'q8_0'] as const)
    for (const [rows, K] of SHAPES) {
      const plain = quantize(t, rand(rows * K, rows * 7 + K, 3));
      const packed = repackX4(t, plain, rows, K);
      assert.equal(packed.length, plain.length);
      assert.deepEqual(dequantizeX4(t, packed, rows, K), dequantize(t, plain, rows * K), `${t} ${rows}×${K}`);
      if (rows % 4 !== 0) {
        const tail = (rows - (rows % 4)) * (K / 32) * (t === 'q4_0' ? 18 : 34);
        assert.deepEqual(packed.subarray(tail), plain.subarray(tail), 'leftover rows stay as stored');
      }
    }
});

test('repackX4 refuses a row length that is not whole blocks or too few bytes', () => {
  assert.throws(() => repackX4('q4_0', new Uint8Array(18 * 4), 4, 48), RangeError);
  assert.throws(() => repackX4('q8_0', new Uint8Array(34 * 3), 4, 32), RangeError);
});
