// The package as a user installs it: `npm pack`, the tarball installed into an empty folder, then
// `npx mpt generate` and the README's library example run from there. Checks that the tarball holds
// what the code needs at run time and nothing of the repository's tests, and that the build tools
// are not runtime dependencies. The install reads npm's cache (filled by `npm ci`) before the registry.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, statSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './helpers/goldens.js';
import { runCli } from './helpers/cli.js';
import { startWebApp } from './helpers/web-app-server.js';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** The first ```ts block after the README's "## Library" heading, importing the installed package. */
function readmeLibraryExample(): string {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Library'));
  const m = /```ts\n([\s\S]*?)```/.exec(section);
  assert.ok(m, 'README has a ```ts block under "## Library"');
  return m[1]!;
}

test('npm pack → install into an empty folder → mpt generate and the README library example', {
  timeout: 300_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-pack-'));
  try {
    // dist/ is built by `npm test` before the tests; --ignore-scripts keeps pack from building again.
    const packed = execFileSync(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });
    const [info] = JSON.parse(packed) as { filename: string; files: { path: string }[] }[];
    const paths = info!.files.map((f) => f.path);
    for (const need of [
      'bin/mpt.js',
      'dist/src/index.js',
      'dist/wasm/kernels.wasm',
      'dist/wasm/kernels-base.wasm',
      'dist/wasm/kernels-dot.wasm',
      'dist/wasm/dot-probe.wasm',
      'models/default/model.safetensors',
      'assets/gpt-neox-20b/tokenizer.json',
      'src/web/app.js',
    ]) {
      assert.ok(paths.includes(need), `the tarball holds ${need}`);
    }
    const stray = paths.filter((p) => /^(test|dist\/test|dist\/bench|bench|\.ci)\//.test(p) || p.includes('fixtures/'));
    assert.deepEqual(stray, [], 'no tests, fixtures or benchmarks in the tarball');

    const app = join(dir, 'app');
    execFileSync('mkdir', ['-p', app]);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    const inst = spawnSync(
      npm,
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--omit=optional', join(dir, info!.filename)],
      { cwd: app, encoding: 'utf8' },
    );
    assert.equal(inst.status, 0, `npm install of the tarball failed:\n${inst.stderr}`);
    const installed = readdirSync(join(app, 'node_modules'));
    for (const buildTool of ['typescript', 'assemblyscript'])
      assert.ok(!installed.includes(buildTool), `${buildTool} is not installed for users`);
    assert.ok(!existsSync(join(app, 'node_modules/@types/node')), '@types/node is not installed for users');

    // The installed command gives the same text as the repository's for the same seed.
    const args = ['generate', 'Once upon a time', '-n', '12', '--seed', '7'];
    const there = spawnSync(join(app, 'node_modules/.bin/mpt'), args, { cwd: app, encoding: 'utf8' });
    assert.equal(there.status, 0, there.stderr);
    const here = await runCli(args);
    assert.equal(here.code, 0, here.stderr);
    assert.ok(there.stdout.trim().length > 'Once upon a time'.length);
    assert.equal(there.stdout, here.stdout);

    writeFileSync(join(app, 'example.mjs'), readmeLibraryExample());
    const ex = spawnSync(process.execPath, ['example.mjs'], { cwd: app, encoding: 'utf8' });
    assert.equal(ex.status, 0, ex.stderr);
    assert.match(ex.stdout, /^next token: /);
    assert.ok(ex.stdout.split('\n').length >= 3, 'the example prints its generated text and the streamed reply');

    // The installed `mpt web` finds the page, the browser entry and its dependencies where npm put them.
    const web = await startWebApp([], { bin: join(app, 'node_modules/mpt-ts/bin/mpt.js'), cwd: app });
    try {
      const page = await (await fetch(web.url)).text();
      const map = JSON.parse(/<script type="importmap">(.*?)<\/script>/.exec(page)![1]!) as {
        imports: Record<string, string>;
      };
      const urls = [...Object.values(map.imports), '/dist/src/browser.js', '/app.js', '/models/default/config.json'];
      for (const u of urls) assert.equal((await fetch(new URL(u, web.url))).status, 200, u);
    } finally {
      assert.equal((await web.stop()).code, 0);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// `npx mpt` in the project folder makes npm install the folder as a package, which runs `prepare`
// (the build) again: with the sources unchanged since `npm ci`, that build must be skipped, or the
// README's first command waits 25-60 s for a second full build before it prints anything.
test('a build with unchanged sources is skipped (so npx mpt starts at once after npm ci)', () => {
  const out = join(REPO_ROOT, 'dist/src/index.js');
  const before = statSync(out).mtimeMs;
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts/build.mjs')], { cwd: REPO_ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /up to date/);
  assert.equal(statSync(out).mtimeMs, before, 'dist/ was not rebuilt');
});
