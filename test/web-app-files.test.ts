/**
 * `mpt web` as a file server, checked with plain HTTP from Node (no browser): the isolation headers
 * and MIME types, byte ranges (206, suffix, open-ended, 416, If-Range), HEAD, ETag / Last-Modified
 * revalidation, a model folder and a GGUF file under /model/, an http(s) URL passed to the page,
 * refusals (traversal in every spelling, a symlink out of a root, odd names, other methods), the
 * import map pointing at files it serves, the sampling defaults written into the page, and Ctrl-C ending it with status 0.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_SAMPLING } from '../src/backends/sampling/sampler.js';
import { DEFAULT_MAX_TOKENS } from '../src/runtime/generation-sequence.js';
import { parseRange, safeSegments } from '../src/server/static-files.js';
import { REPO_ROOT } from './helpers/goldens.js';
import { startWebApp, type WebApp } from './helpers/web-app-server.js';

const SHIPPED_WEIGHTS = join(REPO_ROOT, 'models/default/model.safetensors');
const GGUF = join(REPO_ROOT, 'test/fixtures/gguf-tiny-q/tiny-q-q8_0.gguf');

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One request with the path exactly as written (fetch would normalise `..` away). */
function raw(base: string, path: string, options: { method?: string; headers?: Record<string, string> } = {}) {
  const u = new URL(base);
  return new Promise<Answer>((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, path, method: options.method ?? 'GET', headers: options.headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The config the page is given (the JSON in <script id="mpt-web">). */
async function pageConfig(app: WebApp): Promise<{ model: string; name: string }> {
  const html = (await raw(app.url, '/')).body.toString('utf8');
  const m = /<script type="application\/json" id="mpt-web">(.*?)<\/script>/.exec(html);
  assert.ok(m, 'the page carries its configuration');
  return JSON.parse(m[1]!);
}

describe('mpt web serves files', { timeout: 60_000 }, () => {
  let app: WebApp;
  before(async () => {
    app = await startWebApp();
  });
  after(async () => {
    await app?.stop();
  });

  it('isolation headers and MIME types on every answer', async () => {
    const want: Record<string, string> = {
      '/': 'text/html',
      '/bench.html': 'text/html',
      '/app.js': 'text/javascript',
      '/style.css': 'text/css',
      '/dist/src/browser.js': 'text/javascript',
      '/dist/wasm/kernels-base.wasm': 'application/wasm',
      '/models/default/config.json': 'application/json',
      '/models/default/model.safetensors': 'application/octet-stream',
      '/app-files.json': 'application/json',
    };
    for (const [path, type] of Object.entries(want)) {
      const r = await raw(app.url, path, { method: 'HEAD' });
      assert.equal(r.status, 200, path);
      assert.equal((r.headers['content-type'] as string).split(';')[0], type, path);
      assert.equal(r.headers['cross-origin-opener-policy'], 'same-origin', path);
      assert.equal(r.headers['cross-origin-embedder-policy'], 'require-corp', path);
      assert.equal(r.headers['cross-origin-resource-policy'], 'same-origin', path);
      assert.equal(r.body.length, 0, `${path}: HEAD has no body`);
    }
    const missing = await raw(app.url, '/nothing-here.js');
    assert.equal(missing.status, 404);
    assert.equal(missing.headers['cross-origin-embedder-policy'], 'require-corp', 'errors are isolated too');
  });

  it("the page starts from the CLI's sampling defaults (the ones mpt generate uses)", async () => {
    const html = (await raw(app.url, '/')).body.toString('utf8');
    const m = /<script type="application\/json" id="mpt-defaults">(.*?)<\/script>/.exec(html);
    assert.ok(m, 'the page carries the defaults');
    assert.deepEqual(JSON.parse(m[1]!), {
      temperature: DEFAULT_SAMPLING.temperature,
      topP: DEFAULT_SAMPLING.topP,
      maxTokens: DEFAULT_MAX_TOKENS,
    });
    // ...and no second copy of them in the page's own HTML.
    assert.doesNotMatch(html, /id="(temperature|top-p|max-tokens)"[^>]*\svalue=/);
  });

  it('the import map names modules it serves as JavaScript, found by package resolution', async () => {
    const html = (await raw(app.url, '/')).body.toString('utf8');
    const map = JSON.parse(/<script type="importmap">(.*?)<\/script>/.exec(html)![1]!) as {
      imports: Record<string, string>;
    };
    assert.deepEqual(Object.keys(map.imports).sort(), ['@huggingface/jinja', '@huggingface/tokenizers']);
    for (const [name, url] of Object.entries(map.imports)) {
      const r = await raw(app.url, url);
      assert.equal(r.status, 200, `${name} at ${url}`);
      assert.match(r.headers['content-type'] as string, /^text\/javascript/);
      const resolved = new URL(import.meta.resolve(name));
      assert.deepEqual(r.body, readFileSync(resolved), `${name}: the file Node resolves`);
    }
    // The offline list names only files that are there.
    const files = JSON.parse((await raw(app.url, '/app-files.json')).body.toString('utf8')) as string[];
    assert.ok(files.includes('/dist/src/browser.js') && files.includes('/dist/wasm/kernels-base.wasm'));
    for (const f of files.filter((_, i) => i % 25 === 0)) assert.equal((await raw(app.url, f)).status, 200, f);
  });

  it('byte ranges: 206 with the bytes, suffix and open-ended ranges, 416, If-Range', async () => {
    const file = readFileSync(SHIPPED_WEIGHTS);
    const path = '/models/default/model.safetensors';
    const r = await raw(app.url, path, { headers: { Range: 'bytes=1000-1999' } });
    assert.equal(r.status, 206);
    assert.equal(r.headers['content-range'], `bytes 1000-1999/${file.length}`);
    assert.equal(r.headers['content-length'], '1000');
    assert.deepEqual(r.body, file.subarray(1000, 2000));
    const suffix = await raw(app.url, path, { headers: { Range: 'bytes=-10' } });
    assert.equal(suffix.status, 206);
    assert.deepEqual(suffix.body, file.subarray(file.length - 10));
    const open = await raw(app.url, path, { headers: { Range: `bytes=${file.length - 5}-` } });
    assert.deepEqual(open.body, file.subarray(file.length - 5));
    const past = await raw(app.url, path, { headers: { Range: `bytes=${file.length}-${file.length + 9}` } });
    assert.equal(past.status, 416);
    assert.equal(past.headers['content-range'], `bytes */${file.length}`);
    const clipped = await raw(app.url, path, { headers: { Range: `bytes=${file.length - 3}-${file.length + 100}` } });
    assert.equal(clipped.status, 206);
    assert.deepEqual(clipped.body, file.subarray(file.length - 3));
    const head = await raw(app.url, path, { method: 'HEAD', headers: { Range: 'bytes=0-99' } });
    assert.equal(head.status, 206);
    assert.equal(head.headers['content-length'], '100');
    assert.equal(head.body.length, 0);
    // If-Range with another validator: the file has changed, so the whole of it comes back.
    const stale = await raw(app.url, '/models/default/config.json', {
      headers: { Range: 'bytes=0-9', 'If-Range': '"other"' },
    });
    assert.equal(stale.status, 200);
    assert.deepEqual(stale.body, readFileSync(join(REPO_ROOT, 'models/default/config.json')));
  });

  it('ETag and Last-Modified: a revalidation of an unchanged file is 304', async () => {
    const path = '/models/default/config.json';
    const first = await raw(app.url, path);
    const etag = first.headers.etag as string;
    assert.ok(etag);
    assert.equal(first.headers['last-modified'], statSync(join(REPO_ROOT, path)).mtime.toUTCString());
    assert.equal((await raw(app.url, path, { headers: { 'If-None-Match': etag } })).status, 304);
    assert.equal((await raw(app.url, path, { headers: { 'If-None-Match': '"x"' } })).status, 200);
    const since = first.headers['last-modified'] as string;
    assert.equal((await raw(app.url, path, { headers: { 'If-Modified-Since': since } })).status, 304);
    const page = await raw(app.url, '/');
    assert.equal((await raw(app.url, '/', { headers: { 'If-None-Match': page.headers.etag as string } })).status, 304);
  });

  it('refuses what is not a file of its roots, and never crashes', async () => {
    const refused = [
      '/../package.json',
      '/dist/src/../../package.json',
      '/dist/src/%2e%2e/%2e%2e/package.json',
      '/dist/src/..%2f..%2fpackage.json',
      '/dist/src/..%5c..%5cpackage.json',
      '/models/default/%2e%2e/%2e%2e/package.json',
      '/package.json',
      '/src/cli/main.ts',
      '/node_modules/yaml/package.json',
      '/.git/HEAD',
      '/dist/src/.build-stamp.json',
      '/%00',
      '/app.js%00.html',
      '/%ZZ',
      '//etc/passwd',
      '/dist/src/',
      '/models/default',
      `/${'a'.repeat(5000)}`,
    ];
    for (const path of refused) {
      const r = await raw(app.url, path);
      assert.ok(r.status === 404 || r.status === 403 || r.status === 400, `${path}: ${r.status}`);
      assert.ok(!r.body.toString('utf8').includes('"name": "mpt-ts"'), path);
    }
    assert.equal((await raw(app.url, '/', { method: 'POST' })).status, 405);
    assert.equal((await raw(app.url, '/', { method: 'PUT' })).headers.allow, 'GET, HEAD');
    assert.equal((await raw(app.url, '/')).status, 200, 'still serving after all that');
    assert.deepEqual(safeSegments('/a/b/'), ['a', 'b', '']);
    assert.equal(safeSegments('/a/../b'), null);
    assert.deepEqual(parseRange('bytes=0-0,5-9', 10), 'none');
    assert.deepEqual(parseRange('bytes=-0', 10), 'unsatisfiable');
    assert.deepEqual(parseRange('bytes=3-1', 10), 'none');
    assert.deepEqual(parseRange('items=0-1', 10), 'none');
  });
});

describe('mpt web MODEL', { timeout: 60_000 }, () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mpt-web-model-'));
    writeFileSync(join(dir, 'outside.txt'), 'a secret next to the model folder');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a folder is served under /model/; a symlink out of it is refused', async () => {
    const folder = mkdtempSync(join(dir, 'folder-'));
    writeFileSync(join(folder, 'config.json'), readFileSync(join(REPO_ROOT, 'models/default/config.json')));
    symlinkSync(join(dir, 'outside.txt'), join(folder, 'escape.json'));
    symlinkSync(dir, join(folder, 'up'));
    const app = await startWebApp([folder]);
    try {
      assert.deepEqual(await pageConfig(app), { model: '/model/', name: folder.slice(folder.lastIndexOf('/') + 1) });
      const config = await raw(app.url, '/model/config.json');
      assert.equal(config.status, 200);
      assert.deepEqual(config.body, readFileSync(join(folder, 'config.json')));
      assert.equal((await raw(app.url, '/model/escape.json')).status, 403);
      assert.equal((await raw(app.url, '/model/up/outside.txt')).status, 403);
      assert.equal((await raw(app.url, '/model/')).status, 404, 'no listing');
    } finally {
      await app.stop();
    }
  });

  it('a .gguf file is served at /model/NAME with ranges; an odd name is escaped in the page', async () => {
    const odd = join(dir, 'tiny q#1 <b>.gguf');
    writeFileSync(odd, readFileSync(GGUF));
    const app = await startWebApp([odd]);
    try {
      const config = await pageConfig(app);
      assert.equal(config.name, 'tiny q#1 <b>.gguf');
      assert.equal(config.model, `/model/${encodeURIComponent('tiny q#1 <b>.gguf')}`);
      const r = await raw(app.url, config.model, { headers: { Range: 'bytes=0-3' } });
      assert.equal(r.status, 206);
      assert.equal(r.body.toString('latin1'), 'GGUF');
      assert.equal((await raw(app.url, '/model/other.gguf')).status, 404);
    } finally {
      await app.stop();
    }
  });

  it('an http(s) URL goes to the page as is; a path that is no model is a one-line error', async () => {
    const url = 'https://huggingface.co/someone/mpt/resolve/main/';
    const app = await startWebApp([url]);
    try {
      assert.deepEqual(await pageConfig(app), { model: url, name: 'main' });
    } finally {
      const { code, signal } = await app.stop();
      assert.equal(code, 0, 'Ctrl-C stops it with status 0');
      assert.equal(signal, null);
      assert.match(app.stderr(), /stopped/);
    }
    await assert.rejects(startWebApp([join(dir, 'outside.txt')]), /neither a model folder nor a \.gguf file/);
    await assert.rejects(startWebApp([join(dir, 'nope')]), /no such file or folder/);
  });
});
