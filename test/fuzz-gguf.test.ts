// Seeded mutation fuzzing of GGUF files: llama.cpp's own files from test/fixtures/gguf-tiny-q,
// their headers mutated (bytes, and every numeric field of the header aimed at with boundary
// values), then opened, every tensor read and decoded, and the embedded tokenizer built and run,
// as loading a model does. Each case must succeed or end in an MptError, in bounded time.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type ByteSource, bytesSource } from '../src/formats/byte-source.js';
import { tensorToFloat32 } from '../src/formats/dtypes.js';
import { dequantize } from '../src/formats/ggml-quants.js';
import { shapeElements } from '../src/formats/dtypes.js';
import { openGgufCheckpoint } from '../src/model/gguf-model.js';
import { MptTokenizer } from '../src/runtime/tokenizer.js';
import { assertReached, type Field, fuzz, mutateBytes, splicedSource, type Tally } from './helpers/fuzz.js';

const DIR = fileURLToPath(new URL('../../test/fixtures/gguf-tiny-q/', import.meta.url));

/**
 * The header of a GGUF file walked independently of src/formats/gguf.ts: the position of every
 * count, length, type code, dimension and offset (what a corrupt file gets wrong), and where the
 * header ends.
 */
function headerFields(b: Uint8Array): { fields: Field[]; end: number } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const fields: Field[] = [
    { at: 4, size: 4 },
    { at: 8, size: 8 },
    { at: 16, size: 8 },
  ];
  let p = 24;
  const u32 = (): number => {
    fields.push({ at: p, size: 4 });
    p += 4;
    return v.getUint32(p - 4, true);
  };
  const u64 = (): number => {
    fields.push({ at: p, size: 8 });
    p += 8;
    return Number(v.getBigUint64(p - 8, true));
  };
  const str = (): void => {
    const n = u64(); // read first: `p += u64()` would add to p as it was before the length
    p += n;
  };
  const sizes: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const value = (type: number): void => {
    if (type === 8) str();
    else if (type === 9) {
      const itemType = u32();
      const n = u64();
      for (let i = 0; i < n; i++) value(itemType);
    } else {
      if (sizes[type] !== 1 || type === 7) fields.push({ at: p, size: sizes[type] as Field['size'] });
      p += sizes[type]!;
    }
  };
  const nTensors = Number(v.getBigUint64(8, true));
  const nKv = Number(v.getBigUint64(16, true));
  for (let i = 0; i < nKv; i++) {
    str();
    value(u32());
  }
  for (let i = 0; i < nTensors; i++) {
    str();
    const nDims = u32();
    for (let d = 0; d < nDims; d++) u64();
    u32();
    u64();
  }
  // Fields of long arrays (token types) would crowd out the rest: keep at most a few of each run.
  return { fields: fields.filter((f, i) => i < 64 || i % 97 === 0 || f.size === 8), end: p };
}

/** Everything loading a GGUF model reads: header, config, every tensor decoded, the tokenizer run. */
async function loadEverything(source: ByteSource): Promise<void> {
  const ck = await openGgufCheckpoint(source);
  try {
    for (const info of ck.tensors.list()) {
      const raw = await ck.tensors.read(info.name);
      const count = shapeElements(info.shape);
      if (info.dtype === 'f32' || info.dtype === 'f16' || info.dtype === 'bf16') tensorToFloat32(info, raw);
      else dequantize(info.dtype, raw, count);
    }
    if (ck.tokenizer) {
      const tok = MptTokenizer.fromGguf(ck.tokenizer, 'fuzz.gguf');
      tok.encode('Hello, world! <|endoftext|> 1234  ünïcode');
      tok.decode(Array.from({ length: 64 }, (_, i) => i * 17));
    }
  } finally {
    await ck.tensors.close();
  }
}

async function fuzzFile(name: string, seeds: number): Promise<Tally> {
  const whole = new Uint8Array(readFileSync(DIR + name));
  const { fields, end } = headerFields(whole);
  assert.ok(fields.length > 40 && end > 1000 && end < whole.length, `walked the header of ${name}`);
  return fuzz(name, seeds, (r, log) => {
    // Mostly the header (and the first data bytes after it); now and then the whole file.
    if (r.chance(0.15)) {
      const bytes = mutateBytes(whole, r, { fields, describe: log });
      return () => loadEverything(bytesSource(bytes, name));
    }
    const head = mutateBytes(whole.subarray(0, end + 64), r, { fields, describe: log });
    return () => loadEverything(splicedSource(head, whole.subarray(end + 64), name));
  });
}

describe('GGUF fuzz: mutated llama.cpp files open, or fail with an MptError', () => {
  for (const [file, seeds] of [
    ['tiny-q-q4_k_m.gguf', 400],
    ['tiny-q-q8_0.gguf', 150],
    ['tiny-q-q2_k.gguf', 100],
  ] as const) {
    it(`${file}: ${seeds} seeds`, async () => {
      // The mutations must reach past the first check: some files still open (a changed value, a
      // flipped bit in tensor data) and most are refused.
      assertReached(await fuzzFile(file, seeds), file);
    });
  }
});
