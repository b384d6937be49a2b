// torch.save checkpoints: the zip layer and the state-dict reader, on the fixture (which must equal
// the safetensors checkpoint bit for bit), on archives built here from the zip spec (ZIP64, data
// descriptors, shared storages, other stems), and on corrupted copies of the fixture.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { FormatError, UnsafePickleError } from '../src/errors.js';
import { f32ToBf16Bytes, f32ToF16Bytes } from '../src/formats/dtypes.js';
import { openSafetensors } from '../src/formats/safetensors.js';
import { openTorchBin } from '../src/formats/torch-bin.js';
import { crc32, ZipArchive } from '../src/formats/zip.js';
import { buildZip, le, type ZipInput, type ZipOptions } from './helpers/zip-writer.js';

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/', import.meta.url));
const BIN = join(FIXTURES, 'tiny-alibi-bin/pytorch_model.bin');
const tmp = mkdtempSync(join(tmpdir(), 'mpt-formats-bin-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Central directory records of an archive without a comment: name and byte position. */
function centralRecords(zip: Buffer): { name: string; at: number }[] {
  const eocd = zip.length - 22;
  assert.equal(zip.readUInt32LE(eocd), 0x06054b50);
  const count = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  const out: { name: string; at: number }[] = [];
  for (let i = 0; i < count; i++) {
    const n = zip.readUInt16LE(p + 28);
    out.push({ name: zip.toString('utf8', p + 46, p + 46 + n), at: p });
    p += 46 + n + zip.readUInt16LE(p + 30) + zip.readUInt16LE(p + 32);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Pickles of state dicts, written opcode by opcode the way torch.save (protocol 2) writes them.

const ascii = (s: string) => Buffer.from(s, 'latin1');
const pStr = (s: string) => Buffer.concat([ascii('X'), le(Buffer.byteLength(s), 4), Buffer.from(s, 'utf8')]);
const pInt = (n: number) => Buffer.concat([ascii('J'), le(n, 4)]);
const pGlobal = (m: string, n: string) => ascii(`c${m}\n${n}\n`);
const pTuple = (...items: Buffer[]) => Buffer.concat([ascii('('), ...items, ascii('t')]);

interface FakeTensor {
  name: string;
  storage: string;
  key: string;
  numel: number;
  offset: number;
  size: number[];
  stride: number[];
  parameter?: boolean;
}

function statePickle(tensors: FakeTensor[], extra: Buffer = Buffer.alloc(0)): Buffer {
  const items = tensors.map((t) => {
    const pid = pTuple(pStr('storage'), pGlobal('torch', t.storage), pStr(t.key), pStr('cpu'), pInt(t.numel));
    const rebuild = Buffer.concat([
      pGlobal('torch._utils', '_rebuild_tensor_v2'),
      pTuple(
        pid,
        ascii('Q'),
        pInt(t.offset),
        pTuple(...t.size.map(pInt)),
        pTuple(...t.stride.map(pInt)),
        Buffer.from([0x89]),
        pGlobal('collections', 'OrderedDict'),
        ascii(')R'),
      ),
      ascii('R'),
    ]);
    const value = t.parameter
      ? Buffer.concat([
          pGlobal('torch._utils', '_rebuild_parameter'),
          pTuple(rebuild, Buffer.from([0x89]), pGlobal('collections', 'OrderedDict'), ascii(')R')),
          ascii('R'),
        ])
      : rebuild;
    return Buffer.concat([pStr(t.name), value]);
  });
  return Buffer.concat([
    Buffer.from([0x80, 0x02]),
    pGlobal('collections', 'OrderedDict'),
    ascii(')R('),
    ...items,
    ascii('u'),
    extra,
    ascii('.'),
  ]);
}

function writeTorchZip(
  file: string,
  stem: string,
  pickle: Buffer,
  storages: Record<string, Uint8Array>,
  opts: ZipOptions = { dataDescriptor: true, align: 64 },
  methods: Record<string, number> = {},
): string {
  const entries: ZipInput[] = [{ name: `${stem}/data.pkl`, data: pickle }];
  for (const [key, data] of Object.entries(storages))
    entries.push({ name: `${stem}/data/${key}`, data, method: methods[key] });
  entries.push({ name: `${stem}/version`, data: ascii('3\n') });
  const path = join(tmp, file);
  writeFileSync(path, buildZip(entries, opts));
  return path;
}

const floats = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer);

async function rejects(promise: Promise<unknown>, type: typeof FormatError, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof type, `expected ${type.name}, got ${String(e)}`);
    assert.match((e as Error).message, pattern);
    return true;
  });
}

async function openAndReadAll(path: string): Promise<void> {
  const s = await openTorchBin(path);
  try {
    for (const t of s.list()) await s.read(t.name);
  } finally {
    await s.close();
  }
}

// ---------------------------------------------------------------------------------------------

describe('zip reader', () => {
  it('computes CRC-32 like zlib', () => {
    assert.equal(crc32(ascii('123456789')), 0xcbf43926);
    const data = Uint8Array.from({ length: 1000 }, (_, i) => (i * 37) & 0xff);
    assert.equal(crc32(data), zlibCrc32(data) >>> 0);
  });

  it('reads the fixture: data starts after the local (padded) extra field, sizes come from the directory', async () => {
    const zip = await ZipArchive.open(BIN);
    const file = readFileSync(BIN);
    assert.equal(zip.entries.length, 16);
    for (const e of zip.entries) {
      assert.equal(e.method, 0);
      assert.equal(e.flags & 8, 8, 'PyTorch sets flag bit 3');
      assert.equal(e.dataOffset % 64, 0, `${e.name} data is 64-byte aligned`);
      const bytes = await zip.readVerified(e.name); // the CRC torch wrote must match the bytes we read
      assert.deepEqual(Buffer.from(bytes), file.subarray(e.dataOffset, e.dataOffset + e.uncompressedSize));
    }
    assert.equal(new TextDecoder().decode(await zip.read('pytorch_model/version')), '3\n');
    await rejects(zip.read('nope'), FormatError, /no entry nope/);
    await rejects(zip.read('pytorch_model/version', 1, 5), FormatError, /outside zip entry/);
    await zip.close();
  });

  it('reads ZIP64 archives with data descriptors', async () => {
    const a = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
    for (const opts of [
      { zip64: true },
      { zip64: true, dataDescriptor: true, align: 64 },
      { dataDescriptor: true },
      {},
    ] as ZipOptions[]) {
      const path = join(tmp, 'z64.zip');
      writeFileSync(
        path,
        buildZip(
          [
            { name: 'x/a', data: a },
            { name: 'x/ü', data: ascii('hi') },
            { name: 'x/empty', data: new Uint8Array(0) },
          ],
          opts,
        ),
      );
      const zip = await ZipArchive.open(path);
      assert.deepEqual(
        zip.entries.map((e) => [e.name, e.uncompressedSize]),
        [
          ['x/a', 300],
          ['x/ü', 2],
          ['x/empty', 0],
        ],
      );
      assert.deepEqual(await zip.readVerified('x/a'), a);
      assert.deepEqual(await zip.read('x/a', 10, 5), a.subarray(10, 15));
      assert.deepEqual(await zip.readVerified('x/ü'), Uint8Array.from(ascii('hi')));
      assert.equal((await zip.read('x/empty')).length, 0);
      await zip.close();
    }
  });

  describe('corrupted copies of the fixture', () => {
    const original = readFileSync(BIN);
    const records = centralRecords(original);
    const rec = (name: string) => records.find((r) => r.name === name)!.at;

    const corrupt = async (file: string, edit: ((b: Buffer) => Buffer) | ((b: Buffer) => void), pattern: RegExp) => {
      const b = Buffer.from(original);
      const path = join(tmp, file);
      writeFileSync(path, edit(b) ?? b);
      await rejects(openAndReadAll(path), FormatError, pattern);
    };

    it('truncated archives', async () => {
      for (const keep of [original.length - 10, original.length - 600, 70000, 100, 0]) {
        await corrupt(`trunc-${keep}.bin`, (b) => b.subarray(0, keep), /truncated|not a zip/);
      }
    });

    it('entries whose sizes lie', async () => {
      const data0 = rec('pytorch_model/data/0');
      await corrupt(
        'lie-stored.bin',
        (b) => void b.writeUInt32LE(131072 + 4, data0 + 20),
        /stored but claims 131076 bytes compressed and 131072 uncompressed/,
      );
      await corrupt(
        'lie-past.bin',
        (b) => {
          b.writeUInt32LE(10_000_000, data0 + 20);
          b.writeUInt32LE(10_000_000, data0 + 24);
        },
        /data\/0 claims 10000000 bytes .* runs past/,
      );
      await corrupt(
        'lie-overlap.bin',
        (b) => {
          b.writeUInt32LE(131072 + 512, data0 + 20);
          b.writeUInt32LE(131072 + 512, data0 + 24);
        },
        /overlap/,
      );
      await corrupt(
        'lie-offset.bin',
        (b) => void b.writeUInt32LE(original.length + 5, data0 + 42),
        /outside the archive/,
      );
      await corrupt(
        'lie-local.bin',
        (b) => void b.writeUInt32LE(1000, data0 + 42),
        /no local header|names another entry/,
      );
      // PyTorch always writes a ZIP64 end record (56 bytes, then the 20-byte locator, then the classic one).
      const z64 = original.length - 22 - 20 - 56;
      assert.equal(original.readUInt32LE(z64), 0x06064b50);
      await corrupt(
        'lie-count.bin',
        (b) => {
          b.writeBigUInt64LE(17n, z64 + 24);
          b.writeBigUInt64LE(17n, z64 + 32);
        },
        /disagree/,
      );
      await corrupt(
        'lie-count64.bin',
        (b) => {
          b.writeBigUInt64LE(17n, z64 + 24);
          b.writeBigUInt64LE(17n, z64 + 32);
          b.writeUInt16LE(17, b.length - 22 + 8);
          b.writeUInt16LE(17, b.length - 22 + 10);
        },
        /entry 16 is missing/,
      );
      await corrupt(
        'lie-cdsize.bin',
        (b) => {
          b.writeBigUInt64LE(BigInt(original.length), z64 + 40);
          b.writeUInt32LE(0xffffffff, b.length - 22 + 12);
        },
        /absurd|runs past/,
      );
    });

    it('an entry count the central directory cannot hold is refused before it is walked', async () => {
      const z64 = original.length - 22 - 20 - 56;
      await corrupt(
        'many-entries.bin',
        (b) => {
          b.writeBigUInt64LE(2n ** 40n, z64 + 24);
          b.writeBigUInt64LE(2n ** 40n, z64 + 32);
          b.writeUInt16LE(0xffff, b.length - 22 + 8);
          b.writeUInt16LE(0xffff, b.length - 22 + 10);
        },
        /many-entries\.bin: zip claims 1099511627776 entries, more than its central directory of \d+ bytes can hold/,
      );
    });

    it('a storage entry the pickle sizes differently', async () => {
      const data1 = rec('pytorch_model/data/1'); // norm weight: 64 floats = 256 bytes
      await corrupt(
        'storage-size.bin',
        (b) => {
          b.writeUInt32LE(252, data1 + 20);
          b.writeUInt32LE(252, data1 + 24);
        },
        /has 252 bytes, but the pickle says 64 × 4/,
      );
    });

    it('a corrupt data.pkl fails its CRC check', async () => {
      const pkl = original.indexOf(ascii('transformer.wte.weight'));
      await corrupt(
        'crc.bin',
        (b) => {
          b[pkl] = 0x54;
        },
        /data\.pkl is corrupt \(CRC-32/,
      );
    });

    it('random byte flips in the headers only ever give a FormatError (no crash, no hang)', async () => {
      // Targets: the pickle, every local header, the central directory and the end records.
      const cdStart = records[0]!.at;
      const spots: [number, number][] = [
        [0, 1600],
        [cdStart, original.length],
      ];
      for (const r of records) {
        const lho = original.readUInt32LE(r.at + 42);
        spots.push([lho, lho + 80]);
      }
      let seed = 7;
      const next = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
      const path = join(tmp, 'fuzz.bin');
      for (let i = 0; i < 300; i++) {
        const b = Buffer.from(original);
        const [lo, hi] = spots[next() % spots.length]!;
        for (let f = 0; f < 2; f++) b[lo + (next() % (hi - lo))] = next() & 0xff;
        writeFileSync(path, b);
        try {
          await openAndReadAll(path);
        } catch (e) {
          assert.ok(e instanceof FormatError, `mutation ${i}: ${String(e)}`);
        }
      }
    });

    it('a compressed storage is refused when read, naming it', async () => {
      const data0 = rec('pytorch_model/data/0');
      const b = Buffer.from(original);
      b.writeUInt16LE(8, data0 + 10);
      const path = join(tmp, 'deflated.bin');
      writeFileSync(path, b);
      const s = await openTorchBin(path);
      await rejects(s.read('transformer.wte.weight'), FormatError, /data\/0 is compressed \(method 8\)/);
      assert.equal((await s.read('transformer.norm_f.weight')).length, 256);
      await s.close();
    });
  });
});

describe('openTorchBin', () => {
  it('the fixture equals the safetensors checkpoint bit for bit (and is the file goldens.json describes)', async () => {
    const want = JSON.parse(readFileSync(join(FIXTURES, 'tiny-alibi-bin/goldens.json'), 'utf8')).checkpoint_files[
      'pytorch_model.bin'
    ];
    assert.equal(createHash('sha256').update(readFileSync(BIN)).digest('hex'), want.sha256);
    const bin = await openTorchBin(BIN);
    const st = await openSafetensors(join(FIXTURES, 'tiny-alibi/model.safetensors'));
    assert.deepEqual(
      bin
        .list()
        .map((t) => t.name)
        .sort(),
      st
        .list()
        .map((t) => t.name)
        .sort(),
    );
    for (const t of st.list()) {
      assert.deepEqual(bin.info(t.name), t);
      assert.deepEqual(await bin.read(t.name), await st.read(t.name), t.name);
    }
    await bin.close();
    await st.close();
  });

  it('reads tensors sharing one storage (views at offsets), parameters, f16/bf16, other stems, ZIP64', async () => {
    const shared = floats(0, 1, 2, 3, 4, 5, 6, 7, 8, 9);
    const half = f32ToF16Bytes(Float32Array.of(1, 2, 3));
    const bf = f32ToBf16Bytes(Float32Array.of(-1, -2));
    const pickle = statePickle([
      { name: 'a', storage: 'FloatStorage', key: '0', numel: 10, offset: 0, size: [2, 3], stride: [3, 1] },
      { name: 'b', storage: 'FloatStorage', key: '0', numel: 10, offset: 6, size: [4], stride: [1] },
      { name: 'c', storage: 'FloatStorage', key: '0', numel: 10, offset: 2, size: [1, 4], stride: [99, 1] },
      { name: 'h', storage: 'HalfStorage', key: '1', numel: 3, offset: 0, size: [3], stride: [1], parameter: true },
      { name: 'bf', storage: 'BFloat16Storage', key: '2', numel: 2, offset: 0, size: [2, 1], stride: [1, 1] },
      { name: 'empty', storage: 'FloatStorage', key: '0', numel: 10, offset: 10, size: [0, 3], stride: [3, 1] },
      { name: 'scalar', storage: 'FloatStorage', key: '0', numel: 10, offset: 9, size: [], stride: [] },
    ]);
    for (const [stem, opts] of [
      ['archive', { zip64: true, dataDescriptor: true, align: 64 }],
      ['my model', {}],
    ] as [string, ZipOptions][]) {
      const path = writeTorchZip(`views-${stem}.bin`, stem, pickle, { '0': shared, '1': half, '2': bf }, opts);
      const s = await openTorchBin(path);
      assert.deepEqual(
        s.list().map((t) => [t.name, t.dtype, t.shape, t.byteLength]),
        [
          ['a', 'f32', [2, 3], 24],
          ['b', 'f32', [4], 16],
          ['c', 'f32', [1, 4], 16],
          ['h', 'f16', [3], 6],
          ['bf', 'bf16', [2, 1], 4],
          ['empty', 'f32', [0, 3], 0],
          ['scalar', 'f32', [], 4],
        ],
      );
      assert.deepEqual(await s.read('a'), floats(0, 1, 2, 3, 4, 5));
      assert.deepEqual(await s.read('b'), floats(6, 7, 8, 9));
      assert.deepEqual(await s.read('c'), floats(2, 3, 4, 5));
      assert.deepEqual(await s.read('h'), half);
      assert.deepEqual(await s.read('bf'), bf);
      assert.deepEqual(await s.read('empty'), new Uint8Array(0));
      assert.deepEqual(await s.read('scalar'), floats(9));
      await rejects(s.read('zzz'), FormatError, /no tensor named zzz/);
      await s.close();
    }
  });

  it('ignores the attributes a state dict carries (BUILD with _metadata)', async () => {
    const build = Buffer.concat([
      ascii('}'),
      pStr('_metadata'),
      pGlobal('collections', 'OrderedDict'),
      ascii(')R'),
      ascii('s'),
      ascii('b'),
    ]);
    const path = writeTorchZip(
      'build.bin',
      'm',
      statePickle(
        [{ name: 'w', storage: 'FloatStorage', key: '0', numel: 1, offset: 0, size: [1], stride: [1] }],
        build,
      ),
      { '0': floats(5) },
    );
    const s = await openTorchBin(path);
    assert.deepEqual(await s.read('w'), floats(5));
    await s.close();
  });

  it('refuses non-contiguous, unsupported-dtype, out-of-storage and storage-less tensors, naming them', async () => {
    const one = (t: Partial<FakeTensor>, storages: Record<string, Uint8Array> = { '0': floats(0, 1, 2, 3, 4, 5) }) =>
      writeTorchZip(
        `bad-${Object.values(t).join('-')}.bin`,
        'x',
        statePickle([
          { name: 'w', storage: 'FloatStorage', key: '0', numel: 6, offset: 0, size: [2, 3], stride: [3, 1], ...t },
        ]),
        storages,
      );
    await rejects(
      openTorchBin(one({ stride: [1, 2] })),
      FormatError,
      /tensor w is not contiguous \(size \[2, 3\], stride \[1, 2\]\)/,
    );
    await rejects(
      openTorchBin(one({ storage: 'LongStorage', numel: 3 })),
      FormatError,
      /tensor w is int64; only float32, float16 and bfloat16/,
    );
    await rejects(openTorchBin(one({ storage: 'DoubleStorage', numel: 3 })), FormatError, /tensor w is float64/);
    await rejects(
      openTorchBin(one({ offset: 1 })),
      FormatError,
      /tensor w: elements \[1, 7\) lie outside its storage of 6/,
    );
    await rejects(openTorchBin(one({ key: '7' })), FormatError, /its storage x\/data\/7 is missing/);
    await rejects(openTorchBin(one({ size: [2], stride: [1, 1] })), FormatError, /different ranks/);
  });

  it('refuses pickles that ask for code (os.system, builtins.eval, torch.storage._load_from_bytes)', async () => {
    const evil = (m: string, n: string) =>
      Buffer.concat([
        Buffer.from([0x80, 0x02]),
        pGlobal(m, n),
        pStr('touch /tmp/pwned'),
        Buffer.from([0x85]),
        ascii('R.'),
      ]);
    for (const [m, n] of [
      ['os', 'system'],
      ['builtins', 'eval'],
      ['torch.storage', '_load_from_bytes'],
      ['posix', 'system'],
    ]) {
      const path = writeTorchZip(`evil-${n}.bin`, 'archive', evil(m!, n!), {});
      await rejects(
        openTorchBin(path),
        UnsafePickleError,
        new RegExp(
          `evil-${n}\\.bin: archive/data\\.pkl: pickle asks for global ${m!.replace('.', '\\.')}\\.${n}, which is not allowed`,
        ),
      );
    }
  });

  it('refuses unknown opcodes and truncated pickles inside the archive', async () => {
    const good = statePickle([
      { name: 'w', storage: 'FloatStorage', key: '0', numel: 1, offset: 0, size: [1], stride: [1] },
    ]);
    const unknown = Buffer.from(good);
    unknown[2] = 0xfe;
    await rejects(
      openTorchBin(writeTorchZip('op.bin', 'a', unknown, { '0': floats(1) })),
      FormatError,
      /unknown pickle opcode 0xfe at byte 2/,
    );
    for (const cut of [1, 10, good.length - 1]) {
      await rejects(
        openTorchBin(writeTorchZip(`cut${cut}.bin`, 'a', good.subarray(0, cut), { '0': floats(1) })),
        FormatError,
        /truncated/,
      );
    }
  });

  it('explains non-checkpoints: legacy torch.save, other zips, other files', async () => {
    const legacy = join(tmp, 'legacy.bin');
    writeFileSync(legacy, Buffer.concat([Buffer.from([0x80, 0x02, 0x8a, 0x0a]), Buffer.alloc(100)]));
    await rejects(openTorchBin(legacy), FormatError, /legacy \(pre-1\.6\) serialization/);
    const plain = join(tmp, 'plain.zip');
    writeFileSync(plain, buildZip([{ name: 'readme.txt', data: ascii('hi') }]));
    await rejects(openTorchBin(plain), FormatError, /not a torch\.save checkpoint/);
    const two = join(tmp, 'two.zip');
    writeFileSync(
      two,
      buildZip([
        { name: 'a/data.pkl', data: ascii('.') },
        { name: 'b/data.pkl', data: ascii('.') },
      ]),
    );
    await rejects(openTorchBin(two), FormatError, /2 data\.pkl entries/);
    const notDict = join(tmp, 'list.zip');
    writeFileSync(notDict, buildZip([{ name: 'a/data.pkl', data: Buffer.from([0x80, 0x02, 0x5d, 0x2e]) }]));
    await rejects(openTorchBin(notDict), FormatError, /not a state dict/);
    const random = join(tmp, 'random.bin');
    writeFileSync(random, Buffer.alloc(5000, 7));
    await rejects(openTorchBin(random), FormatError, /not a zip/);
    await rejects(openTorchBin(join(tmp, 'missing.bin')), FormatError, /cannot open/);
  });
});
