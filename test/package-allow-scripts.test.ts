/**
 * npm (11.16 on) lists every dependency whose install script package.json's `allowScripts` does
 * not cover, and a later npm will not run those scripts. Every package the lockfile marks
 * `hasInstallScript` is therefore approved or denied there, by name (the lockfile keeps no
 * resolved URLs, so npm cannot pin a version). A denied script must not be needed: node-llama-cpp's
 * postinstall would build llama.cpp where no prebuilt binary fits, so everything that starts it
 * asks for the prebuilt binary only (`build: 'never'`).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from './helpers/goldens.js';

const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
  allowScripts?: Record<string, boolean>;
};
const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { hasInstallScript?: boolean }>;
};

test('every dependency with an install script is approved or denied in allowScripts', () => {
  const withScripts = Object.entries(lock.packages)
    .filter(([path, p]) => path !== '' && p.hasInstallScript === true)
    .map(([path]) => path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length));
  assert.ok(withScripts.length > 0, 'the lockfile marks install scripts');
  const policy = pkg.allowScripts ?? {};
  for (const name of withScripts) assert.equal(typeof policy[name], 'boolean', `allowScripts["${name}"]`);
  // No entry for a package that is gone or has no script left.
  for (const name of Object.keys(policy)) assert.ok(withScripts.includes(name), `${name} has an install script`);
});

test('what starts node-llama-cpp (its install script denied) uses its prebuilt binary only', () => {
  assert.equal(pkg.allowScripts?.['node-llama-cpp'], false);
  const calls: string[] = [];
  for (const dir of ['test', 'test/helpers', 'bench', 'scripts']) {
    for (const f of readdirSync(join(REPO_ROOT, dir))) {
      if (!/\.(ts|mjs|js)$/.test(f)) continue;
      const text = readFileSync(join(REPO_ROOT, dir, f), 'utf8');
      for (const m of text.matchAll(/\bgetLlama\(([^)]*)\)/g)) calls.push(`${dir}/${f}: ${m[0]}`);
    }
  }
  assert.ok(calls.length > 0, 'node-llama-cpp is started somewhere');
  for (const call of calls) assert.match(call, /build: 'never'/, call);
});
