// Q4_K / Q5_K / Q6_K quantizers against ggml itself: byte for byte against the tensors
// llama-quantize wrote into the gguf-tiny-q fixture files (no imatrix, so ggml's
// quantize_row_*_ref), byte for byte against ggml's reference quantizers on odd inputs (digests
// below), and error bounds that follow from the block formats' definitions.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { FormatError, InputError } from '../src/errors.js';
import { f16ToF32 } from '../src/formats/dtypes.js';
import { dequantize, quantize, quantizeMatrix } from '../src/formats/ggml-quants.js';
import { readGguf } from '../src/formats/gguf.js';
import { kquantJs } from '../src/formats/kquant-quantize.js';
import { scaleMinK4 } from '../src/formats/kquant-scales.js';
import { wasmKQuant, type KQuantType } from '../src/formats/kquant-wasm.js';
import type { DType } from '../src/formats/tensor-source.js';
import { fixturePath } from './helpers/goldens.js';

const K: DType[] = ['q4_k', 'q5_k', 'q6_k'];
const Q = fixturePath('gguf-tiny-q');

describe('k-quant quantizers reproduce llama-quantize (gguf-tiny-q fixture)', () => {
  it('every Q4_K / Q5_K / Q6_K tensor of the pure and Q4_K_M files, from the F32 file', async (t) => {
    const f32 = await readGguf(`${Q}/tiny-q-f32.gguf`);
    const ours = new Map<string, Uint8Array>(); // "type name" -> our bytes, shared between files
    let tensors = 0,
      bytes = 0;
    try {
      for (const file of ['q4_k', 'q5_k', 'q6_k', 'q4_k_m']) {
        const q = await readGguf(`${Q}/tiny-q-${file}.gguf`);
        try {
          for (const info of q.tensors) {
            if (!K.includes(info.dtype)) continue;
            const key = `${info.dtype} ${info.name}`;
            let mine = ours.get(key);
            if (mine === undefined) {
              const raw = await f32.readTensor(info.name);
              mine = quantize(info.dtype, dequantize('f32', raw, raw.length / 4));
              ours.set(key, mine);
            }
            const theirs = await q.readTensor(info.name);
            assert.equal(mine.length, theirs.length, `${file} ${info.name}`);
            if (Buffer.compare(Buffer.from(mine), Buffer.from(theirs)) !== 0) {
              let first = 0;
              while (mine[first] === theirs[first]) first++;
              assert.fail(
                `${file}: ${info.name} (${info.dtype}) differs from llama-quantize's bytes, first at byte ${first}`,
              );
            }
            tensors++;
            bytes += mine.length;
          }
        } finally {
          await q.close();
        }
      }
    } finally {
      await f32.close();
    }
    t.diagnostic(`${tensors} tensors (${bytes} bytes) identical to llama-quantize's`);
    assert.equal(tensors, 36); // 3 × 9 pure + 9 in Q4_K_M (5 Q4_K, 2 Q5_K, 2 Q6_K)
  });
});

/**
 * Odd inputs. The digests are the first 16 hex digits of sha256 of ggml's own output for each
 * case: quantize_row_{q4,q5,q6}_K_ref in node-llama-cpp 3.21.1's libggml-base.so (llama.cpp
 * 80fb11ac, a scalar SSE build without FMA), called from Python through ctypes on the float32
 * values edgeCases() produces:
 *   fn(src.ctypes.data_as(c_void_p), dst, c_int64(n)); sha256(bytes(dst)).hexdigest()[:16]
 */
const GGML_DIGESTS: [string, string, string, string][] = [
  ['N(0, 0.001)', '9b630607529da474', 'd7336da4b6251178', '044c69fe9d6db570'],
  ['N(0, 1)', 'f006899eb04c6265', '4b55b7b9ea675f18', '18cda8a481bd2fdb'],
  ['N(0, 1000)', 'faac83eb07766bd8', 'e8c53ce9f9b74ec1', 'b7212d960c55482d'],
  ['zeros', '2d5565fb483d8ea4', '627f6149015f853f', 'de1da8f3791deb5e'],
  ['negative zeros', '2d5565fb483d8ea4', '627f6149015f853f', 'de1da8f3791deb5e'],
  ['constant 0.7', '06ab6e392af26842', '65a416baaacc6be7', '6c3b2d6e8611fd1f'],
  ['constant -3', 'e342de0947696ba6', 'c628b9ccb86f8198', '433603c80c30eb09'],
  ['one outlier', '303a527609f0b396', 'b67defab3d81e31b', '9e9094f01c85e0ec'],
  ['negative outlier', 'dc9f51840fa7f103', '4f2b4ce1bde8f50b', '3db2c06a184f4ab5'],
  ['outlier in every 32', 'bb7d4a9ae126704f', '6c08bc82abb2b965', 'f38a4ca8a44341a1'],
  ['tiny (fp16 scales underflow)', '81772e6df4860c15', 'b40a904cbc01de6b', 'de1da8f3791deb5e'],
  ['small (fp16 subnormal scales)', '5d647b8208feec16', 'ff551867552a49af', '7fc96ed34a1a54d9'],
  ['huge (fp16 scales overflow)', 'e0ffd1ebdfd74625', '34ddae146d26bf99', 'e25a57adba1cfb66'],
  ['all positive', 'ca505ee0a114415b', '64a1f69100a42415', '9f29a1854e7d0e84'],
  ['all negative', 'f2eabb8bc9a51707', 'e4d8286aa71e0c92', 'e5bc551b3b5ef8f4'],
  ['sparse', 'df6ac675570e0265', '9d0d629daed8c42b', '558b20e7be4e1002'],
  ['zero 16-groups', '4a20e2cc188f3836', '871b97f49bdcd540', '0bc9b9bf8bbddc68'],
  ['zero 32-groups', '244ca85edd54aba5', 'ad61d6be37a3ea2b', 'c39bff769b03ce12'],
  ['integers (ties)', 'c75c1e0899a999a4', '42c9eee58e7a4213', 'bdcf577199364609'],
  ['halves (ties)', '74a58b9ffd3381c3', '3d55335f9427a0d1', '31c246c5858c3b30'],
  ['uniform', 'bc7c9e17b21c7f4e', 'd5f18a3b48b588bc', 'ae02ee3624b8da32'],
  ['heavy tail', '1d6279d4ecd31991', 'b97637854ec4660a', '462b0d07098edcaa'],
  ['ramp', '2ee82319d31dcd00', '6a0239b60cdeb14f', 'c02e8c23775041b4'],
  ['alternating signs', 'a512e613422251d5', '7de3d3bf2c305f5a', '7fee46a67bea41d4'],
  ['one value per block', '5c70cc37d2cad4bf', '661e5945cdd27d54', 'a8482903cb9bddc7'],
  ['scales differ per 32', '483cd439d2382251', '80e6611e254eec69', 'fe918667d1cf9dee'],
  ['scales differ per 16', 'f2e4ce522c4a2dac', '9220d4e027838388', 'b6dae106be19ec86'],
  ['infinity', 'c991738371dbbcd4', '2f1739a122ab41ba', '3680ff3a49d1d0b2'],
  ['NaN', '723e48a1cd2d716c', '983a604fe53ef6a7', 'c8383fd37ad3ac57'],
];

/** The inputs behind GGML_DIGESTS (change nothing here without regenerating them). */
function edgeCases(): { name: string; x: Float32Array }[] {
  let state = 20250220;
  const u = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state + 0.5) / 2 ** 32;
  };
  const g = () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  const cases: { name: string; x: Float32Array }[] = [];
  const add = (name: string, f: (i: number) => number, n = 512) => {
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = f(i);
    cases.push({ name, x });
  };
  for (const s of [1e-3, 1, 1e3]) add(`N(0, ${s})`, () => s * g(), 1024);
  add('zeros', () => 0);
  add('negative zeros', () => -0);
  add('constant 0.7', () => 0.7);
  add('constant -3', () => -3);
  add('one outlier', (i) => (i === 77 ? 5000 : g()));
  add('negative outlier', (i) => (i === 300 ? -1e4 : 0.01 * g()));
  add('outlier in every 32', (i) => (i % 32 === 5 ? 100 * g() : g()));
  add('tiny (fp16 scales underflow)', () => 1e-20 * g());
  add('small (fp16 subnormal scales)', () => 1e-6 * g());
  add('huge (fp16 scales overflow)', () => 1e6 * g());
  add('all positive', () => 1 + u());
  add('all negative', () => -1 - u());
  add('sparse', () => (u() < 0.05 ? g() : 0));
  add('zero 16-groups', (i) => ((i >> 4) % 3 === 0 ? 0 : g()));
  add('zero 32-groups', (i) => ((i >> 5) % 2 === 0 ? 0 : g()));
  add('integers (ties)', () => Math.round(8 * g()));
  add('halves (ties)', () => Math.round(8 * g()) / 2);
  add('uniform', () => 2 * u() - 1);
  add('heavy tail', () => Math.tan(Math.PI * (u() - 0.5)));
  add('ramp', (i) => i / 512);
  add('alternating signs', (i) => (i % 2 ? 1 : -1));
  add('one value per block', (i) => (i % 256 === 3 ? 2.5 : 0));
  add('scales differ per 32', (i) => g() * 10 ** (((i >> 5) % 7) - 3));
  add('scales differ per 16', (i) => g() * 10 ** (((i >> 4) % 9) - 4));
  add('infinity', (i) => (i === 10 ? Infinity : g()));
  add('NaN', (i) => (i === 10 ? NaN : g()));
  return cases;
}

describe('k-quant quantizers reproduce ggml on odd inputs', () => {
  const cases = edgeCases();
  it('has one digest row per case', () => {
    assert.deepEqual(
      cases.map((c) => c.name),
      GGML_DIGESTS.map((d) => d[0]),
    );
  });
  for (const [ti, t] of K.entries()) {
    it(`${t}: every case's bytes hash like ggml's quantize_row_${t.slice(0, 2)}_K_ref output`, () => {
      const bad: string[] = [];
      for (const [i, c] of cases.entries()) {
        const digest = createHash('sha256').update(quantize(t, c.x)).digest('hex').slice(0, 16);
        if (digest !== GGML_DIGESTS[i]![ti + 1]) bad.push(c.name);
      }
      assert.deepEqual(bad, []);
    });
  }
});

describe('the wasm k-quant quantizers (the ones in use) and the plain-JS copy give the same bytes', () => {
  it('is the wasm copy that quantize() runs here', () => {
    const wasm = wasmKQuant();
    assert.ok(wasm, 'kernels-base.wasm should load');
    const calls: string[] = [];
    const original = wasm.quantize;
    wasm.quantize = function (this: typeof wasm, dtype, x) {
      calls.push(dtype);
      return original.call(this, dtype, x);
    };
    try {
      for (const t of K) quantize(t, gaussian(256, 5));
    } finally {
      wasm.quantize = original;
    }
    assert.deepEqual(calls, K);
  });
  for (const t of K) {
    it(`${t}: every odd-input case, and 600 super-blocks of mixed scales`, () => {
      const wasm = wasmKQuant()!;
      const rows = [
        ...edgeCases().map((c) => c.x),
        (() => {
          const g = gaussian(600 * 256, 99);
          for (let i = 0; i < g.length; i++) g[i] = g[i]! * 10 ** (((i >> 5) % 9) - 4) * (i % 97 === 0 ? 300 : 1);
          return g;
        })(),
      ];
      const kt = t as KQuantType;
      for (const [i, x] of rows.entries()) assert.deepEqual(wasm.quantize(kt, x), kquantJs[kt](x), `row set ${i}`);
    });
  }
});

/** Deterministic N(0, 1) float32 values. */
function gaussian(n: number, seed: number): Float32Array {
  let state = seed >>> 0;
  const u = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state + 0.5) / 2 ** 32;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

function rmse(t: DType, x: Float32Array): number {
  const y = dequantize(t, quantize(t, x), x.length);
  let e = 0;
  for (let i = 0; i < x.length; i++) e += (y[i]! - x[i]!) ** 2;
  return Math.sqrt(e / x.length);
}

const half = (b: Uint8Array, o: number) => f16ToF32(b[o]! | (b[o + 1]! << 8));

describe('k-quant round trips', () => {
  it("Gaussian rows: RMSE within each type's budget and below the 32-block types of the same size", () => {
    const x = gaussian(256 * 64, 11);
    const r = Object.fromEntries(
      (['q4_0', 'q4_1', 'q5_0', 'q5_1', 'q4_k', 'q5_k', 'q6_k'] as DType[]).map((t) => [t, rmse(t, x)]),
    );
    // 4.5 / 5.5 / 6.56 bits per weight: uniform-step estimates σ·range/(levels·√12) give ≈ .075 / .037 / .018
    assert.ok(r['q4_k']! < 0.08, `q4_k ${r['q4_k']}`);
    assert.ok(r['q5_k']! < 0.04, `q5_k ${r['q5_k']}`);
    assert.ok(r['q6_k']! < 0.02, `q6_k ${r['q6_k']}`);
    assert.ok(r['q4_k']! < r['q4_0']! && r['q4_k']! < r['q4_1']!, JSON.stringify(r));
    assert.ok(r['q5_k']! < r['q5_0']! && r['q5_k']! < r['q5_1']!, JSON.stringify(r));
  });

  it("each element decodes to the nearest level of its sub-block's fp16 scales, unless clamped", () => {
    const x = gaussian(256 * 16, 5);
    for (const t of ['q4_k', 'q5_k'] as const) {
      const b = quantize(t, x);
      const y = dequantize(t, b, x.length);
      const bs = t === 'q4_k' ? 144 : 176,
        top = t === 'q4_k' ? 15 : 31;
      for (let i = 0; i < x.length; i++) {
        const o = Math.floor(i / 256) * bs;
        const [sc, m] = scaleMinK4((i % 256) >> 5, b, o + 4);
        const step = half(b, o) * sc,
          lo = -half(b, o + 2) * m;
        const clamped = x[i]! < lo || x[i]! > lo + top * step;
        if (!clamped)
          assert.ok(Math.abs(y[i]! - x[i]!) <= step / 2 + 1e-6, `${t} element ${i}: |${y[i]} - ${x[i]}| > ${step / 2}`);
      }
    }
    const b = quantize('q6_k', x);
    const y = dequantize('q6_k', b, x.length);
    for (let i = 0; i < x.length; i++) {
      const o = Math.floor(i / 256) * 210;
      const step = Math.abs(half(b, o + 208) * ((b[o + 192 + ((i % 256) >> 4)]! << 24) >> 24));
      if (Math.abs(x[i]!) <= 31 * step) assert.ok(Math.abs(y[i]! - x[i]!) <= step / 2 + 1e-6, `q6_k element ${i}`);
    }
  });

  it('zeros decode to zeros; constant rows keep their value to fp16 precision', () => {
    for (const t of K) {
      assert.ok(
        dequantize(t, quantize(t, new Float32Array(512)), 512).every((v) => v === 0),
        t,
      );
      for (const c of [0.7, -3, 12.5]) {
        const y = dequantize(t, quantize(t, new Float32Array(256).fill(c)), 256);
        // d (and dmin) are fp16 (relative step 2^-11) times exact small integers
        assert.ok(
          y.every((v) => Math.abs(v - c) <= Math.abs(c) * 2 ** -10),
          `${t} constant ${c}: ${y[0]}`,
        );
      }
    }
  });

  it('an outlier keeps its own value and spoils only its super-block', () => {
    for (const t of K) {
      const x = gaussian(512, 3);
      x[77] = 5000;
      const y = dequantize(t, quantize(t, x), 512);
      assert.ok(Math.abs(y[77]! - 5000) <= 5000 * 1e-3, `${t}: outlier -> ${y[77]}`);
      assert.ok(y.every(Number.isFinite));
      let far = 0;
      for (let i = 256; i < 512; i++) far = Math.max(far, Math.abs(y[i]! - x[i]!));
      assert.ok(far < 0.3, `${t}: the next super-block's error ${far}`);
    }
  });

  it('refuses lengths that are not whole super-blocks, naming the tensor when given', () => {
    for (const t of K) {
      assert.throws(() => quantize(t, new Float32Array(128)), FormatError);
      assert.throws(
        () => quantizeMatrix(t, new Float32Array(4 * 160), 4, 160, 'blk.0.ffn_up.weight'),
        (e: unknown) => e instanceof InputError && /blk\.0\.ffn_up\.weight/.test(e.message) && /256/.test(e.message),
      );
      assert.equal(
        quantizeMatrix(t, new Float32Array(2 * 256), 2, 256, 'x').length,
        quantize(t, new Float32Array(512)).length,
      );
    }
  });
});
