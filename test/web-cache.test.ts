/**
 * The browser's offline model cache, in Chromium (driven by playwright-core): a GGUF file loaded
 * by URL is kept in the Origin Private File System and loaded again from there — offline without a
 * single request to the server, online after one HEAD request — with Node's logits each time; a
 * file that changed on the server is downloaded again; `cache: false` reads over the network;
 * listCachedModels/deleteCachedModel/clearModelCache see and remove copies; a download cut short
 * leaves no copy (the load goes on over the network); a quota too small for
 * the file still loads it from the network, with one warning; where OPFS is missing, Cache Storage
 * keeps the copy. A model folder by URL (one file, and sharded) is kept likewise: its files and the
 * ones it lacks, one entry per folder, read back offline without a request and online after one
 * HEAD of each file, a changed file (a config.json, the weights) fetched again and nothing else, with Node's logits of the folder on
 * disk each time. A tokenizer by URL is kept as a copy of its own, also when its file lies in a
 * cached model's folder: deleting the copy made last leaves the other complete, offline without a
 * request, in OPFS and in Cache Storage, and both loads report the tokenizer's download through
 * onDownload. Requests are counted by the test's own server. Skipped when chromium is not
 * installed (never in CI).
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { loadModel } from '../src/runtime/model.js';
import { loadTokenizer } from '../src/runtime/tokenizer-files.js';
import { REPO_ROOT, maxAbsDiff } from './helpers/goldens.js';
import { CHROMIUM_LAUNCH, chromiumMissing } from './helpers/chromium.js';
import { serveFolder, type RangeServer, type ServedRequest } from './helpers/range-server.js';
import { skipUnlessPresent } from './helpers/requirement.js';
import { ISOLATION, openTab, testPage, type Tab } from './helpers/web-tab.js';

const skip = skipUnlessPresent(chromiumMissing());

const FIXTURE = join(REPO_ROOT, 'test/fixtures/gguf-tiny-q');
/** Served from a folder of its own under dist/, so the test can change the file. */
const DIR = `dist/test-tmp/web-cache-${process.pid}`;
const MODEL = `/${DIR}/model.gguf`;
const IDS = [1, 5, 9, 2, 7, 3];
const NOT_KEPT = /is not kept for offline use/;

interface Cached {
  url: string;
  bytes: number;
  savedAt: number;
}

function place(gguf: string): void {
  copyFileSync(join(FIXTURE, gguf), join(REPO_ROOT, DIR, 'model.gguf'));
}

/** Copies the model files (config.json, safetensors, index) of fixture `from` into the served folder `to`. */
function placeFolder(from: string, to: string, only?: string): void {
  mkdirSync(join(REPO_ROOT, DIR, to), { recursive: true });
  for (const f of readdirSync(join(REPO_ROOT, 'test/fixtures', from))) {
    if (!/^(config\.json|model.*\.safetensors(\.index\.json)?)$/.test(f) || (only !== undefined && f !== only))
      continue;
    copyFileSync(join(REPO_ROOT, 'test/fixtures', from, f), join(REPO_ROOT, DIR, to, f));
  }
}

async function nodeLogits(gguf: string): Promise<Float32Array> {
  return pathLogits(join(FIXTURE, gguf));
}

async function pathLogits(path: string): Promise<Float32Array> {
  const model = await loadModel(path, { threads: 2, onNote: () => {} });
  try {
    return await model.logits(IDS);
  } finally {
    await model.dispose();
  }
}

describe('the offline model cache in Chromium', { skip, timeout: 300_000 }, () => {
  let browser: Browser;
  let server: RangeServer;
  let url: string;
  const want: Record<string, Float32Array> = {};
  /** When set, the server cuts whole-file downloads of the model after this many bytes. */
  let cutAfter: number | undefined;
  /** The requests for the model file since `from` (an index into server.requests). */
  const modelRequests = (from: number): ServedRequest[] => server.requests.slice(from).filter((r) => r.path === MODEL);
  const shape = (rs: ServedRequest[]) => rs.map((r) => `${r.method} ${r.range === undefined ? 'whole' : 'range'}`);

  before(async () => {
    mkdirSync(join(REPO_ROOT, DIR), { recursive: true });
    place('tiny-q-q8_0.gguf');
    for (const g of ['tiny-q-q8_0.gguf', 'tiny-q-q4_0.gguf', 'tiny-q-f32.gguf']) want[g] = await nodeLogits(g);
    server = await serveFolder(REPO_ROOT, {
      headers: ISOLATION,
      // The engine's modules and worker scripts stay fresh in the HTTP cache, so that an offline
      // load can start its workers (the model's files are what the test is about).
      headersFor: (path) => (path.startsWith('/dist/src/') ? { 'Cache-Control': 'max-age=3600' } : undefined),
      pages: { '/': testPage('web-cache-page.js') },
      cutWholeAfter: (path) => (path === MODEL ? cutAfter : undefined),
    });
    url = server.url.replace(/\/$/, '') + MODEL;
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ ...CHROMIUM_LAUNCH });
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    rmSync(join(REPO_ROOT, DIR), { recursive: true, force: true });
  });

  async function logits(tab: Tab, wantOf: string, cache = true): Promise<void> {
    const got = Float32Array.from(await tab.call<number[]>('logits', url, IDS, cache));
    assert.equal(maxAbsDiff(got, want[wantOf]!), 0, `${wantOf}: Node's logits`);
  }

  it('a model folder by URL: kept with the files it lacks, read back offline with no request, online after one HEAD of its weights; a changed one is fetched again', async () => {
    placeFolder('tiny-alibi', 'folder');
    placeFolder('tiny-alibi-sharded', 'sharded');
    const base = server.url.replace(/\/$/, '');
    const folderPath = `/${DIR}/folder/`;
    const folderUrl = base + folderPath;
    const sizeOf = (f: string) => statSync(join(REPO_ROOT, DIR, 'folder', f)).size;
    const folderRequests = (from: number, path = folderPath) =>
      server.requests.slice(from).filter((r) => r.path.startsWith(path));
    const asked = (rs: ServedRequest[]) =>
      rs.map(
        (r) => `${r.method} ${r.range === undefined ? 'whole' : 'range'} ${r.path.slice(r.path.lastIndexOf('/') + 1)}`,
      );
    const check = async (tab: Tab, at: string, cache = true) => {
      const got = Float32Array.from(await tab.call<number[]>('logits', base + at, IDS, cache));
      assert.equal(
        maxAbsDiff(got, await pathLogits(join(REPO_ROOT, at))),
        0,
        `${at}: Node's logits of the folder on disk`,
      );
    };
    const tab = await openTab(browser, server.url);
    try {
      let mark = server.requests.length;
      await check(tab, folderPath);
      const first = folderRequests(mark);
      assert.ok(
        first.every((r) => r.method === 'GET' && r.range === undefined),
        `the first load downloads whole files: ${asked(first)}`,
      );
      const found = first.filter((r) => r.status === 200).map((r) => r.path.slice(folderPath.length));
      assert.deepEqual(found.sort(), ['config.json', 'model.safetensors'], 'each file once');
      const lacking = first.filter((r) => r.status === 404).map((r) => r.path.slice(folderPath.length));
      assert.ok(lacking.includes('tokenizer.json'), `the files it lacks were asked for: ${lacking}`);
      const [entry, ...more] = await tab.call<(Cached & { files: string[]; absent: string[] })[]>('listCachedModels');
      assert.deepEqual(more, [], 'one entry for the folder');
      assert.equal(entry?.url, folderUrl);
      assert.equal(entry?.bytes, sizeOf('config.json') + sizeOf('model.safetensors'));
      assert.deepEqual([...entry!.files].sort(), ['config.json', 'model.safetensors']);
      assert.deepEqual([...entry!.absent].sort(), [...lacking].sort());

      await tab.context.setOffline(true);
      mark = server.requests.length;
      await check(tab, folderPath);
      await tab.context.setOffline(false);
      assert.deepEqual(asked(folderRequests(mark)), [], 'offline: the server is not contacted');

      mark = server.requests.length;
      await check(tab, folderPath);
      const heads = ['config.json', 'model.safetensors', ...lacking].map((f) => `HEAD whole ${f}`).sort();
      assert.deepEqual(
        asked(folderRequests(mark)).sort(),
        heads,
        'online: one HEAD of each file, absent ones included',
      );

      // A changed small file alone (config.json, same model, other bytes) is fetched again, nothing else.
      const configPath = join(REPO_ROOT, DIR, 'folder', 'config.json');
      writeFileSync(configPath, `${JSON.stringify(JSON.parse(readFileSync(configPath, 'utf8')), null, 1)}\n`);
      mark = server.requests.length;
      await check(tab, folderPath);
      let again = asked(folderRequests(mark));
      assert.deepEqual(
        again.filter((r) => !r.startsWith('HEAD')),
        ['GET whole config.json'],
        String(again),
      );
      assert.deepEqual(
        (await tab.call<Cached[]>('listCachedModels')).map((c) => [c.url, c.bytes]),
        [[folderUrl, sizeOf('config.json') + sizeOf('model.safetensors')]],
        'the record holds the new config.json',
      );
      mark = server.requests.length;
      await check(tab, folderPath);
      assert.deepEqual(asked(folderRequests(mark)).sort(), heads, 'then the copy is current again');

      placeFolder('tiny-alibi-fp16', 'folder', 'model.safetensors');
      mark = server.requests.length;
      await check(tab, folderPath);
      again = asked(folderRequests(mark));
      assert.deepEqual(
        again.filter((r) => !r.startsWith('HEAD')),
        ['GET whole model.safetensors'],
        String(again),
      );
      const changed = await tab.call<Cached[]>('listCachedModels');
      assert.deepEqual(
        changed.map((c) => [c.url, c.bytes]),
        [[folderUrl, sizeOf('config.json') + sizeOf('model.safetensors')]],
      );

      mark = server.requests.length;
      await check(tab, folderPath, false);
      const uncached = folderRequests(mark).filter((r) => r.path.endsWith('.safetensors'));
      assert.ok(
        uncached.length > 0 && uncached.every((r) => r.method === 'GET' && r.range !== undefined),
        `cache: false reads the weights with range requests: ${asked(uncached)}`,
      );

      const shardedPath = `/${DIR}/sharded/`;
      await check(tab, shardedPath);
      assert.equal((await tab.call<Cached[]>('listCachedModels')).length, 2);
      await tab.context.setOffline(true);
      mark = server.requests.length;
      await check(tab, shardedPath);
      await tab.context.setOffline(false);
      assert.deepEqual(asked(folderRequests(mark, shardedPath)), [], 'a sharded folder offline: no request');

      assert.equal(await tab.call('deleteCachedModel', folderUrl), true);
      assert.equal(await tab.call('deleteCachedModel', folderUrl), false);
      assert.deepEqual(
        (await tab.call<Cached[]>('listCachedModels')).map((c) => c.url),
        [base + shardedPath],
      );
      assert.equal(await tab.call('clearModelCache'), 1);
      assert.deepEqual(await tab.call('listCachedModels'), []);
      assert.deepEqual(
        tab.said.filter((s) => NOT_KEPT.test(s) || /error/i.test(s)),
        [],
      );
    } finally {
      await tab.close();
    }
  });

  it('kept in OPFS; read back offline with no request, online after one HEAD; a changed file is fetched again', async () => {
    const tab = await openTab(browser, server.url);
    try {
      assert.equal(await tab.call('hasOpfs'), true);
      let mark = server.requests.length;
      await logits(tab, 'tiny-q-q8_0.gguf');
      assert.deepEqual(shape(modelRequests(mark)), ['GET whole'], 'the first load downloads the file once');
      const size = statSync(join(REPO_ROOT, DIR, 'model.gguf')).size;
      const [entry, ...more] = await tab.call<Cached[]>('listCachedModels');
      assert.deepEqual(more, []);
      assert.equal(entry?.url, url);
      assert.equal(entry?.bytes, size);
      assert.ok(Math.abs(entry!.savedAt - Date.now()) < 120_000, `savedAt ${entry?.savedAt}`);

      await tab.context.setOffline(true);
      mark = server.requests.length;
      await logits(tab, 'tiny-q-q8_0.gguf');
      await tab.context.setOffline(false);
      assert.deepEqual(shape(modelRequests(mark)), [], 'offline: the server is not contacted');

      mark = server.requests.length;
      await logits(tab, 'tiny-q-q8_0.gguf');
      assert.deepEqual(shape(modelRequests(mark)), ['HEAD whole'], 'online: one HEAD, no body');

      place('tiny-q-q4_0.gguf');
      mark = server.requests.length;
      await logits(tab, 'tiny-q-q4_0.gguf');
      assert.deepEqual(shape(modelRequests(mark)), ['HEAD whole', 'GET whole'], 'a changed file is downloaded again');
      const changed = await tab.call<Cached[]>('listCachedModels');
      assert.deepEqual(
        changed.map((c) => [c.url, c.bytes]),
        [[url, statSync(join(REPO_ROOT, DIR, 'model.gguf')).size]],
      );

      mark = server.requests.length;
      await logits(tab, 'tiny-q-q4_0.gguf', false);
      const uncached = modelRequests(mark);
      assert.ok(uncached.length >= 1, 'cache: false reads the file over the network');
      assert.ok(
        uncached.every((r) => r.method === 'GET' && r.range !== undefined),
        `cache: false makes only range requests: ${shape(uncached)}`,
      );

      assert.equal(await tab.call('deleteCachedModel', url), true);
      assert.equal(await tab.call('deleteCachedModel', url), false);
      assert.deepEqual(await tab.call('listCachedModels'), []);
      await logits(tab, 'tiny-q-q4_0.gguf');
      assert.equal(await tab.call('clearModelCache'), 1);
      assert.deepEqual(await tab.call('listCachedModels'), []);
      assert.deepEqual(
        tab.said.filter((s) => NOT_KEPT.test(s) || /error/i.test(s)),
        [],
      );
    } finally {
      place('tiny-q-q8_0.gguf');
      await tab.close();
    }
  });

  it('without the cache, a file by URL loads in few large range requests: the first of 1 MiB, the next ones doubling', async () => {
    place('tiny-q-f32.gguf');
    const tab = await openTab(browser, server.url);
    try {
      const size = statSync(join(REPO_ROOT, DIR, 'model.gguf')).size;
      const mark = server.requests.length;
      await logits(tab, 'tiny-q-f32.gguf', false);
      const rs = modelRequests(mark);
      const ranges = rs.map((r) => {
        const m = /^bytes=(\d+)-(\d+)$/.exec(r.range ?? '');
        assert.ok(r.method === 'GET' && m !== null && r.status === 206, `only range requests: ${shape(rs)}`);
        return [Number(m[1]), Number(m[2]) + 1] as const;
      });
      // The header's reader takes the first MiB whole; the tensors' reads start again within it
      // (their bytes went to the header's buffer), then continue in file order with requests
      // doubling from 1 MiB: two runs of 1 + log2(S / 1 MiB) requests, and room for one more
      // run where a busy machine lets a stream fall idle long enough to be cancelled (IDLE_MS).
      const MiB = 1 << 20;
      assert.deepEqual(ranges[0], [0, MiB], 'the first request: the first MiB');
      const bound = 3 * (1 + Math.ceil(Math.log2(size / MiB)));
      assert.ok(
        rs.length <= bound,
        `${rs.length} requests for ${size} bytes (at most ${bound}): ${JSON.stringify(ranges)}`,
      );
      assert.ok(
        ranges.some(([a, b]) => b - a >= 4 * MiB),
        `requests that continue others grow: ${JSON.stringify(ranges)}`,
      );
    } finally {
      place('tiny-q-q8_0.gguf');
      await tab.close();
    }
  });

  it('a tokenizer by URL is kept too: offline it loads without a request and encodes as Node does', async () => {
    placeFolder('tiny-neox-vocab', 'neox');
    mkdirSync(join(REPO_ROOT, DIR, 'tok'), { recursive: true });
    const tokFile = join(REPO_ROOT, DIR, 'tok', 'tokenizer.json');
    copyFileSync(join(REPO_ROOT, 'models/default/tokenizer.json'), tokFile);
    const base = server.url.replace(/\/$/, '');
    const modelUrl = `${base}/${DIR}/neox/`;
    const tokUrl = `${base}/${DIR}/tok/tokenizer.json`;
    const text = 'Offline, the tokenizer still says: héllo wörld 123!';
    const want = loadTokenizer(tokFile)!.encode(text);
    const tokRequests = (from: number) => server.requests.slice(from).filter((r) => r.path.startsWith(`/${DIR}/tok/`));
    const tab = await openTab(browser, server.url);
    try {
      let mark = server.requests.length;
      assert.deepEqual(await tab.call<number[]>('encode', modelUrl, tokUrl, text), want, 'online, first load');
      assert.ok(
        tokRequests(mark).some((r) => r.method === 'GET' && r.path.endsWith('/tokenizer.json') && r.status === 200),
        'downloaded once',
      );
      const listed = await tab.call<(Cached & { files?: string[] })[]>('listCachedModels');
      const entry = listed.find((c) => c.url === `${tokUrl}#tokenizer`);
      assert.ok(entry?.files?.includes('tokenizer.json'), JSON.stringify(listed));

      await tab.context.setOffline(true);
      mark = server.requests.length;
      assert.deepEqual(await tab.call<number[]>('encode', modelUrl, tokUrl, text), want, 'offline');
      await tab.context.setOffline(false);
      assert.deepEqual(tokRequests(mark), [], 'offline: the tokenizer is not asked for');

      assert.equal(await tab.call('deleteCachedModel', `${tokUrl}#tokenizer`), true);
      assert.equal(
        (await tab.call<Cached[]>('listCachedModels')).some((c) => c.url.endsWith('#tokenizer')),
        false,
      );
      await tab.call('clearModelCache');
    } finally {
      await tab.close();
    }
  });

  for (const store of ['OPFS', 'Cache Storage'] as const) {
    it(`a tokenizer by URL in a model's folder has a copy of its own (${store}): deleting either copy leaves the other complete; its download is reported`, async () => {
      placeFolder('tiny-neox-vocab', 'neox');
      placeFolder('tiny-neox-vocab', 'own');
      const tokFile = join(REPO_ROOT, DIR, 'own', 'tokenizer.json');
      copyFileSync(join(REPO_ROOT, 'models/default/tokenizer.json'), tokFile);
      const tokBytes = statSync(tokFile).size;
      const base = server.url.replace(/\/$/, '');
      // The model `own` has tokenizer.json beside it; `neox` is given that file by URL.
      const ownUrl = `${base}/${DIR}/own/`;
      const neoxUrl = `${base}/${DIR}/neox/`;
      const tokUrl = `${ownUrl}tokenizer.json`;
      const text = 'Two copies, one file: héllo wörld 42!';
      const want = loadTokenizer(tokFile)!.encode(text);
      const ownRequests = (from: number) =>
        server.requests.slice(from).filter((r) => r.path.startsWith(`/${DIR}/own/`));
      type Encoded = { ids: number[]; downloaded: number[] };
      const hideOpfs =
        store === 'OPFS'
          ? undefined
          : () => {
              delete (StorageManager.prototype as { getDirectory?: unknown }).getDirectory;
            };
      // Each order of the first loads, then the copy made last is deleted: the other one, whose
      // tokenizer.json was written over by the later download where the copies shared entries,
      // must still be complete and load offline without a request.
      for (const order of ['model first', 'tokenizer first'] as const) {
        const tab = await openTab(browser, server.url, hideOpfs);
        try {
          assert.equal(await tab.call('hasOpfs'), store === 'OPFS');
          const loads = {
            model: () => tab.call<Encoded>('encodeReporting', ownUrl, null, text),
            tokenizer: () => tab.call<Encoded>('encodeReporting', neoxUrl, tokUrl, text),
          };
          const [kept, deleted] =
            order === 'model first' ? (['model', 'tokenizer'] as const) : (['tokenizer', 'model'] as const);
          for (const which of [kept, deleted]) {
            const got = await loads[which]();
            assert.deepEqual(got.ids, want, `${order}: the ${which}'s load encodes as Node does`);
            assert.ok(
              got.downloaded.includes(tokBytes),
              `${order}: the ${which}'s load reports tokenizer.json's download (${tokBytes} bytes): ${got.downloaded}`,
            );
          }
          const copies = { model: ownUrl, tokenizer: `${tokUrl}#tokenizer` };
          const listed = async () => (await tab.call<Cached[]>('listCachedModels')).map((c) => c.url).sort();
          assert.deepEqual(await listed(), [neoxUrl, ...Object.values(copies)].sort());
          assert.equal(await tab.call('deleteCachedModel', copies[deleted]), true);
          assert.deepEqual(await listed(), [neoxUrl, copies[kept]].sort());

          await tab.context.setOffline(true);
          const mark = server.requests.length;
          const offline = await loads[kept]();
          await tab.context.setOffline(false);
          assert.deepEqual(offline.ids, want, `${order}, the ${deleted}'s copy deleted: the ${kept} loads offline`);
          assert.deepEqual(offline.downloaded, [], 'nothing downloaded');
          assert.deepEqual(
            ownRequests(mark).map((r) => `${r.method} ${r.path}`),
            [],
            `${order}: the ${kept}'s copy is complete, offline nothing is asked for`,
          );
          assert.deepEqual(
            tab.said.filter((s) => NOT_KEPT.test(s) || /error/i.test(s)),
            [],
          );
        } finally {
          await tab.close();
        }
      }
    });
  }

  it('a download cut short is not kept: the load reads over the network, and the next one caches the file', async () => {
    const tab = await openTab(browser, server.url);
    try {
      cutAfter = 5000;
      let mark = server.requests.length;
      await logits(tab, 'tiny-q-q8_0.gguf');
      cutAfter = undefined;
      const first = modelRequests(mark);
      assert.equal(shape(first)[0], 'GET whole');
      assert.ok(
        first.slice(1).every((r) => r.range !== undefined),
        `then range requests: ${shape(first)}`,
      );
      assert.deepEqual(await tab.call('listCachedModels'), [], 'the partial copy is not listed');
      const told = tab.said.filter((s) => NOT_KEPT.test(s));
      assert.equal(told.length, 1, told.join('\n'));
      mark = server.requests.length;
      await logits(tab, 'tiny-q-q8_0.gguf');
      assert.deepEqual(shape(modelRequests(mark)), ['GET whole']);
      assert.equal((await tab.call<Cached[]>('listCachedModels')).length, 1);
    } finally {
      cutAfter = undefined;
      await tab.close();
    }
  });

  it('a quota too small for the file: it loads from the network, and the console says so once', async () => {
    const tab = await openTab(browser, server.url);
    try {
      const cdp = await tab.context.newCDPSession(tab.page);
      await cdp.send('Storage.overrideQuotaForOrigin', { origin: new URL(server.url).origin, quotaSize: 4096 });
      await logits(tab, 'tiny-q-q8_0.gguf');
      await logits(tab, 'tiny-q-q8_0.gguf');
      assert.deepEqual(await tab.call('listCachedModels'), []);
      const told = tab.said.filter((s) => NOT_KEPT.test(s));
      assert.equal(told.length, 1, told.join('\n'));
    } finally {
      await tab.close();
    }
  });

  it('without OPFS, Cache Storage keeps the copy, read back offline', async () => {
    const tab = await openTab(browser, server.url, () => {
      delete (StorageManager.prototype as { getDirectory?: unknown }).getDirectory;
    });
    try {
      assert.equal(await tab.call('hasOpfs'), false);
      await logits(tab, 'tiny-q-q8_0.gguf');
      const list = await tab.call<Cached[]>('listCachedModels');
      assert.deepEqual(
        list.map((c) => c.url),
        [url],
      );
      await tab.context.setOffline(true);
      const mark = server.requests.length;
      await logits(tab, 'tiny-q-q8_0.gguf');
      await tab.context.setOffline(false);
      assert.deepEqual(shape(modelRequests(mark)), []);
    } finally {
      await tab.close();
    }
  });
});
