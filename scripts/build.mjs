// Build step run at `npm install` (prepare) and before tests: compiles TypeScript to dist/
// and, when present, the AssemblyScript kernels to dist/wasm/. Everything is local: no downloads.
//
// A build whose inputs have not changed since the last one is skipped: `npx mpt …` in this folder
// makes npm install the folder as a package, which runs `prepare` again, and a full build there
// (25-60 s) would delay the README's first command. `--force` builds regardless.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stampPath = join(root, 'dist/.build-stamp.json');

function run(cmd, args) {
  const r = spawnSync(process.execPath, [cmd, ...args], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

/** Every file the build reads: sources, tests, benchmarks, the build's own configuration. */
function inputs() {
  const out = [];
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) out.push(p);
    }
  };
  for (const d of ['src', 'test', 'bench']) if (existsSync(join(root, d))) walk(join(root, d));
  for (const f of [
    'tsconfig.json',
    'package.json',
    'package-lock.json',
    'scripts/build.mjs',
    'scripts/build-wasm.mjs',
  ]) {
    if (existsSync(join(root, f))) out.push(join(root, f));
  }
  return out.sort();
}

/** The files and their modification times, as the stamp records them. */
function fingerprint() {
  return inputs().map((p) => `${relative(root, p)} ${statSync(p).mtimeMs}`);
}

const outputs = [
  'dist/src/index.js',
  'dist/wasm/kernels.wasm',
  'dist/wasm/kernels-base.wasm',
  'dist/wasm/kernels-dot.wasm',
  'dist/wasm/dot-probe.wasm',
];
const current = fingerprint();
const upToDate =
  !process.argv.includes('--force') &&
  outputs.every((f) => existsSync(join(root, f))) &&
  existsSync(stampPath) &&
  JSON.stringify(JSON.parse(readFileSync(stampPath, 'utf8'))) === JSON.stringify(current);
if (upToDate) {
  console.log('build: dist/ is up to date with the sources (node scripts/build.mjs --force rebuilds)');
} else {
  // A first build takes a minute or more on a small machine: say what it is doing meanwhile.
  console.log('build: compiling TypeScript to dist/ …');
  run(join(root, 'node_modules/typescript/bin/tsc'), ['-p', 'tsconfig.json']);
  const extra = join(root, 'scripts/build-wasm.mjs');
  if (existsSync(extra)) {
    console.log('build: compiling the wasm kernels to dist/wasm/ …');
    run(extra, []);
  }
  console.log('build: done');
  writeFileSync(stampPath, JSON.stringify(current));
}
