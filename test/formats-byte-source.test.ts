// Byte sources: the format readers read checkpoints through positioned reads of a ByteSource, so a
// local file, a URL (HTTP Range requests against a local server), a Blob/File and bytes in memory
// must all give the same tensors. Every fixture folder and GGUF file is opened each way and
// compared byte for byte with the local-file reading; the HTTP source is checked for what it asks
// the server (one tensor read is not the whole file), for servers that ignore Range or fail, and
// for its limit on requests in flight. Last, the readers' static import graph has no Node module.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { getBackend } from '../src/backends/registry.js';
import { FetchError, FormatError, InputError, MptError, RangeNotSupportedError } from '../src/errors.js';
import { blobSource, bytesSource, type ByteSource, closedError } from '../src/formats/byte-source.js';
import { RandomAccessFile } from '../src/formats/file-reader.js';
import { fileListFolder, urlFolder } from '../src/formats/folder-source.js';
import { readGguf, readGgufSource, type GgufFile } from '../src/formats/gguf.js';
import { HF_WEIGHT_FILES, openHfFolderFromSources, openHfFolderTensors } from '../src/formats/hf-folder.js';
import { JSON_FILE_LIMITS, readJsonSource } from '../src/formats/json-source.js';
import { openSafetensorsSource } from '../src/formats/safetensors.js';
import type { TensorSource } from '../src/formats/tensor-source.js';
import { openUrlSource } from '../src/formats/url-source.js';
import { openCheckpoint } from '../src/model/load.js';
import { FIXTURES, REPO_ROOT } from './helpers/goldens.js';
import { serveFolder, type RangeServer } from './helpers/range-server.js';

/** Fixture folders holding Hugging Face weights (config-only folders are left out). */
/**
 * A fake server's answer to a Range request on a 100,000-byte file: the first range (the header
 * read) at once, every later one only once the test calls the release it pushes onto `pending`,
 * its bytes all `fill(start)`.
 */
async function heldRangeAnswer(
  init: RequestInit | undefined,
  pending: (() => void)[],
  fill: (start: number) => number,
): Promise<Response> {
  const range = String((init!.headers as Record<string, string>)['Range']);
  const [a, b] = range.slice(6).split('-').map(Number);
  if (a === 0)
    return new Response(new Uint8Array(b! + 1), { status: 206, headers: { 'Content-Range': `bytes 0-${b}/100000` } });
  await new Promise<void>((resolve) => pending.push(resolve));
  return new Response(new Uint8Array(b! - a! + 1).fill(fill(a!)), { status: 206 });
}

const HF_FOLDERS = readdirSync(FIXTURES, { withFileTypes: true })
  .filter(
    (e) =>
      e.isDirectory() &&
      readdirSync(join(FIXTURES, e.name)).some((f) => (HF_WEIGHT_FILES as readonly string[]).includes(f)),
  )
  .map((e) => e.name)
  .sort();
const GGUF_DIR = join(FIXTURES, 'gguf-tiny-q');
const GGUF_FILES = readdirSync(GGUF_DIR)
  .filter((f) => f.endsWith('.gguf'))
  .sort();

/** The checkpoint files of a folder as File objects, as a browser hands over a dropped folder. */
function droppedFiles(dir: string): File[] {
  return readdirSync(dir)
    .filter((f) => !f.startsWith('goldens.') && !f.includes('.llamacpp.') && !f.endsWith('.md'))
    .map((f) => new File([readFileSync(join(dir, f))], f));
}

/** Same tensor list and byte-identical tensors (whole reads, and a readInto of a middle slice). */
async function assertSameTensors(actual: TensorSource, expected: TensorSource, label: string): Promise<void> {
  assert.deepEqual(actual.list(), expected.list(), `${label}: tensor list`);
  for (const info of expected.list()) {
    const want = await expected.read(info.name);
    assert.deepEqual(await actual.read(info.name), want, `${label}: ${info.name}`);
    if (actual.readInto && info.byteLength >= 3) {
      const start = Math.floor(info.byteLength / 3);
      const dest = new Uint8Array(info.byteLength - 2 * start);
      await actual.readInto(info.name, dest, start);
      assert.deepEqual(dest, want.subarray(start, start + dest.length), `${label}: readInto of ${info.name}`);
    }
  }
}

async function assertSameGguf(actual: GgufFile, expected: GgufFile, label: string): Promise<void> {
  assert.deepEqual(actual.metadata, expected.metadata, `${label}: metadata`);
  assert.deepEqual(actual.tensors, expected.tensors, `${label}: tensor infos`);
  for (const t of expected.tensors) {
    assert.deepEqual(await actual.readTensor(t.name), await expected.readTensor(t.name), `${label}: ${t.name}`);
  }
}

describe('bytes in memory and Blobs', () => {
  const data = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7 + 3) & 0xff);

  for (const [kind, open] of [
    ['ArrayBuffer', () => bytesSource(data.slice().buffer, 'mem')],
    ['Uint8Array view', () => bytesSource(new Uint8Array([9, ...data]).subarray(1), 'mem')],
    ['Blob', () => blobSource(new Blob([data]), 'mem')],
  ] as const) {
    it(`${kind}: positioned reads are the bytes at that offset, in fresh aligned buffers`, async () => {
      const s: ByteSource = open();
      assert.equal(s.size, 1000);
      const got = await s.read(123, 456);
      assert.deepEqual(got, data.subarray(123, 579));
      assert.equal(got.byteOffset, 0);
      assert.equal(got.buffer.byteLength, 456);
      assert.deepEqual(await s.read(1000, 0), new Uint8Array(0));
      await assert.rejects(
        s.read(990, 11, 'tensor x'),
        (e: unknown) =>
          e instanceof FormatError &&
          /mem is truncated: tensor x needs bytes \[990, 1001\) but the file has 1000 bytes/.test(e.message),
      );
      await assert.rejects(s.read(-1, 2), FormatError);
      await s.close();
      await assert.rejects(
        s.read(0, 1, 'the header'),
        (e: unknown) => e instanceof MptError && /mem was already closed \(reading the header\)/.test(e.message),
      );
    });
  }

  it('a File is named by its file name', async () => {
    assert.equal(blobSource(new File([data], 'model.gguf')).name, 'model.gguf');
    assert.equal(blobSource(new Blob([data])).name, 'blob');
  });

  it('a safetensors file in memory reads as from disk', async () => {
    const path = join(FIXTURES, 'tiny-alibi/model.safetensors');
    const { openSafetensors } = await import('../src/formats/safetensors.js');
    const fromDisk = await openSafetensors(path);
    const fromMemory = await openSafetensorsSource(bytesSource(readFileSync(path), 'model.safetensors'));
    await assertSameTensors(fromMemory, fromDisk, 'memory');
    assert.equal(fromMemory.path, 'model.safetensors');
    await fromDisk.close();
    await fromMemory.close();
  });
});

describe('every fixture through a URL, a Blob and a local file gives the same tensors', () => {
  let server: RangeServer;
  before(async () => {
    server = await serveFolder(FIXTURES);
  });
  after(() => server.close());

  it('finds the fixture folders', () => {
    assert.ok(
      HF_FOLDERS.includes('tiny-alibi-sharded') && HF_FOLDERS.includes('tiny-alibi-bin-sharded-bf16'),
      HF_FOLDERS.join(', '),
    );
    assert.ok(GGUF_FILES.length >= 10, GGUF_FILES.join(', '));
  });

  for (const folder of HF_FOLDERS) {
    it(`${folder}: URL folder and dropped files = the folder on disk`, async () => {
      const disk = await openHfFolderTensors(join(FIXTURES, folder));
      const viaUrl = await openHfFolderFromSources(urlFolder(`${server.url}${folder}`));
      const viaFiles = await openHfFolderFromSources(fileListFolder(droppedFiles(join(FIXTURES, folder)), folder));
      try {
        assert.equal(viaUrl.layout, disk.layout);
        assert.equal(viaFiles.layout, disk.layout);
        assert.equal(viaUrl.dir, `${server.url}${folder}/`);
        assert.deepEqual(
          viaUrl.files,
          disk.files.map((f) => `${server.url}${folder}/${f.split('/').pop()}`),
        );
        await assertSameTensors(viaUrl, disk, `${folder} by URL`);
        await assertSameTensors(viaFiles, disk, `${folder} by Blob`);
      } finally {
        await Promise.all([disk.close(), viaUrl.close(), viaFiles.close()]);
      }
    });
  }

  for (const file of GGUF_FILES) {
    it(`${file}: URL and Blob = the file on disk`, async () => {
      const disk = await readGguf(join(GGUF_DIR, file));
      const viaUrl = await readGgufSource(await openUrlSource(`${server.url}gguf-tiny-q/${file}`));
      const viaBlob = await readGgufSource(blobSource(new File([readFileSync(join(GGUF_DIR, file))], file)));
      try {
        assert.equal(viaUrl.path, `${server.url}gguf-tiny-q/${file}`);
        assert.equal(viaBlob.path, file);
        await assertSameGguf(viaUrl, disk, `${file} by URL`);
        await assertSameGguf(viaBlob, disk, `${file} by Blob`);
      } finally {
        await Promise.all([disk.close(), viaUrl.close(), viaBlob.close()]);
      }
    });
  }

  it('openCheckpoint takes a URL of a folder or of a .gguf, a File, a FolderSource, besides a path', async () => {
    const inputs: [string, Parameters<typeof openCheckpoint>[0]][] = [
      ['folder URL', `${server.url}tiny-alibi-sharded/`],
      ['folder URL without the slash', new URL(`${server.url}tiny-alibi-sharded`)],
      ['dropped folder', fileListFolder(droppedFiles(join(FIXTURES, 'tiny-alibi-sharded')))],
    ];
    const local = await openCheckpoint(join(FIXTURES, 'tiny-alibi-sharded'));
    for (const [label, input] of inputs) {
      const ck = await openCheckpoint(input);
      assert.equal(ck.kind, 'hf', label);
      assert.deepEqual(ck.config, local.config, label);
      assert.ok(ck.folder !== undefined, label);
      await assertSameTensors(ck.tensors, local.tensors, label);
      await ck.tensors.close();
    }
    await local.tensors.close();

    const file = 'tiny-q-q4_k_m.gguf';
    const localGguf = await openCheckpoint(join(GGUF_DIR, file));
    for (const [label, input] of [
      ['GGUF URL', `${server.url}gguf-tiny-q/${file}`],
      ['GGUF File', new File([readFileSync(join(GGUF_DIR, file))], file)],
      ['GGUF bytes', bytesSource(readFileSync(join(GGUF_DIR, file)), file)],
    ] as const) {
      const ck = await openCheckpoint(input);
      assert.equal(ck.kind, 'gguf', label);
      assert.deepEqual(ck.config, localGguf.config, label);
      assert.deepEqual(ck.ggufTokenizer, localGguf.ggufTokenizer, label);
      await assertSameTensors(ck.tensors, localGguf.tensors, label);
      await ck.tensors.close();
    }
    await localGguf.tensors.close();
    // The GGUF's folder is where its side files are read from.
    const byUrl = await openCheckpoint(`${server.url}gguf-tiny-q/${file}`);
    assert.equal(byUrl.dir, `${server.url}gguf-tiny-q/`);
    const config = await byUrl.folder!.open('config.json');
    assert.deepEqual(
      await readJsonSource(config!, 'model config', JSON_FILE_LIMITS.config),
      JSON.parse(readFileSync(join(GGUF_DIR, 'config.json'), 'utf8')),
    );
    await byUrl.tensors.close();

    await assert.rejects(
      openCheckpoint(new File([new Uint8Array(8)], 'model.safetensors')),
      (e: unknown) => e instanceof InputError && /model\.safetensors is a file but not a \.gguf/.test(e.message),
    );
    await assert.rejects(
      openCheckpoint(`${server.url}configs/`),
      (e: unknown) => e instanceof InputError && /configs\/ has no config\.json/.test(e.message),
    );
  });

  it('a checkpoint opened by URL runs on a backend like the local one', async () => {
    const backend = await getBackend('reference');
    const logits = async (input: string) => {
      const ck = await openCheckpoint(input);
      const runner = await backend.load(ck.config, ck.tensors, {});
      await ck.tensors.close();
      const cache = runner.createCache({ capacity: 8 });
      const [out] = await runner.forward([{ cache, tokens: [1, 2, 3] }], { logits: 'last' });
      await runner.dispose();
      return out!.logits;
    };
    assert.deepEqual(await logits(`${server.url}tiny-alibi/`), await logits(join(FIXTURES, 'tiny-alibi')));
  });
});

describe('the HTTP source', () => {
  const SAFETENSORS = join(FIXTURES, 'tiny-alibi/model.safetensors');
  const fileBytes = readFileSync(SAFETENSORS);
  let server: RangeServer;
  before(async () => {
    server = await serveFolder(join(FIXTURES, 'tiny-alibi'), {
      statusFor: (p) => (p === '/gated.safetensors' ? 403 : p === '/broken' ? 500 : undefined),
    });
  });
  after(() => server.close());

  it('reading one tensor fetches its bytes and the header, not the file', async () => {
    server.requests.length = 0;
    // Requests as small as the reads (1 byte at least), so that what is served is what is read.
    const small = { minRequestBytes: 1, maxRequestBytes: 1 };
    const st = await openSafetensorsSource(await openUrlSource(`${server.url}model.safetensors`, small));
    const [info] = st.list().sort((a, b) => a.byteLength - b.byteLength);
    const bytes = await st.read(info!.name);
    await st.close();
    const headerLength = Number(fileBytes.readBigUInt64LE(0));
    const served = server.requests.reduce((n, r) => n + r.bytes, 0);
    assert.ok(
      server.requests.every((r) => r.status === 206),
      JSON.stringify(server.requests),
    );
    // The opening request's first byte (also the first of the header length), the rest of the header length, the header, the tensor.
    assert.equal(server.requests.length, 4, JSON.stringify(server.requests));
    assert.equal(served, 8 + headerLength + info!.byteLength);
    assert.ok(served < fileBytes.length / 4, `${served} of ${fileBytes.length} bytes served`);
    const start = 8 + headerLength;
    assert.ok(fileBytes.subarray(start).indexOf(Buffer.from(bytes)) >= 0);
  });

  it('serves any range exactly; past the end is a FormatError naming the URL', async () => {
    const s = await openUrlSource(`${server.url}model.safetensors`);
    assert.equal(s.size, fileBytes.length);
    for (const [offset, length] of [
      [0, 1],
      [7, 100_000],
      [fileBytes.length - 5, 5],
      [1234, 0],
    ] as const) {
      assert.deepEqual(await s.read(offset, length), new Uint8Array(fileBytes.subarray(offset, offset + length)));
    }
    const dest = new Uint8Array(300);
    await s.readInto!(5000, dest);
    assert.deepEqual(dest, new Uint8Array(fileBytes.subarray(5000, 5300)));
    await assert.rejects(
      s.read(fileBytes.length - 1, 2, 'tensor y'),
      (e: unknown) =>
        e instanceof FormatError && e.message.startsWith(`${server.url}model.safetensors is truncated: tensor y`),
    );
    await s.close();
    await assert.rejects(s.read(0, 1), /already closed/);
  });

  it('an empty file has size 0 (the server answers 416 to the probe)', async () => {
    // No fixture is empty: a fake fetch answers the probe as servers do for an empty file.
    const fake: typeof fetch = async () =>
      new Response(null, { status: 416, headers: { 'Content-Range': 'bytes */0' } });
    const s = await openUrlSource('http://example.invalid/empty.safetensors', { fetch: fake });
    assert.equal(s.size, 0);
    await assert.rejects(openSafetensorsSource(s), /empty\.safetensors is not a safetensors file: 0 bytes/);
  });

  it('the size comes from HEAD when Content-Range is hidden (a cross-origin answer)', async () => {
    const hidden = await serveFolder(join(FIXTURES, 'tiny-alibi'), { hideContentRange: true });
    try {
      const s = await openUrlSource(`${hidden.url}model.safetensors`);
      assert.equal(s.size, fileBytes.length);
      assert.ok(hidden.requests.some((r) => r.method === 'HEAD'));
      assert.deepEqual(await s.read(100, 50), new Uint8Array(fileBytes.subarray(100, 150)));
    } finally {
      await hidden.close();
    }
  });

  it('a server that ignores Range: small files are kept whole, a large one is a RangeNotSupportedError naming the URL', async () => {
    for (const chunked of [false, true]) {
      const plain = await serveFolder(join(FIXTURES, 'tiny-alibi'), { ranges: false, chunked });
      try {
        const url = `${plain.url}model.safetensors`;
        await assert.rejects(openUrlSource(url, { wholeFileLimit: 100_000 }), (e: unknown) => {
          assert.ok(e instanceof RangeNotSupportedError, String(e));
          assert.match(e.message, new RegExp(`^${url.replace(/[.]/g, '\\.')}: the server ignores HTTP Range requests`));
          return true;
        });
        const config = await openUrlSource(`${plain.url}config.json`, { wholeFileLimit: 100_000 });
        assert.deepEqual(
          await readJsonSource(config, 'model config', JSON_FILE_LIMITS.config),
          JSON.parse(readFileSync(join(FIXTURES, 'tiny-alibi/config.json'), 'utf8')),
        );
        // Within the limit, even weights work (read from memory).
        const whole = await openSafetensorsSource(await openUrlSource(url));
        await whole.read(whole.list()[0]!.name);
        await whole.close();
      } finally {
        await plain.close();
      }
    }
  });

  it('HTTP errors and network failures are FetchErrors naming the URL; a folder treats 404 as absent', async () => {
    const check = async (url: string, status: number | undefined, pattern: RegExp) => {
      await assert.rejects(openUrlSource(url), (e: unknown) => {
        assert.ok(e instanceof FetchError, String(e));
        assert.equal(e.status, status);
        assert.ok(e.message.includes(url), e.message);
        assert.match(e.message, pattern);
        return true;
      });
    };
    await check(`${server.url}absent.safetensors`, 404, /HTTP 404.*no such file/);
    await check(`${server.url}gated.safetensors`, 403, /HTTP 403.*access token/);
    await check(`${server.url}broken`, 500, /HTTP 500/);
    const closed = await serveFolder(FIXTURES);
    const deadUrl = `${closed.url}tiny-alibi/config.json`;
    await closed.close();
    await check(deadUrl, undefined, /cannot fetch/);
    await assert.rejects(openUrlSource('file:///etc/passwd'), InputError);

    const folder = urlFolder(server.url);
    assert.equal(await folder.open('absent.json'), undefined);
    await assert.rejects(folder.open('gated.safetensors'), (e: unknown) => e instanceof FetchError && e.status === 403);
    await assert.rejects(folder.open('../x'), InputError);
    await assert.rejects(
      openHfFolderFromSources(urlFolder(`${server.url}nothing/`)),
      /no weights in .*nothing\/: expected model\.safetensors/,
    );
  });

  it('keeps at most maxInFlight requests in flight, and uses that many', async () => {
    const pending: (() => void)[] = [];
    let calls = 0;
    // Like a browser's fetch, it refuses to be called as a method of another object.
    const fake = async function (this: unknown, _url: RequestInfo | URL, init?: RequestInit): Promise<Response> {
      if (this !== undefined && this !== globalThis) throw new TypeError('Illegal invocation');
      calls++;
      return heldRangeAnswer(init, pending, (start) => start & 0xff);
    };
    // Reads far apart (no request's range reaches the next read), each its own request.
    const s = await openUrlSource('http://example.invalid/f', { fetch: fake, maxInFlight: 3, minRequestBytes: 10 });
    calls = 0;
    const reads = Array.from({ length: 8 }, (_, i) => s.read(1000 + i * 10_000, 10));
    const settle = () => new Promise((resolve) => setImmediate(resolve));
    await settle();
    assert.equal(calls, 3);
    pending.shift()!();
    await settle();
    await settle();
    assert.equal(calls, 4);
    while (pending.length > 0) {
      pending.shift()!();
      await settle();
      await settle();
    }
    const got = await Promise.all(reads);
    assert.equal(calls, 8);
    for (const [i, bytes] of got.entries())
      assert.deepEqual(bytes, new Uint8Array(10).fill((1000 + i * 10_000) & 0xff));
    await s.close();
  });

  it('closing while a read waits for a request slot fails its reads with the reason, with no unhandled rejection', async () => {
    const pending: (() => void)[] = [];
    const fake = (_url: RequestInfo | URL, init?: RequestInit): Promise<Response> =>
      heldRangeAnswer(init, pending, () => 0);
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const s = await openUrlSource('http://example.invalid/f', { fetch: fake, maxInFlight: 1, minRequestBytes: 10 });
      // The first read takes the only slot; the second joins its request for bytes 1005..1009,
      // then waits for a slot for the rest.
      const first = s.read(1000, 10);
      await new Promise((resolve) => setImmediate(resolve));
      const second = s.read(1005, 20);
      await new Promise((resolve) => setImmediate(resolve));
      await s.close();
      await assert.rejects(first, /closed/);
      await assert.rejects(second, /closed/);
      for (const wake of pending) wake();
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('a wrong answer to a range request is refused', async () => {
    const answers: Record<string, () => Response> = {
      'short body': () => new Response(new Uint8Array(5), { status: 206 }),
      'other range': () =>
        new Response(new Uint8Array(10), { status: 206, headers: { 'Content-Range': 'bytes 0-9/1000' } }),
      'file changed': () =>
        new Response(new Uint8Array(10), { status: 206, headers: { 'Content-Range': 'bytes 10-19/999' } }),
      'whole file': () => new Response(new Uint8Array(1000), { status: 200 }),
    };
    const expected: Record<string, [new (...args: never[]) => Error, RegExp]> = {
      'short body': [FetchError, /the answer for bytes 10-19 ended after 5 bytes/],
      'other range': [FetchError, /asked for bytes 10-19 \(.*\), the server sent 0-9/],
      'file changed': [FormatError, /changed while open: it had 1000 bytes, now 999/],
      'whole file': [RangeNotSupportedError, /ignores HTTP Range requests/],
    };
    for (const [label, make] of Object.entries(answers)) {
      const fake: typeof fetch = async (_url, init) => {
        const range = (init!.headers as Record<string, string>)['Range'];
        if (range === 'bytes=0-9')
          return new Response(new Uint8Array(10), { status: 206, headers: { 'Content-Range': 'bytes 0-9/1000' } });
        assert.equal(range, 'bytes=10-19');
        return make();
      };
      const s = await openUrlSource('http://example.invalid/f', {
        fetch: fake,
        minRequestBytes: 10,
        maxRequestBytes: 10,
      });
      const [cls, pattern] = expected[label]!;
      await assert.rejects(
        s.read(10, 10),
        (e: unknown) =>
          e instanceof cls &&
          pattern.test((e as Error).message) &&
          (e as Error).message.includes('http://example.invalid/f'),
        label,
      );
    }
  });
  it('reads in file order share few requests: at most 1 + log2(max/min) + size/max, each read exactly', async () => {
    // A fake server of a 40 MB file whose byte i is i mod 251, counting requests and bytes sent.
    const size = 40_000_000;
    const asked: [number, number][] = [];
    const pattern = Uint8Array.from({ length: 65536 + 251 }, (_, i) => i % 251);
    const fake: typeof fetch = async (_url, init) => {
      const m = /^bytes=(\d+)-(\d+)$/.exec(String((init!.headers as Record<string, string>)['Range']));
      const a = Number(m![1]);
      const b = Math.min(Number(m![2]), size - 1);
      asked.push([a, b + 1]);
      let at = a;
      const body = new ReadableStream<Uint8Array>({
        pull(c) {
          if (at > b) return c.close();
          const n = Math.min(65536, b + 1 - at);
          c.enqueue(pattern.slice(at % 251, (at % 251) + n));
          at += n;
        },
      });
      return new Response(body, { status: 206, headers: { 'Content-Range': `bytes ${a}-${b}/${size}` } });
    };
    const min = 1 << 20;
    const max = 8 << 20;
    const s = await openUrlSource('http://example.invalid/f', {
      fetch: fake,
      minRequestBytes: min,
      maxRequestBytes: max,
    });
    // A loader's pattern: pieces of 3 MB in file order, 4 in flight, with 4 KB left between them for later.
    const piece = 3_000_000;
    const gap = 4096;
    const starts: number[] = [];
    for (let at = 0; at + piece <= size; at += piece + gap) starts.push(at);
    let next = 0;
    const lane = async () => {
      while (next < starts.length) {
        const at = starts[next++]!;
        const got = await s.read(at, piece);
        assert.ok(
          got.every((v, i) => v === (at + i) % 251),
          `piece at ${at}`,
        );
      }
    };
    await Promise.all([lane(), lane(), lane(), lane()]);
    const requestsForPieces = asked.length;
    // The gaps, read afterwards, were kept from the answers that passed them: no request more.
    for (const at of starts) {
      const got = await s.read(at + piece, gap);
      assert.ok(
        got.every((v, i) => v === (at + piece + i) % 251),
        `gap at ${at + piece}`,
      );
    }
    assert.equal(asked.length, requestsForPieces);
    await s.close();
    const bound = 1 + Math.log2(max / min) + Math.ceil(size / max);
    assert.ok(asked.length <= bound, `${asked.length} requests (at most ${bound}): ${JSON.stringify(asked)}`);
    // Every request but the first continues another; none overlaps another; nothing asked twice.
    const sorted = [...asked].sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i]![0] >= sorted[i - 1]![1], JSON.stringify(sorted));
    assert.ok(
      asked.every(([a, b]) => b - a <= max),
      JSON.stringify(asked),
    );
  });
});

describe('a read after close', () => {
  it('a local file says it as every source does (closedError, one message in one place)', async () => {
    const path = join(FIXTURES, 'tiny-alibi/config.json');
    const f = await RandomAccessFile.open(path);
    await f.close();
    const want = closedError(path, 'the header').message;
    await assert.rejects(f.read(0, 1, 'the header'), (e: unknown) => e instanceof MptError && e.message === want);
    await assert.rejects(
      f.readInto(0, new Uint8Array(1), 'the header'),
      (e: unknown) => e instanceof MptError && e.message === want,
    );
    // No reader writes the message again.
    const writers = readdirSync(join(REPO_ROOT, 'src/formats')).filter((file) =>
      readFileSync(join(REPO_ROOT, 'src/formats', file), 'utf8').includes('already closed ('),
    );
    assert.deepEqual(writers, ['byte-source.ts']);
  });
});

describe('the readers run without Node', () => {
  /** Modules (dist/src/…) whose static import graph must be free of Node built-ins. */
  const BROWSER_MODULES = [
    'formats/byte-source.js',
    'formats/url-source.js',
    'formats/folder-source.js',
    'formats/json-source.js',
    'formats/safetensors.js',
    'formats/gguf.js',
    'formats/hf-folder.js',
    'formats/torch-bin.js',
    'model/load.js',
    'model/gguf-model.js',
  ];
  const DIST = join(REPO_ROOT, 'dist/src');

  /** Every module reachable by static imports from `entry`, with the specifiers that are not relative. */
  function staticGraph(entry: string): Map<string, string[]> {
    const seen = new Map<string, string[]>();
    const visit = (file: string) => {
      if (seen.has(file)) return;
      const text = readFileSync(join(DIST, file), 'utf8');
      const bare: string[] = [];
      seen.set(file, bare);
      // Static forms only: `import … from '…'`, `export … from '…'`, `import '…'`; import('…') is lazy.
      for (const m of text.matchAll(
        /^\s*(?:import|export)\s[^;]*?from\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]/gm,
      )) {
        const spec = (m[1] ?? m[2])!;
        if (spec.startsWith('.')) visit(join(file, '..', spec));
        else bare.push(spec);
      }
    };
    visit(entry);
    return seen;
  }

  for (const entry of BROWSER_MODULES) {
    it(`${entry} imports no node: module and uses no Buffer or process, statically`, () => {
      const graph = staticGraph(entry);
      assert.ok(graph.size >= 2, `${entry}: the graph has ${graph.size} modules`);
      const isNode = (s: string) => s.startsWith('node:') || builtinModules.includes(s);
      const nodeImports = [...graph].flatMap(([file, specs]) => specs.filter(isNode).map((s) => `${file} → ${s}`));
      assert.deepEqual(nodeImports, []);
      const code = (file: string) =>
        readFileSync(join(DIST, file), 'utf8').replace(/\/\*[\s\S]*?\*\/|^\s*\/\/.*$/gm, '');
      const globals = [...graph.keys()].filter((file) => /\b(Buffer|process)\.\w/.test(code(file)));
      assert.deepEqual(globals, []);
    });
  }

  it('the graph walker sees static imports and skips dynamic ones', () => {
    const graph = staticGraph('formats/safetensors.js');
    assert.ok(graph.has('formats/byte-source.js') && graph.has('errors.js'), [...graph.keys()].join(', '));
    assert.ok(!graph.has('formats/file-reader.js'), 'file-reader.js is only imported dynamically');
    assert.deepEqual(staticGraph('formats/file-reader.js').get('formats/file-reader.js')!.sort(), [
      'node:fs',
      'node:path',
    ]);
  });
});
