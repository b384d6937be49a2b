// Build step run at `npm install` (prepare) and before tests: compiles TypeScript to dist/
// and, when present, the AssemblyScript kernels to dist/wasm/. Everything is local: no downloads.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
function run(cmd, args) {
  const r = spawnSync(process.execPath, [cmd, ...args], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
run(join(root, 'node_modules/typescript/bin/tsc'), ['-p', 'tsconfig.json']);
const extra = join(root, 'scripts/build-wasm.mjs');
if (existsSync(extra)) run(extra, []);
