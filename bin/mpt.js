#!/usr/bin/env node
// Entry point of the `mpt` command. The TypeScript sources are compiled to dist/ at install time.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'src', 'cli', 'main.js');
if (!existsSync(main)) {
  process.stderr.write(
    'mpt: the project is not built yet; run `npm install` (or `npm run build`) in the mpt-ts folder\n',
  );
  process.exit(1);
}
const { main: run, installProcessHandlers } = await import(pathToFileURL(main).href);
installProcessHandlers();
process.exitCode = await run(process.argv.slice(2));
