// Malformed GGUF files: every one must be a FormatError (or, for a model this engine does not run,
// an UnsupportedError) with a message, never a crash, a hang or a huge allocation. The files are
// built byte by byte here, independently of our writer.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FormatError, UnsupportedError, WeightsError } from '../src/errors.js';
import { readGguf } from '../src/formats/gguf.js';
import { openGgufCheckpoint } from '../src/model/gguf-model.js';

const tmp = mkdtempSync(join(tmpdir(), 'mpt-gguf-bad-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Little-endian byte builder for hand-made GGUF headers. */
class B {
  parts: number[] = [];
  u8(v: number) { this.parts.push(v & 0xff); return this; }
  u32(v: number) { for (let i = 0; i < 4; i++) this.parts.push((v >>> (8 * i)) & 0xff); return this; }
  u64(v: bigint | number) { let x = BigInt(v); for (let i = 0; i < 8; i++) { this.parts.push(Number(x & 0xffn)); x >>= 8n; } return this; }
  f32(v: number) { const b = new Uint8Array(new Float32Array([v]).buffer); this.parts.push(...b); return this; }
  str(s: string) { const b = new TextEncoder().encode(s); this.u64(b.length); this.parts.push(...b); return this; }
  raw(b: ArrayLike<number>) { this.parts.push(...Array.from(b)); return this; }
  pad(a: number) { while (this.parts.length % a) this.parts.push(0); return this; }
  get length() { return this.parts.length; }
  bytes() { return new Uint8Array(this.parts); }
}

const T = { u32: 4, f32: 6, string: 8, array: 9 };

interface Tensor { name: string; dims: number[]; type: number; offset: number }

/** A header: magic, version, counts, kvs (already encoded), tensor infos; then aligned data. */
function file(opts: { magic?: number[]; version?: number; kv?: ((b: B) => void)[]; nKv?: bigint; tensors?: Tensor[]; nTensors?: bigint; data?: number; }) {
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

async function rejectsWith(bytes: Uint8Array, re: RegExp, kind: typeof FormatError | typeof UnsupportedError | typeof WeightsError = FormatError) {
  const p = save(bytes);
  await assert.rejects(readGguf(p).then((g) => g.close()), (e: unknown) => {
    assert.ok(e instanceof kind, `expected ${kind.name}, got ${String(e)}`);
    assert.match((e as Error).message, re);
    return true;
  });
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
    await rejectsWith(file({ kv: [(b) => b.str('k').u32(T.array).u32(T.u32).u64(2n ** 61n)] }), /claims 2305843009213693952 items/);
    await rejectsWith(file({ kv: [(b) => b.str('k').u32(T.array).u32(T.string).u64(1e9)] }), /claims 1000000000 items/);
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
    await rejectsWith(file({ tensors: [{ name: 'w', dims: [48], type: 2, offset: 0 }], data: 64 }), /not a multiple of its block size 32/);
    await rejectsWith(file({ tensors: [{ name: 'w', dims: [1, 1, 1, 1, 1], type: 0, offset: 0 }], data: 32 }), /5 dimensions/);
    await rejectsWith(file({ tensors: [{ name: 'w', dims: [2 ** 40, 2 ** 40], type: 0, offset: 0 }], data: 32 }), /absurd element count/);
    await rejectsWith(file({ tensors: [f32('w', 16)], data: 64 }), /not a multiple of the alignment/);
    await rejectsWith(file({ tensors: [f32('a', 0, [16]), f32('b', 32, [16])], data: 128 }), /overlap/);
    await rejectsWith(file({ tensors: [f32('a', 0, [16])], data: 40 }), /truncated: tensor a/);
    await rejectsWith(file({ tensors: [f32('a', 0), f32('a', 32)], data: 64 }), /appears twice/);
    // a valid file reads
    const ok = save(file({ tensors: [f32('a', 0), f32('b', 32)], data: 64 }));
    const g = await readGguf(ok);
    assert.deepEqual(g.tensors.map((t) => t.name), ['a', 'b']);
    await g.close();
  });
});

describe('GGUF files that are not runnable MPT models', () => {
  const mptKeys = (omit?: string) => [
    kvStr('general.architecture', 'mpt'), kvU32('mpt.context_length', 64), kvU32('mpt.embedding_length', 32),
    kvU32('mpt.block_count', 1), kvU32('mpt.feed_forward_length', 128), kvU32('mpt.attention.head_count', 2),
    kvF32('mpt.attention.layer_norm_epsilon', 1e-5), kvF32('mpt.attention.max_alibi_bias', 8),
  ].filter((_, i) => omit === undefined || ['general.architecture', 'mpt.context_length', 'mpt.embedding_length', 'mpt.block_count',
    'mpt.feed_forward_length', 'mpt.attention.head_count', 'mpt.attention.layer_norm_epsilon', 'mpt.attention.max_alibi_bias'][i] !== omit);
  const embd: Tensor = { name: 'token_embd.weight', dims: [32, 8], type: 0, offset: 0 };

  async function openRejects(bytes: Uint8Array, kind: typeof FormatError | typeof UnsupportedError | typeof WeightsError, re: RegExp) {
    const p = save(bytes);
    await assert.rejects(openGgufCheckpoint(p), (e: unknown) => {
      assert.ok(e instanceof kind, `expected ${kind.name}, got ${String(e)}`);
      assert.match((e as Error).message, re);
      return true;
    });
  }

  it('missing required keys name the key', async () => {
    for (const k of ['general.architecture', 'mpt.block_count', 'mpt.attention.head_count', 'mpt.feed_forward_length']) {
      await openRejects(file({ kv: mptKeys(k), tensors: [embd], data: 1024 }), FormatError, new RegExp(k.replace(/\./g, '\\.')));
    }
  });

  it('another architecture, wrong key types, missing tensors', async () => {
    await openRejects(file({ kv: [kvStr('general.architecture', 'llama')] }), UnsupportedError, /architecture "llama"/);
    await openRejects(file({ kv: [...mptKeys('mpt.block_count'), kvStr('mpt.block_count', 'two')], tensors: [embd], data: 1024 }), FormatError, /must be a number/);
    await openRejects(file({ kv: mptKeys(), tensors: [] }), WeightsError, /token_embd/);
    await openRejects(file({ kv: mptKeys(), tensors: [embd], data: 1024 }), WeightsError, /missing/);
    await openRejects(file({ kv: mptKeys(), tensors: [embd, { name: 'blk.0.ffn_gate.weight', dims: [32], type: 0, offset: 1024 }], data: 1152 }), WeightsError, /ffn_gate/);
  });
});
