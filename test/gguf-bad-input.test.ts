// Malformed GGUF files: every one must be a FormatError (or, for a model this engine does not run,
// an UnsupportedError) with a message, never a crash, a hang or a huge allocation. The files are
// built byte by byte here, independently of our writer.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FormatError, UnsupportedError, WeightsError } from '../src/errors.js';
import { readGguf } from '../src/formats/gguf.js';
import { openGgufCheckpoint } from '../src/model/gguf-model.js';
import { runCli } from './helpers/cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'mpt-gguf-bad-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Little-endian byte builder for hand-made GGUF headers. */
class B {
  parts: number[] = [];
  u8(v: number) {
    this.parts.push(v & 0xff);
    return this;
  }
  u32(v: number) {
    for (let i = 0; i < 4; i++) this.parts.push((v >>> (8 * i)) & 0xff);
    return this;
  }
  u64(v: bigint | number) {
    let x = BigInt(v);
    for (let i = 0; i < 8; i++) {
      this.parts.push(Number(x & 0xffn));
      x >>= 8n;
    }
    return this;
  }
  f32(v: number) {
    const b = new Uint8Array(new Float32Array([v]).buffer);
    this.parts.push(...b);
    return this;
  }
  str(s: string) {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.parts.push(...b);
    return this;
  }
  raw(b: ArrayLike<number>) {
    this.parts.push(...Array.from(b));
    return this;
  }
  pad(a: number) {
    while (this.parts.length % a) this.parts.push(0);
    return this;
  }
  get length() {
    return this.parts.length;
  }
  bytes() {
    return new Uint8Array(this.parts);
  }
}

const T = { u32: 4, f32: 6, string: 8, array: 9 };

interface Tensor {
  name: string;
  dims: number[];
  type: number;
  offset: number;
}

/** A header: magic, version, counts, kvs (already encoded), tensor infos; then aligned data. */
function file(opts: {
  magic?: number[];
  version?: number;
  kv?: ((b: B) => void)[];
  nKv?: bigint;
  tensors?: Tensor[];
  nTensors?: bigint;
  data?: number;
}) {
  const b = new B();
  b.raw(opts.magic ?? [0x47, 0x47, 0x55, 0x46]).u32(opts.version ?? 3);
  const kv = opts.kv ?? [];
  const tensors = opts.tensors ?? [];
  b.u64(opts.nTensors ?? BigInt(tensors.length)).u64(opts.nKv ?? BigInt(kv.length));
  for (const f of kv) f(b);
  for (const t of tensors) {
    b.str(t.name).u32(t.dims.length);
    for (const d of t.dims) b.u64(d);
    b.u32(t.type).u64(t.offset);
  }
  b.pad(32);
  for (let i = 0; i < (opts.data ?? 0); i++) b.u8(i);
  return b.bytes();
}

const kvStr = (k: string, v: string) => (b: B) => b.str(k).u32(T.string).str(v);
const kvU32 = (k: string, v: number) => (b: B) => b.str(k).u32(T.u32).u32(v);
const kvF32 = (k: string, v: number) => (b: B) => b.str(k).u32(T.f32).f32(v);

let n = 0;
function save(bytes: Uint8Array): string {
  const p = join(tmp, `f${n++}.gguf`);
  writeFileSync(p, bytes);
  return p;
}

async function rejectsWith(
  bytes: Uint8Array,
  re: RegExp,
  kind: typeof FormatError | typeof UnsupportedError | typeof WeightsError = FormatError,
) {
  const p = save(bytes);
  await assert.rejects(
    readGguf(p).then((g) => g.close()),
    (e: unknown) => {
      assert.ok(e instanceof kind, `expected ${kind.name}, got ${String(e)}`);
      assert.match((e as Error).message, re);
      return true;
    },
  );
}

describe('malformed GGUF headers are FormatErrors', () => {
  it('bad magic, tiny files, unknown and unsupported versions', async () => {
    await rejectsWith(file({ magic: [0x50, 0x4b, 3, 4] }), /not a GGUF file/);
    await rejectsWith(new Uint8Array([0x47, 0x47]), /not a GGUF file/);
    await rejectsWith(file({ version: 1 }), /version 1/);
    await rejectsWith(file({ version: 7 }), /unknown GGUF version 7/);
    await rejectsWith(file({ version: 0x03000000 }), /big-endian/);
    await rejectsWith(new Uint8Array([0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0, 1]), /truncated/);
  });

  it('absurd counts are refused before anything is allocated', async () => {
    await rejectsWith(file({ nTensors: 2n ** 60n }), /claims 1152921504606846976 tensors/);
    await rejectsWith(file({ nKv: 2n ** 60n }), /metadata entries/);
    await rejectsWith(file({ nKv: 1n, kv: [(b) => b.u64(2n ** 62n)], data: 64 }), /claims 4611686018427387904 bytes/);
    await rejectsWith(
      file({
        kv: [
          (b) =>
            b
              .str('k')
              .u32(T.array)
              .u32(T.u32)
              .u64(2n ** 61n),
        ],
      }),
      /claims 2305843009213693952 items/,
    );
    await rejectsWith(file({ kv: [(b) => b.str('k').u32(T.array).u32(T.string).u64(1e9)] }), /claims 1000000000 items/);
  });

  it('strings and arrays beyond any real header are refused, even in a file big enough for them', async () => {
    // A sparse file of 40 MB: the lengths fit in it, so only the limits stop a 32 MB allocation.
    const sparse = async (bytes: Uint8Array, re: RegExp) => {
      const p = save(bytes);
      truncateSync(p, 40 << 20);
      await assert.rejects(
        readGguf(p).then((g) => g.close()),
        (e: unknown) => e instanceof FormatError && re.test(e.message),
      );
    };
    await sparse(
      file({
        kv: [
          (b) =>
            b
              .str('k')
              .u32(T.string)
              .u64(2 ** 25),
        ],
      }),
      /value of k claims 33554432 bytes, more than the 16777216 a GGUF string may have/,
    );
    await sparse(
      file({
        kv: [
          (b) =>
            b
              .str('k')
              .u32(T.array)
              .u32(0)
              .u64(2 ** 25),
        ],
      }),
      /array k claims 33554432 items, more than the 16777216 a GGUF array may have/,
    );
    await sparse(
      file({
        kv: [
          (b) =>
            b
              .str('k')
              .u32(T.array)
              .u32(T.string)
              .u64(2 ** 24 + 1),
        ],
      }),
      /array k claims 16777217 items, more than/,
    );
  });

  it('unknown value types, bad bools, invalid UTF-8, duplicate keys, deep nesting', async () => {
    await rejectsWith(file({ kv: [(b) => b.str('k').u32(13).u32(0)] }), /unknown value type 13/);
    await rejectsWith(file({ kv: [(b) => b.str('k').u32(T.array).u32(99).u64(0)] }), /unknown item type 99/);
    await rejectsWith(file({ kv: [(b) => b.str('k').u32(7).u8(2)] }), /bool value 2/);
    await rejectsWith(file({ kv: [(b) => b.u64(2).raw([0xc3, 0x28]).u32(T.u32).u32(1)] }), /UTF-8/);
    await rejectsWith(file({ kv: [kvU32('a', 1), kvU32('a', 2)] }), /appears twice/);
    const deep = (b: B) => {
      b.str('k').u32(T.array);
      for (let i = 0; i < 20; i++) b.u32(T.array).u64(1);
      b.u32(T.u32).u64(0);
    };
    await rejectsWith(file({ kv: [deep] }), /deeper/);
  });

  it('bad general.alignment', async () => {
    await rejectsWith(file({ kv: [kvU32('general.alignment', 48)] }), /power of two/);
    await rejectsWith(file({ kv: [kvStr('general.alignment', '32')] }), /power of two/);
  });

  it('bad tensor infos: types, dims, alignment, overlap, truncation, duplicates', async () => {
    const f32 = (name: string, offset: number, dims = [8]): Tensor => ({ name, dims, type: 0, offset });
    await rejectsWith(file({ tensors: [{ name: 'w', dims: [32], type: 99, offset: 0 }], data: 64 }), /unknown type 99/);
    await rejectsWith(file({ tensors: [{ name: 'w', dims: [256], type: 16, offset: 0 }], data: 128 }), /IQ2_XXS/);
    await rejectsWith(
      file({ tensors: [{ name: 'w', dims: [48], type: 2, offset: 0 }], data: 64 }),
      /not a multiple of its block size 32/,
    );
    await rejectsWith(
      file({ tensors: [{ name: 'w', dims: [1, 1, 1, 1, 1], type: 0, offset: 0 }], data: 32 }),
      /5 dimensions/,
    );
    await rejectsWith(
      file({ tensors: [{ name: 'w', dims: [2 ** 40, 2 ** 40], type: 0, offset: 0 }], data: 32 }),
      /absurd element count/,
    );
    await rejectsWith(file({ tensors: [f32('w', 16)], data: 64 }), /not a multiple of the alignment/);
    await rejectsWith(file({ tensors: [f32('a', 0, [16]), f32('b', 32, [16])], data: 128 }), /overlap/);
    await rejectsWith(file({ tensors: [f32('a', 0, [16])], data: 40 }), /truncated: tensor a/);
    await rejectsWith(file({ tensors: [f32('a', 0), f32('a', 32)], data: 64 }), /appears twice/);
    // a valid file reads
    const ok = save(file({ tensors: [f32('a', 0), f32('b', 32)], data: 64 }));
    const g = await readGguf(ok);
    assert.deepEqual(
      g.tensors.map((t) => t.name),
      ['a', 'b'],
    );
    await g.close();
  });
});

describe('GGUF files that are not runnable MPT models', () => {
  const mptKeys = (omit?: string) =>
    [
      kvStr('general.architecture', 'mpt'),
      kvU32('mpt.context_length', 64),
      kvU32('mpt.embedding_length', 32),
      kvU32('mpt.block_count', 1),
      kvU32('mpt.feed_forward_length', 128),
      kvU32('mpt.attention.head_count', 2),
      kvF32('mpt.attention.layer_norm_epsilon', 1e-5),
      kvF32('mpt.attention.max_alibi_bias', 8),
    ].filter(
      (_, i) =>
        omit === undefined ||
        [
          'general.architecture',
          'mpt.context_length',
          'mpt.embedding_length',
          'mpt.block_count',
          'mpt.feed_forward_length',
          'mpt.attention.head_count',
          'mpt.attention.layer_norm_epsilon',
          'mpt.attention.max_alibi_bias',
        ][i] !== omit,
    );
  const embd: Tensor = { name: 'token_embd.weight', dims: [32, 8], type: 0, offset: 0 };

  async function openRejects(
    bytes: Uint8Array,
    kind: typeof FormatError | typeof UnsupportedError | typeof WeightsError,
    re: RegExp,
  ) {
    const p = save(bytes);
    await assert.rejects(openGgufCheckpoint(p), (e: unknown) => {
      assert.ok(e instanceof kind, `expected ${kind.name}, got ${String(e)}`);
      assert.match((e as Error).message, re);
      return true;
    });
  }

  it('missing required keys name the key', async () => {
    for (const k of [
      'general.architecture',
      'mpt.block_count',
      'mpt.attention.head_count',
      'mpt.feed_forward_length',
    ]) {
      await openRejects(
        file({ kv: mptKeys(k), tensors: [embd], data: 1024 }),
        FormatError,
        new RegExp(k.replace(/\./g, '\\.')),
      );
    }
  });

  it('another architecture, wrong key types, missing tensors', async () => {
    await openRejects(file({ kv: [kvStr('general.architecture', 'llama')] }), UnsupportedError, /architecture "llama"/);
    await openRejects(
      file({ kv: [...mptKeys('mpt.block_count'), kvStr('mpt.block_count', 'two')], tensors: [embd], data: 1024 }),
      FormatError,
      /must be a number/,
    );
    await openRejects(file({ kv: mptKeys(), tensors: [] }), WeightsError, /token_embd/);
    await openRejects(file({ kv: mptKeys(), tensors: [embd], data: 1024 }), WeightsError, /missing/);
    await openRejects(
      file({
        kv: mptKeys(),
        tensors: [embd, { name: 'blk.0.ffn_gate.weight', dims: [32], type: 0, offset: 1024 }],
        data: 1152,
      }),
      WeightsError,
      /ffn_gate/,
    );
  });

  /** One complete layer of f32 tensors for the mptKeys() shapes (d 32, ff 128, vocab 8), packed at aligned offsets. */
  const oneLayer = (): { tensors: Tensor[]; data: number } => {
    const dims: [string, number[]][] = [
      ['token_embd.weight', [32, 8]],
      ['output_norm.weight', [32]],
      ['blk.0.attn_norm.weight', [32]],
      ['blk.0.attn_qkv.weight', [32, 96]],
      ['blk.0.attn_output.weight', [32, 32]],
      ['blk.0.ffn_norm.weight', [32]],
      ['blk.0.ffn_up.weight', [32, 128]],
      ['blk.0.ffn_down.weight', [128, 32]],
    ];
    let offset = 0;
    const tensors = dims.map(([name, d]) => {
      const t: Tensor = { name, dims: d, type: 0, offset };
      offset += Math.ceil((4 * d.reduce((a, b) => a * b, 1)) / 32) * 32;
      return t;
    });
    return { tensors, data: offset };
  };
  const withKey = (k: string, set: (b: B) => void) => [...mptKeys(k), set];

  it('a block_count beyond the tensors names the first missing tensor, without listing 2^31 layers', async () => {
    const { tensors, data } = oneLayer();
    const ok = await openGgufCheckpoint(save(file({ kv: mptKeys(), tensors, data })));
    assert.equal(ok.config.nLayers, 1);
    await ok.tensors.close();
    for (const blocks of [2, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1]) {
      await openRejects(
        file({ kv: withKey('mpt.block_count', kvU32('mpt.block_count', blocks)), tensors, data }),
        WeightsError,
        /tensor blk\.1\.attn_norm\.weight \(transformer\.blocks\.1\.norm_1\.weight\) is missing/,
      );
    }
  });

  it('mpt info on such a file prints one line, not a RangeError stack', async () => {
    const { tensors, data } = oneLayer();
    const p = save(file({ kv: withKey('mpt.block_count', kvU32('mpt.block_count', 2 ** 31)), tensors, data }));
    const r = await runCli(['info', p]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^mpt info: .*blk\.1\.attn_norm\.weight .* is missing\n$/);
  });

  it('non-finite or negative float hyperparameters are refused by key', async () => {
    const { tensors, data } = oneLayer();
    const withF32 = (key: string, v: number) => file({ kv: [...mptKeys(key), kvF32(key, v)], tensors, data });
    for (const v of [NaN, -Infinity, Infinity, -1]) {
      await openRejects(
        withF32('mpt.attention.max_alibi_bias', v),
        FormatError,
        new RegExp(`mpt\\.attention\\.max_alibi_bias must be a finite number >= 0, got ${v}`),
      );
    }
    for (const v of [NaN, Infinity, -Infinity]) {
      await openRejects(
        withF32('mpt.attention.clamp_kqv', v),
        FormatError,
        new RegExp(`mpt\\.attention\\.clamp_kqv must be a finite number, got ${v}`),
      );
    }
    for (const v of [NaN, 0, -1e-5]) {
      await openRejects(
        withF32('mpt.attention.layer_norm_epsilon', v),
        FormatError,
        /mpt\.attention\.layer_norm_epsilon must be a positive number, got (NaN|0|-0\.0000099)/,
      );
    }
  });

  it('hyperparameters beyond what a tensor can index are refused by key', async () => {
    const { tensors, data } = oneLayer();
    const ctx = (b: B) =>
      b
        .str('mpt.context_length')
        .u32(10)
        .u64(2n ** 40n); // a u64
    await openRejects(
      file({ kv: withKey('mpt.context_length', ctx), tensors, data }),
      FormatError,
      /mpt\.context_length must be a positive integer up to 2147483647, got 1099511627776/,
    );
  });
});
