// Run at `npm install` / `npm ci` in this repository (prepare): links node_modules/.bin/mpt to
// bin/mpt.js, so `npx mpt …` in the project folder runs the built CLI at once. Without the link,
// npx installs the project folder itself as a package first, which builds it a second time
// (25-60 s) before every first command.
import { existsSync, lstatSync, mkdirSync, symlinkSync, unlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const binDir = join(root, 'node_modules/.bin');
// A consumer's install never runs this (prepare runs only in the package's own folder); guard anyway.
if (existsSync(join(root, 'node_modules'))) {
  mkdirSync(binDir, { recursive: true });
  const link = join(binDir, 'mpt');
  try {
    if (lstatSync(link)) unlinkSync(link);
  } catch {
    // no previous link
  }
  try {
    symlinkSync(relative(binDir, join(root, 'bin/mpt.js')), link);
  } catch (e) {
    // Not fatal (a file system without symlinks): `node bin/mpt.js …` works the same.
    console.warn(`note: could not link node_modules/.bin/mpt (${e.message}); run the CLI as node bin/mpt.js`);
  }
}
