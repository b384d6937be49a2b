/**
 * The sampling arithmetic: the wasm SIMD kernels and their plain-JS copy give the same bits
 * (weights, totals, maxima, draws) on rows of every length and on hostile values; the f32 exp
 * is within a few ulp of Math.exp; the top-p shortcut (only tokens that can be reached are
 * sorted) keeps what the definition keeps on a large vocabulary; draws over a realistic
 * vocabulary follow the tempered softmax computed independently in f64.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WasmSamplingKernels } from '../src/backends/sampling/wasm-kernels.js';
import { expF32, f32Ceil, JsSamplingKernels } from '../src/runtime/sampling-weights.js';
import { drawTokenForTest, filteredDistribution, logSoftmax, Sampler } from '../src/runtime/sampling.js';

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

test('wasm and JS sampling kernels agree bit for bit', () => {
  const rnd = lcg(7);
  const wasm = new WasmSamplingKernels();
  const js = new JsSamplingKernels();
  const lengths = [1, 2, 3, 4, 5, 7, 8, 13, 31, 64, 257, 1000, 50432];
  for (const [trial, n] of lengths.entries()) {
    const x = new Float32Array(n);
    const spread = [1, 8, 40, 200][trial % 4]!;
    for (let i = 0; i < n; i++) {
      const u = rnd();
      x[i] = u < 0.03 ? -Infinity : u < 0.04 ? NaN : (rnd() * 2 - 1) * spread;
    }
    wasm.setRow(x);
    js.setRow(x);
    const a = wasm.stats(),
      b = js.stats();
    assert.deepEqual(a, b, `stats n=${n}`);
    if (b.finite === 0) continue;
    for (const [threshold, invT] of [
      [-Infinity, 1],
      [f32Ceil(b.max - 3.3), Math.fround(1 / 0.7)],
      [f32Ceil(b.max - 100), Math.fround(1 / 1.9)],
    ] as const) {
      const wa = wasm.weights(threshold, b.max, invT);
      const wb = js.weights(threshold, b.max, invT);
      assert.equal(wa.total, wb.total, `total n=${n} threshold=${threshold}`);
      assert.deepEqual(
        new Uint32Array(wa.weights.slice().buffer),
        new Uint32Array(wb.weights.slice().buffer),
        `weights n=${n}`,
      );
      for (const u of [0, 0.25, 0.5, 0.999999, 1])
        assert.equal(wasm.draw(u * wa.total), js.draw(u * wb.total), `draw u=${u} n=${n}`);
    }
    for (const k of [1, 2, 7, 40].filter((k) => k <= b.finite)) {
      const ka = wasm.kth(k),
        kb = js.kth(k);
      assert.equal(ka, kb, `kth k=${k} n=${n}`);
      // The k-th largest of the finite values, by sorting.
      const sorted = Array.from(x)
        .filter((v) => v > -Infinity)
        .sort((p, q) => q - p);
      assert.equal(kb, sorted[k - 1], `kth k=${k} n=${n} vs sort`);
      assert.deepEqual(Array.from(wasm.gather(ka)), Array.from(js.gather(kb)), `gather n=${n}`);
      assert.ok(js.gather(kb).length >= k);
    }
  }
});

test('the f32 exp is within 3 ulp of Math.exp on [-87.3, 0], and 0 below', () => {
  const rnd = lcg(3);
  let worst = 0;
  for (let i = 0; i < 200000; i++) {
    const x = Math.fround(-rnd() * 87.3);
    const got = expF32(x),
      want = Math.exp(x);
    worst = Math.max(worst, Math.abs(got - want) / want);
  }
  assert.ok(worst < 3 * 2 ** -23, `relative error ${worst}`);
  assert.equal(expF32(0), 1);
  assert.equal(expF32(-88), 0);
  assert.equal(expF32(-Infinity), 0);
});

test('f32Ceil gives the smallest f32 at or above a double', () => {
  const rnd = lcg(11);
  for (let i = 0; i < 20000; i++) {
    const v = (rnd() * 2 - 1) * 10 ** Math.floor(rnd() * 6 - 3);
    const c = f32Ceil(v);
    assert.equal(Math.fround(c), c);
    assert.ok(c >= v, `${c} < ${v}`);
    // The f32 just below c is below v.
    const b = new Float32Array([c]);
    const u = new Int32Array(b.buffer);
    u[0] = c > 0 ? u[0]! - 1 : c === 0 ? -2147483647 : u[0]! + 1;
    assert.ok(b[0]! < v, `${b[0]} is also >= ${v}`);
  }
  assert.equal(f32Ceil(-Infinity), -Infinity);
});

test('top-p on a 50k vocabulary keeps the smallest most-likely set reaching the mass', () => {
  const rnd = lcg(5);
  const V = 50432;
  for (const [T, p, spread] of [
    [1, 0.9, 6],
    [0.7, 0.5, 12],
    [1.3, 0.99, 3],
  ] as const) {
    const x = Float32Array.from({ length: V }, () => (rnd() * 2 - 1) * spread);
    const { ids } = filteredDistribution(x, { temperature: T, topK: 0, topP: p, minP: 0 });
    // Independent definition in f64: sort all tokens, walk until the mass above reaches p.
    const order = Array.from(x, (v, id) => ({ v, id })).sort((a, b) => b.v - a.v);
    const m = order[0]!.v;
    const w = order.map((e) => Math.exp((e.v - m) / T));
    const total = w.reduce((a, b) => a + b, 0);
    let above = 0,
      i = 0;
    while (i < V && above < p * total) above += w[i++]!;
    const cut = order[i - 1]!.v;
    const expected = order
      .filter((e) => e.v >= cut)
      .map((e) => e.id)
      .sort((a, b) => a - b);
    // f32 weights vs f64 may move the boundary by a token or two of equal-ish mass, no more.
    const got = new Set(ids);
    const diff = expected.filter((id) => !got.has(id)).length + ids.filter((id) => !expected.includes(id)).length;
    assert.ok(diff <= 2, `T=${T} p=${p}: ${ids.length} kept vs ${expected.length} expected, ${diff} differ`);
    assert.ok(ids.length > 1 && ids.length < V);
  }
});

test('draws over a 2,000-token vocabulary follow the tempered softmax', () => {
  const rnd = lcg(9);
  const V = 2000;
  const logits = Float32Array.from({ length: V }, (_, i) => (i < 8 ? 6 - i * 0.5 : (rnd() * 2 - 1) * 2));
  const T = 0.8;
  const lp = logSoftmax(Array.from(logits, (v) => v / T));
  const sm = new Sampler({ temperature: T, topK: 0, topP: 1, minP: 0, seed: 1234 });
  const N = 40000;
  const counts = new Float64Array(V);
  for (let i = 0; i < N; i++) counts[sm.sample(logits)]!++;
  // Every frequent token within 5 sigma; the long tail as one bucket.
  let tailP = 0,
    tailC = 0;
  for (let i = 0; i < V; i++) {
    const p = Math.exp(lp[i]!);
    if (i < 8) {
      const sd = Math.sqrt((p * (1 - p)) / N);
      assert.ok(Math.abs(counts[i]! / N - p) < 5 * sd, `token ${i}: ${counts[i]! / N} vs ${p}`);
    } else {
      tailP += p;
      tailC += counts[i]!;
    }
  }
  const sd = Math.sqrt((tailP * (1 - tailP)) / N);
  assert.ok(Math.abs(tailC / N - tailP) < 5 * sd, `tail: ${tailC / N} vs ${tailP}`);
});

test('with a small top-k, sampling from the candidates alone draws what the whole row draws', () => {
  const rnd = lcg(17);
  const V = 50432;
  let checked = 0;
  for (let trial = 0; trial < 12; trial++) {
    const spread = [2, 6, 15][trial % 3]!;
    const x = Float32Array.from({ length: V }, () => (rnd() * 2 - 1) * spread);
    // ties at the top, masked ids, and a NaN
    for (let i = 0; i < 30; i++) x[Math.floor(rnd() * V)] = spread;
    for (let i = 0; i < 500; i++) x[Math.floor(rnd() * V)] = -Infinity;
    x[123] = NaN;
    for (const topK of [1, 5, 40, 1000]) {
      for (const [temperature, topP, minP] of [
        [1, 1, 0],
        [0.8, 0.95, 0.05],
        [0.3, 0.5, 0],
        [1.5, 0.9, 0.3],
      ] as const) {
        const o = { topK, temperature, topP, minP };
        for (const u of [0, 0.13, 0.5, 0.87, 0.999999]) {
          const sparse = drawTokenForTest(x, o, u, true);
          const dense = drawTokenForTest(x, o, u, false);
          assert.equal(sparse, dense, `trial ${trial} ${JSON.stringify(o)} u=${u}`);
          checked++;
        }
      }
    }
  }
  assert.equal(checked, 12 * 4 * 4 * 5);
});
