// Runs every compiled test file with Node's built-in test runner.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'dist/test');
const only = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.test.js'))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort()
  .map((f) => join(dir, f));
// With no files, node --test would run every test it can find: the whole suite.
if (files.length === 0) {
  console.error(`run-tests: no compiled test file in dist/test matches ${only.join(', ')} (build first?)`);
  process.exit(1);
}
// A software Vulkan driver for the WebGPU tests, where scripts/setup-lavapipe.sh installed one
// (.ci/run does): its env.sh is a list of `export NAME="value"` lines.
const env = { ...process.env };
const lavapipe = join(root, '.lavapipe/env.sh');
if (existsSync(lavapipe) && !env.VK_ICD_FILENAMES) {
  for (const m of readFileSync(lavapipe, 'utf8').matchAll(/^export (\w+)="?([^"\n]*)"?$/gm)) {
    env[m[1]] = m[2].replace(/\$\{(\w+):\+:\$\w+\}/g, (_, v) => (env[v] ? `:${env[v]}` : ''));
  }
}
// Dawn's event polling, which takes a core while the GPU (lavapipe: the CPU) works: scripts/dawn-polling.mjs.
const polling = pathToFileURL(join(root, 'scripts/dawn-polling.mjs')).href;
const r = spawnSync(process.execPath, ['--import', polling, '--test', '--test-concurrency=2', ...files], {
  cwd: root,
  stdio: 'inherit',
  env,
});
process.exit(r.status ?? 1);
