// safetensors reader and writer: the fixture checkpoints, byte-exact rewriting (checked against the
// producer's sha256 in goldens.json), round trips, and every kind of corrupt file → FormatError.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FormatError } from '../src/errors.js';
import { openSafetensors, writeSafetensors, type TensorToWrite } from '../src/formats/safetensors.js';

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/', import.meta.url));
const TINY = join(FIXTURES, 'tiny-alibi/model.safetensors');
const tmp = mkdtempSync(join(tmpdir(), 'mpt-formats-st-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function goldens(folder: string): {
  checkpoint_files: Record<string, { bytes: number; sha256: string }>;
  grads?: { parameters: [string, number[]][] };
} {
  return JSON.parse(readFileSync(join(FIXTURES, folder, 'goldens.json'), 'utf8'));
}

/** Builds a safetensors file by hand from the spec (independent of writeSafetensors). */
function rawFile(name: string, header: unknown, data: Uint8Array, headerLen?: bigint): string {
  const json =
    header instanceof Uint8Array
      ? Buffer.from(header)
      : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(headerLen ?? BigInt(json.length));
  const path = join(tmp, name);
  writeFileSync(path, Buffer.concat([prefix, json, data]));
  return path;
}

async function rejectsFormat(path: string, pattern: RegExp, readAll = false): Promise<void> {
  await assert.rejects(
    async () => {
      const s = await openSafetensors(path);
      try {
        if (readAll) for (const t of s.list()) await s.read(t.name);
      } finally {
        await s.close();
      }
    },
    (e: unknown) => {
      assert.ok(e instanceof FormatError, `expected FormatError, got ${String(e)}`);
      assert.match(e.message, pattern);
      return true;
    },
  );
}

describe('openSafetensors on the fixtures', () => {
  it('lists the tiny-alibi parameters with the shapes MosaicML reported', async () => {
    const s = await openSafetensors(TINY);
    const expected = goldens('tiny-alibi').grads!.parameters;
    const got = new Map(s.list().map((t) => [t.name, t]));
    assert.equal(got.size, expected.length);
    for (const [name, shape] of expected) {
      const t = got.get(name);
      assert.ok(t, name);
      assert.deepEqual(t.shape, shape);
      assert.equal(t.dtype, 'f32');
      assert.equal(t.byteLength, shape.reduce((a, b) => a * b, 1) * 4);
      assert.equal((await s.read(name)).byteLength, t.byteLength);
    }
    assert.deepEqual(s.metadata, { format: 'pt' });
    assert.equal(s.info('nope'), undefined);
    await assert.rejects(s.read('nope'), FormatError);
    await s.close();
    await assert.rejects(s.read('transformer.wte.weight'), /closed/);
  });

  it('returns each tensor as a fresh, aligned buffer of exactly its bytes', async () => {
    const s = await openSafetensors(TINY);
    const file = readFileSync(TINY);
    const headerLen = Number(file.readBigUInt64LE(0));
    const header = JSON.parse(file.subarray(8, 8 + headerLen).toString('utf8'));
    for (const t of s.list()) {
      const bytes = await s.read(t.name);
      const [b, e] = header[t.name].data_offsets as [number, number];
      assert.equal(bytes.byteOffset, 0);
      assert.equal(bytes.buffer.byteLength, bytes.byteLength);
      assert.deepEqual(Buffer.from(bytes), file.subarray(8 + headerLen + b, 8 + headerLen + e));
    }
    await s.close();
  });

  for (const folder of ['tiny-alibi', 'tiny-alibi-bf16', 'tiny-alibi-fp16']) {
    it(`rewrites ${folder} byte for byte (sha256 from goldens.json)`, async () => {
      const s = await openSafetensors(join(FIXTURES, folder, 'model.safetensors'));
      const tensors: TensorToWrite[] = s
        .list()
        .map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: () => s.read(t.name) }));
      tensors.reverse(); // the writer must sort by name itself
      const out = join(tmp, `${folder}.safetensors`);
      await writeSafetensors(out, tensors, s.metadata);
      await s.close();
      const want = goldens(folder).checkpoint_files['model.safetensors']!;
      const bytes = readFileSync(out);
      assert.equal(bytes.length, want.bytes);
      assert.equal(sha256(bytes), want.sha256);
    });
  }
});

describe('writeSafetensors', () => {
  it('round-trips tensors of every dtype, empty and scalar shapes, and metadata', async () => {
    const rand = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 131 + seed * 7) & 0xff);
    const tensors: TensorToWrite[] = [
      { name: 'b.weight', dtype: 'f32', shape: [3, 5], data: rand(60, 1) },
      { name: 'a.bias', dtype: 'bf16', shape: [7], data: rand(14, 2) },
      { name: 'c', dtype: 'f16', shape: [2, 1, 3], data: () => rand(12, 3) },
      { name: 'empty', dtype: 'f32', shape: [0, 4], data: new Uint8Array(0) },
      { name: 'scalar', dtype: 'f32', shape: [], data: rand(4, 4) },
      { name: 'ünïcode', dtype: 'f16', shape: [1], data: rand(2, 5) },
    ];
    const path = join(tmp, 'roundtrip.safetensors');
    await writeSafetensors(path, tensors, { note: 'hello', format: 'pt' });
    const file = readFileSync(path);
    const headerLen = Number(file.readBigUInt64LE(0));
    assert.equal(headerLen % 8, 0);
    const s = await openSafetensors(path);
    assert.deepEqual(s.metadata, { note: 'hello', format: 'pt' });
    assert.deepEqual(
      s
        .list()
        .map((t) => t.name)
        .sort(),
      tensors.map((t) => t.name).sort(),
    );
    for (const t of tensors) {
      const info = s.info(t.name)!;
      assert.equal(info.dtype, t.dtype);
      assert.deepEqual(info.shape, t.shape);
      const data = typeof t.data === 'function' ? await t.data() : t.data;
      assert.deepEqual(await s.read(t.name), data);
    }
    await s.close();
    // Data is laid out in name order, as the official library does.
    const header = JSON.parse(file.subarray(8, 8 + headerLen).toString('utf8'));
    const byOffset = Object.keys(header)
      .filter((k) => k !== '__metadata__')
      .sort(
        (x, y) =>
          header[x].data_offsets[0] - header[y].data_offsets[0] ||
          header[x].data_offsets[1] - header[y].data_offsets[1],
      );
    assert.deepEqual(
      byOffset.filter((n) => n !== 'empty'),
      ['a.bias', 'b.weight', 'c', 'scalar', 'ünïcode'],
    );
  });

  it('refuses bad tensors and leaves nothing behind when a tensor fails mid-write', async () => {
    const path = join(tmp, 'atomic.safetensors');
    await assert.rejects(
      writeSafetensors(path, [{ name: 'x', dtype: 'f32', shape: [2], data: new Uint8Array(4) }]),
      /4 bytes given/,
    );
    await assert.rejects(
      writeSafetensors(path, [{ name: 'x', dtype: 'q4_0', shape: [32], data: new Uint8Array(18) }]),
      /cannot store q4_0/,
    );
    await assert.rejects(
      writeSafetensors(path, [
        { name: 'x', dtype: 'f32', shape: [1], data: new Uint8Array(4) },
        { name: 'x', dtype: 'f32', shape: [1], data: new Uint8Array(4) },
      ]),
      /twice/,
    );
    await assert.rejects(
      writeSafetensors(path, [
        { name: 'a', dtype: 'f32', shape: [1], data: new Uint8Array(4) },
        {
          name: 'b',
          dtype: 'f32',
          shape: [1],
          data: () => {
            throw new Error('source failed');
          },
        },
      ]),
      /source failed/,
    );
    await assert.rejects(
      writeSafetensors(path, [{ name: 'a', dtype: 'f32', shape: [2], data: () => new Uint8Array(4) }]),
      /4 bytes produced/,
    );
    assert.equal(existsSync(path), false);
    assert.deepEqual(
      readdirSync(tmp).filter((f) => f.includes('atomic')),
      [],
    );
  });
});

describe('corrupt safetensors files', () => {
  const original = readFileSync(TINY);
  const f32 = (n: number) => new Uint8Array(4 * n);

  it('truncated data → FormatError naming the file and the tensor', async () => {
    const path = join(tmp, 'truncated.safetensors');
    writeFileSync(path, original.subarray(0, original.length - 100));
    await rejectsFormat(path, /truncated\.safetensors: tensor transformer\.wte\.weight.*past the end/);
  });

  it('files shorter than the header length field, or cut inside the header', async () => {
    const path = join(tmp, 'tiny.safetensors');
    writeFileSync(path, original.subarray(0, 5));
    await rejectsFormat(path, /shorter than the 8-byte header length/);
    writeFileSync(path, original.subarray(0, 300));
    await rejectsFormat(path, /header length 1440 runs past the end/);
  });

  it('header length beyond the file or absurd', async () => {
    const bad = Buffer.from(original);
    bad.writeBigUInt64LE(BigInt(original.length));
    writeFileSync(join(tmp, 'hlen.safetensors'), bad);
    await rejectsFormat(join(tmp, 'hlen.safetensors'), /runs past the end/);
    bad.writeBigUInt64LE(1n << 60n);
    writeFileSync(join(tmp, 'hlen2.safetensors'), bad);
    await rejectsFormat(join(tmp, 'hlen2.safetensors'), /absurd/);
  });

  it('malformed header JSON, non-object header, invalid UTF-8', async () => {
    const bad = Buffer.from(original);
    bad[8 + 15] = 0x7d; // the ':' after "__metadata__" becomes a stray '}'
    writeFileSync(join(tmp, 'json.safetensors'), bad);
    await rejectsFormat(join(tmp, 'json.safetensors'), /json\.safetensors: malformed safetensors header JSON/);
    await rejectsFormat(rawFile('array.safetensors', [1, 2], new Uint8Array(0)), /not a JSON object/);
    await rejectsFormat(
      rawFile('utf8.safetensors', Uint8Array.of(0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d), new Uint8Array(0)),
      /not valid UTF-8/,
    );
    await rejectsFormat(
      rawFile('meta.safetensors', { __metadata__: { a: 1 } }, new Uint8Array(0)),
      /__metadata__\.a is not a string/,
    );
  });

  it('unknown or unsupported dtypes are named', async () => {
    for (const dtype of ['F64', 'I64', 'F8_E4M3', 'Q4']) {
      await rejectsFormat(
        rawFile(`dt-${dtype}.safetensors`, { w: { dtype, shape: [2], data_offsets: [0, 16] } }, f32(4)),
        new RegExp(`tensor w has dtype ${dtype}`),
      );
    }
  });

  it('shape × dtype size must match the byte range', async () => {
    await rejectsFormat(
      rawFile('mismatch.safetensors', { w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32(3)),
      /tensor w: shape \[3\] of F32 needs 12 bytes/,
    );
    await rejectsFormat(
      rawFile('mismatch2.safetensors', { w: { dtype: 'BF16', shape: [2, 2], data_offsets: [0, 16] } }, f32(4)),
      /needs 8 bytes/,
    );
  });

  it('offsets out of range, backwards, negative, fractional or overlapping', async () => {
    await rejectsFormat(
      rawFile('oor.safetensors', { w: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } }, f32(4)),
      /tensor w: data_offsets \[8, 24\] run past the end/,
    );
    await rejectsFormat(
      rawFile('back.safetensors', { w: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, f32(4)),
      /backwards/,
    );
    await rejectsFormat(
      rawFile('neg.safetensors', { w: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, f32(4)),
      /not a pair of non-negative integers/,
    );
    await rejectsFormat(
      rawFile('frac.safetensors', { w: { dtype: 'F32', shape: [1.5], data_offsets: [0, 6] } }, f32(4)),
      /not a list of non-negative integers/,
    );
    await rejectsFormat(
      rawFile('negshape.safetensors', { w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, f32(4)),
      /not a list of non-negative integers/,
    );
    await rejectsFormat(
      rawFile('huge.safetensors', { w: { dtype: 'F32', shape: [1], data_offsets: [0, 2 ** 60] } }, f32(4)),
      /FormatError|past the end|non-negative/,
    );
    await rejectsFormat(
      rawFile(
        'overlap.safetensors',
        {
          a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
          b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
        },
        f32(3),
      ),
      /tensors a \[0, 8\) and b \[4, 12\) overlap/,
    );
    // An empty tensor between two overlapping ones must not hide the overlap.
    await rejectsFormat(
      rawFile(
        'overlap2.safetensors',
        {
          a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
          z: { dtype: 'F32', shape: [0], data_offsets: [4, 4] },
          b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
        },
        f32(4),
      ),
      /overlap/,
    );
    await rejectsFormat(rawFile('entry.safetensors', { w: 3 }, f32(1)), /tensor w: header entry is not an object/);
  });

  it('a header entry without one of its fields names the field and what it must hold', async () => {
    const full = { dtype: 'F32', shape: [1], data_offsets: [0, 4] };
    for (const [field, want] of [
      ['dtype', /tensor w: the header entry has no "dtype" \(F32, F16 or BF16\)/],
      ['shape', /tensor w: the header entry has no "shape" \(a list of non-negative integers\)/],
      ['data_offsets', /tensor w: the header entry has no "data_offsets" \(a pair of non-negative integers\)/],
    ] as const) {
      const { [field]: _left, ...entry } = full;
      await rejectsFormat(rawFile(`no-${field}.safetensors`, { w: entry }, f32(1)), want);
    }
    await rejectsFormat(
      rawFile('numdtype.safetensors', { w: { ...full, dtype: 7 } }, f32(1)),
      /tensor w: "dtype" is 7, not a string \(F32, F16 or BF16\)/,
    );
  });

  it('the data section must be exactly covered by the tensors (as the reference implementation requires)', async () => {
    /** An F32 tensor spanning [begin, end). */
    const t = (begin: number, end: number) => ({
      dtype: 'F32',
      shape: [(end - begin) / 4],
      data_offsets: [begin, end],
    });
    await rejectsFormat(
      rawFile('gap.safetensors', { a: t(0, 8), b: t(12, 16) }, f32(4)),
      /gap\.safetensors: data bytes \[8, 12\) before tensor b belong to no tensor/,
    );
    await rejectsFormat(
      rawFile('lead.safetensors', { a: t(4, 8) }, f32(2)),
      /data bytes \[0, 4\) before tensor a belong to no tensor/,
    );
    await rejectsFormat(
      rawFile('trail.safetensors', { a: t(0, 8) }, f32(3)),
      /trail\.safetensors: data bytes \[8, 12\) after tensor a belong to no tensor/,
    );
    await rejectsFormat(
      rawFile('trail0.safetensors', {}, f32(1)),
      /data bytes \[0, 4\) after the header belong to no tensor/,
    );
    // Tensors may be listed in any order, and empty tensors sit anywhere on the boundary.
    const empty = { dtype: 'F16', shape: [0, 3], data_offsets: [8, 8] };
    const ok = await openSafetensors(rawFile('ok.safetensors', { b: t(8, 16), e: empty, a: t(0, 8) }, f32(4)));
    assert.deepEqual(
      ok.list().map((i) => i.name),
      ['b', 'e', 'a'],
    );
    await ok.close();
  });

  it('a header length one byte short is refused (it would read every tensor one byte off)', async () => {
    // The fixture's header ends in padding spaces, so the shortened header is still valid JSON.
    const bad = Buffer.from(original);
    const len = Number(bad.readBigUInt64LE(0));
    assert.equal(bad[8 + len - 1], 0x20);
    bad.writeBigUInt64LE(BigInt(len - 1));
    writeFileSync(join(tmp, 'short.safetensors'), bad);
    await rejectsFormat(
      join(tmp, 'short.safetensors'),
      /short\.safetensors: data bytes \[\d+, \d+\) after tensor transformer\.wte\.weight belong to no tensor/,
    );
  });

  it('the header must start with "{" and name each tensor once', async () => {
    await rejectsFormat(
      rawFile('ws.safetensors', ' {}', new Uint8Array(0)),
      /ws\.safetensors: the safetensors header does not start with "\{"/,
    );
    const one = '{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}';
    const dup = `{"a": ${one}, "a": ${one}}`;
    await rejectsFormat(
      rawFile('dup.safetensors', dup, f32(1)),
      /dup\.safetensors: the safetensors header names "a" twice/,
    );
    // Escapes spell the same name differently; nested objects may repeat names freely.
    const dup2 = `{"__metadata__": {"a": "x"}, "\\u0061": ${one}, "a": ${one}}`;
    await rejectsFormat(rawFile('dup2.safetensors', dup2, f32(1)), /names "a" twice/);
    const nested = `{"__metadata__": {"dtype": "x", "shape": "y"}, "a": ${one}}`;
    const s = await openSafetensors(rawFile('nested.safetensors', nested, f32(1)));
    assert.deepEqual(
      s.list().map((i) => i.name),
      ['a'],
    );
    await s.close();
  });

  it('a file that shrinks after opening fails the read with FormatError', async () => {
    const path = join(tmp, 'shrink.safetensors');
    writeFileSync(path, original);
    const s = await openSafetensors(path);
    writeFileSync(path, original.subarray(0, original.length - 1000));
    await assert.rejects(
      s.read('transformer.wte.weight'),
      (e: unknown) => e instanceof FormatError && /truncated/.test(e.message),
    );
    await s.close();
  });

  it('a missing file is a FormatError naming it', async () => {
    await rejectsFormat(join(tmp, 'does-not-exist.safetensors'), /cannot open .*does-not-exist/);
  });
});
