// The recipes shipped in recipes/ run as their comments say (from the repository root) without
// writing over the shipped model: every folder a run writes lies outside models/default.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { readRecipe } from '../src/train/recipe.js';
import { REPO_ROOT } from './helpers/goldens.js';

test('no recipe saves or exports into models/default', () => {
  const dir = join(REPO_ROOT, 'recipes');
  const shipped = resolve(REPO_ROOT, 'models/default');
  const recipes = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
  assert.ok(recipes.length > 0);
  for (const f of recipes) {
    const rc = readRecipe(join(dir, f));
    for (const [what, folder] of [
      ['save_folder', rc.saveFolder],
      ['export_folder', rc.exportFolder],
    ] as const) {
      if (!folder) continue;
      const inside = relative(shipped, resolve(REPO_ROOT, folder));
      assert.ok(inside.startsWith('..'), `${f}: ${what} ${folder} writes into models/default`);
    }
  }
});
