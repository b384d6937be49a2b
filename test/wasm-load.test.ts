// Loading weights into the wasm arenas (GGUF files and safetensors folders): the direct path
// (positioned reads straight into wasm memory, in row-aligned pieces, several in flight) must put
// exactly the file's tensor bytes in place — q8_0 quants of -128 clamped to -127 — and agree byte
// for byte with the buffered path.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Arenas } from '../src/backends/wasm/arenas.js';
import { rowBytes } from '../src/backends/wasm/kernels.js';
import { isPackable, keptPacked, repackX4 } from '../src/backends/wasm/repack.js';
import { planLayout, type MatrixRef, type ModelLayout } from '../src/backends/wasm/layout.js';
import { chooseMatrixType, loadWeights } from '../src/backends/wasm/load-weights.js';
import { FormatError, WeightsError } from '../src/errors.js';
import { dequantize } from '../src/formats/ggml-quants.js';
import type { TensorSource } from '../src/formats/tensor-source.js';
import { openCheckpoint } from '../src/model/load.js';
import { blockPrefix } from '../src/model/weights-layout.js';

const fixture = (f: string) => new URL(`../../test/fixtures/gguf-tiny-q/${f}`, import.meta.url).pathname;
const hfFixture = (f: string) => new URL(`../../test/fixtures/${f}`, import.meta.url).pathname;

function matrices(L: ModelLayout): Array<[string, MatrixRef]> {
  const out: Array<[string, MatrixRef]> = [['transformer.wte.weight', L.head.wte]];
  if (!L.config.tieWordEmbeddings) out.push(['lm_head.weight', L.head.lm]);
  L.layers.forEach((ly, l) => {
    const p = blockPrefix(l);
    out.push(
      [`${p}attn.Wqkv.weight`, ly.qkv],
      [`${p}attn.out_proj.weight`, ly.out],
      [`${p}ffn.up_proj.weight`, ly.up],
      [`${p}ffn.down_proj.weight`, ly.down],
    );
  });
  return out;
}

/** Every `every`-th q8_0 quant set to -128 (what ggml never writes, but a file may hold). */
function poison(bytes: Uint8Array, start: number, every: number): Uint8Array {
  const b = bytes.slice();
  for (let i = 0; i < b.length; i++) {
    const inBlock = (start + i) % 34;
    if (inBlock >= 2 && (start + i) % every === 0) b[i] = 0x80;
  }
  return b;
}

/** A source serving the checkpoint's bytes (q8_0 ones poisoned), with or without readInto. */
function wrap(src: TensorSource, direct: boolean): TensorSource {
  const q8 = (name: string) => src.info(name)?.dtype === 'q8_0';
  const s: TensorSource = {
    list: () => src.list(),
    info: (n) => src.info(n),
    read: async (n) => (q8(n) ? poison(await src.read(n), 0, 7) : src.read(n)),
    close: async () => {},
  };
  if (direct) {
    s.readInto = async (n, dest, start = 0) => {
      await src.readInto!(n, dest, start);
      if (q8(n)) dest.set(poison(dest, start, 7));
    };
  }
  return s;
}

async function loadBoth(file: string, chunk: number) {
  const ck = await openCheckpoint(file);
  try {
    assert.ok(ck.tensors.readInto, 'GGUF and safetensors sources offer readInto');
    const L = planLayout(ck.config, (n) => chooseMatrixType(ck.tensors.info(n)!, 'auto'), { threads: 1 });
    const direct = new Arenas(L),
      buffered = new Arenas(L);
    const progress: number[] = [];
    await loadWeights(ck.config, wrap(ck.tensors, true), L, direct, (d) => progress.push(d), {
      readChunk: chunk,
      concurrency: 3,
    });
    await loadWeights(ck.config, wrap(ck.tensors, false), L, buffered);
    const files = new Map<string, Uint8Array>();
    for (const [name] of matrices(L)) files.set(name, await ck.tensors.read(name));
    const total = ck.tensors.list().reduce((s, t) => s + t.byteLength, 0);
    return { L, direct, buffered, files, progress, total };
  } finally {
    await ck.tensors.close();
  }
}

describe('wasm weight loading', () => {
  const cases: Array<[string, string]> = [
    ...['q8_0', 'q4_0', 'f16', 'q6_k', 'q4_k'].map((t): [string, string] => [`GGUF ${t}`, fixture(`tiny-q-${t}.gguf`)]),
    ...['tiny-alibi', 'tiny-alibi-bf16', 'tiny-alibi-fp16', 'tiny-alibi-sharded'].map((f): [string, string] => [
      `safetensors ${f}`,
      hfFixture(f),
    ]),
  ];
  for (const [label, file] of cases) {
    const type = label.replace(/^GGUF /, '');
    it(`${label}: direct reads in one-row pieces equal the file's bytes and the buffered path`, async () => {
      const { L, direct, buffered, files, progress, total } = await loadBoth(file, 1);
      for (let a = 0; a < L.arenas.length; a++) {
        const end = L.arenas[a]!.weightsEnd;
        assert.deepEqual(direct.u8(a).subarray(0, end), buffered.u8(a).subarray(0, end), `arena ${a}`);
      }
      let clamped = 0;
      for (const [name, ref] of matrices(L)) {
        const n = ref.rows * rowBytes(ref.type, ref.cols);
        const got = direct.u8(ref.arena).subarray(ref.ptr, ref.ptr + n);
        // the file's bytes, q8_0 quants -128 (and the poisoned ones) clamped to -127
        const stored = files.get(name)!.slice(0, n);
        if (ref.type === 'q8_0') {
          for (let i = 0; i < n; i++) {
            const quant = i % 34 >= 2,
              poisoned = quant && i % 7 === 0;
            if (poisoned || (quant && stored[i]! === 0x80)) stored[i] = 0x81;
            if (poisoned) clamped++;
          }
        }
        // q4_0 / q8_0 / q4_K matrices of 4 rows or more are kept row-interleaved (repack.ts)
        const want = ref.packed && isPackable(ref.type) ? repackX4(ref.type, stored, ref.rows, ref.cols) : stored;
        if (ref.packed !== keptPacked(ref.type, ref.rows)) assert.fail(`${name}: packed ${ref.packed}`);
        assert.ok(Buffer.from(got).equals(Buffer.from(want)), `${name} differs from the file`);
      }
      if (type === 'q8_0') assert.ok(clamped > 1000);
      // progress ends at the total and never goes back
      assert.equal(progress[progress.length - 1], total);
      for (let i = 1; i < progress.length; i++) assert.ok(progress[i]! >= progress[i - 1]!);
    });
  }

  for (const t of ['q8_0', 'q4_0', 'q4_k'] as const)
    it(`GGUF ${t}: a block scale (q4_K: d) of 300 in the last tensor read switches the model to raw x4 scales (earlier ones rewritten); inf is refused, naming the tensor`, async () => {
      const ck = await openCheckpoint(fixture(`tiny-q-${t}.gguf`));
      try {
        const L = planLayout(ck.config, (n) => chooseMatrixType(ck.tensors.info(n)!, 'auto'), { threads: 1 });
        const last = `${blockPrefix(ck.config.nLayers - 1)}ffn.down_proj.weight`;
        const withScale = (bits: number): TensorSource => {
          const set = (name: string, dest: Uint8Array, start: number) => {
            // block 0 of row 0: the scale's two bytes at the tensor's start
            if (name === last && start === 0) dest.set([bits & 0xff, bits >> 8]);
          };
          return {
            list: () => ck.tensors.list(),
            info: (n) => ck.tensors.info(n),
            read: async (n) => {
              const b = (await ck.tensors.read(n)).slice();
              set(n, b, 0);
              return b;
            },
            readInto: async (n, dest, start = 0) => {
              await ck.tensors.readInto!(n, dest, start);
              set(n, dest, start);
            },
            close: async () => {},
          };
        };
        const arenas = new Arenas(L);
        await loadWeights(ck.config, withScale(0x5cb0), L, arenas, undefined, { readChunk: 1, concurrency: 1 });
        let rows = 0;
        for (const [name, ref] of matrices(L)) {
          if (!ref.packed || ref.type !== t) continue;
          const rb = rowBytes(t, ref.cols),
            stored = (await ck.tensors.read(name)).slice(0, ref.rows * rb);
          if (name === last) stored.set([0xb0, 0x5c]);
          if (t === 'q8_0')
            for (let i = 0; i < stored.length; i++) if (i % 34 >= 2 && stored[i] === 0x80) stored[i] = 0x81;
          const want = dequantize(t, stored, ref.rows * ref.cols);
          const k = arenas.kernels[ref.arena]!,
            out = L.arenas[ref.arena]!.scratch.start;
          for (let r = 0; r < ref.rows; r++) {
            if (t === 'q4_k') k.dequant_row_q4_kx4(ref.ptr, ref.rows, ref.cols, r, out);
            else k.dequant_row_x4(t === 'q4_0' ? 1 : 0, ref.ptr, ref.rows, ref.cols, r, out);
            const got = arenas.f32(ref.arena).subarray(out / 4, out / 4 + ref.cols);
            assert.deepEqual(got, want.subarray(r * ref.cols, (r + 1) * ref.cols), `${name} row ${r}`);
            rows++;
          }
          if (name === last)
            assert.ok(
              Math.max(...want.subarray(0, t === 'q4_k' ? 256 : 32).map(Math.abs)) > 128,
              'block 0 holds weights over 128',
            );
        }
        assert.ok(rows > 100, `${rows} rows checked`);
        await assert.rejects(
          loadWeights(ck.config, withScale(0x7c00), L, new Arenas(L), undefined, { readChunk: 1 }),
          (e: Error) => e instanceof WeightsError && e.message.includes(last) && /inf or NaN/.test(e.message),
        );
      } finally {
        await ck.tensors.close();
      }
    });

  it('PyTorch .bin folders load through the buffered path (no readInto)', async () => {
    for (const f of ['tiny-alibi-bin', 'tiny-alibi-bin-sharded-bf16']) {
      const ck = await openCheckpoint(hfFixture(f));
      try {
        assert.equal(ck.tensors.readInto, undefined, f);
      } finally {
        await ck.tensors.close();
      }
    }
  });

  it('readInto checks its range (GGUF, sharded safetensors)', async () => {
    for (const file of [fixture('tiny-q-q4_0.gguf'), hfFixture('tiny-alibi-sharded')]) {
      const ck = await openCheckpoint(file);
      try {
        const info = ck.tensors.info('transformer.wte.weight')!;
        await assert.rejects(ck.tensors.readInto!(info.name, new Uint8Array(16), info.byteLength - 8), FormatError);
        await assert.rejects(ck.tensors.readInto!('transformer.nope.weight', new Uint8Array(1)), FormatError);
        const part = new Uint8Array(40);
        await ck.tensors.readInto!(info.name, part, 100);
        assert.deepEqual(part, (await ck.tensors.read(info.name)).subarray(100, 140));
      } finally {
        await ck.tensors.close();
      }
    }
  });

  it('a failing read rejects the load (no hang)', async () => {
    const ck = await openCheckpoint(fixture('tiny-q-q4_0.gguf'));
    try {
      const L = planLayout(ck.config, (n) => chooseMatrixType(ck.tensors.info(n)!, 'auto'), { threads: 1 });
      let calls = 0;
      const bad: TensorSource = {
        ...ck.tensors,
        readInto: async (n, d, s) => {
          if (++calls === 3) throw new FormatError('disk on fire');
          return ck.tensors.readInto!(n, d, s);
        },
      };
      await assert.rejects(loadWeights(ck.config, bad, L, new Arenas(L), undefined, { readChunk: 1 }), /disk on fire/);
    } finally {
      await ck.tensors.close();
    }
  });
});
