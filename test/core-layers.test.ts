// The source tree is layered: formats → model → backends → runtime → train → cli/server/web, each
// layer importing only from itself and the layers before it. errors.ts and platform/ sit below
// every layer (anything may import them; they import only each other); index.ts, the public API,
// may import everything. This walks every import of src/ (static, `export … from`, dynamic
// `import('…')`, type-only ones too) and lists the ones that point upward, and the cycles: two
// files that import each other, directly or through others, are one job split in the wrong place.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, it } from 'node:test';
import { REPO_ROOT } from './helpers/goldens.js';

const SRC = join(REPO_ROOT, 'src');

/** Rank of each top-level folder of src/: a file may import files of its rank or lower. */
const LAYERS: Readonly<Record<string, number>> = {
  formats: 1,
  model: 2,
  backends: 3,
  runtime: 4,
  train: 5,
  cli: 6,
  server: 6,
  web: 6,
};
/** errors.ts and platform/ sit below everything; index.ts and browser.ts (the entries) re-export the API. */
const BASE = 0;
const TOP = 99;

/**
 * Upward imports that exist on purpose or are owned elsewhere, as `importer -> imported` (paths
 * relative to src/). Each one is a debt: remove its line when the import goes away.
 */
const KNOWN_EXCEPTIONS: ReadonlySet<string> = new Set([]);

function rank(file: string): number {
  const parts = relative(SRC, file).split(sep);
  if (parts[0] === 'index.ts' || parts[0] === 'browser.ts') return TOP;
  if (parts[0] === 'errors.ts' || parts[0] === 'platform') return BASE;
  const r = parts.length > 1 ? LAYERS[parts[0]!] : undefined;
  if (r === undefined) throw new Error(`src/${parts[0]} is in no layer: add it to LAYERS in this test`);
  return r;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    // AssemblyScript kernels compile on their own and import only each other.
    if (e.isDirectory() && e.name !== 'assembly') out.push(...sourceFiles(p));
    else if (e.isFile() && (e.name.endsWith('.ts') || e.name.endsWith('.js')) && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Every relative module specifier the file imports. */
function relativeImports(text: string): string[] {
  const specs: string[] = [];
  const patterns = [
    /\bfrom\s*['"](\.[^'"]+)['"]/g, // import … from '…', export … from '…'
    /\bimport\s*['"](\.[^'"]+)['"]/g, // import '…' (side effects)
    /\bimport\s*\(\s*['"](\.[^'"]+)['"]/g, // import('…')
    /\bconst\s+\w+\s*=\s*['"](\.\.?\/[^'"]+\.js)['"]/g, // a specifier kept in a constant for a computed import
    /\bnew\s+URL\(\s*['"](\.[^'"]+\.js)['"]\s*,\s*import\.meta\.url/g, // a worker's script
  ];
  for (const re of patterns) for (const m of text.matchAll(re)) specs.push(m[1]!);
  return specs;
}

/** The source file a specifier names (`./x.js` is compiled from `./x.ts`). */
function target(importer: string, spec: string): string {
  return resolve(dirname(importer), spec.replace(/\.js$/, '.ts'));
}

function upwardImports(): string[] {
  const found: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const from = rank(file);
    for (const spec of relativeImports(readFileSync(file, 'utf8'))) {
      const to = target(file, spec);
      if (!to.startsWith(SRC + sep)) continue;
      if (rank(to) > from) found.push(`${relative(SRC, file)} -> ${relative(SRC, to)}`.split(sep).join('/'));
    }
  }
  return [...new Set(found)].sort();
}

/** src/ as a graph: every file and the files of src/ it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const to = relativeImports(readFileSync(file, 'utf8'))
      .map((spec) => target(file, spec))
      .filter((t) => t.startsWith(SRC + sep));
    graph.set(file, [...new Set(to)]);
  }
  return graph;
}

/** Every strongly connected group of more than one file (or a file importing itself), as src/ paths. */
function importCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  // Tarjan's algorithm, iterative (the tree is deep enough to matter for recursion).
  const index = new Map<string, number>(),
    low = new Map<string, number>(),
    onStack = new Set<string>(),
    stack: string[] = [],
    cycles: string[][] = [];
  let next = 0;
  for (const root of graph.keys()) {
    if (index.has(root)) continue;
    const work: Array<[string, number]> = [[root, 0]];
    index.set(root, next);
    low.set(root, next++);
    stack.push(root);
    onStack.add(root);
    while (work.length > 0) {
      const top = work[work.length - 1]!;
      const [v, i] = top;
      const edges = graph.get(v) ?? [];
      if (i < edges.length) {
        top[1]++;
        const w = edges[i]!;
        if (!index.has(w)) {
          index.set(w, next);
          low.set(w, next++);
          stack.push(w);
          onStack.add(w);
          work.push([w, 0]);
        } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1]![0];
        low.set(parent, Math.min(low.get(parent)!, low.get(v)!));
      }
      if (low.get(v) === index.get(v)) {
        const group: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          group.push(w);
        } while (w !== v);
        if (group.length > 1 || (graph.get(v) ?? []).includes(v))
          cycles.push(group.map((f) => relative(SRC, f).split(sep).join('/')).sort());
      }
    }
  }
  return cycles;
}

describe('source layers', () => {
  it('no file imports a layer above its own (formats → model → backends → runtime → train → cli/server/web)', () => {
    const violations = upwardImports().filter((v) => !KNOWN_EXCEPTIONS.has(v));
    assert.deepEqual(violations, []);
  });

  it('no import cycles: no file reaches itself through its imports', () => {
    assert.deepEqual(importCycles(importGraph()), []);
  });

  it('the sampler every backend uses takes only the kernel loader from the wasm backend', () => {
    const rel = (f: string) => relative(SRC, f).split(sep).join('/');
    const found: string[] = [];
    for (const [file, targets] of importGraph()) {
      if (!rel(file).startsWith('backends/sampling/')) continue;
      for (const t of targets)
        if (rel(t).startsWith('backends/wasm/') && rel(t) !== 'backends/wasm/module-loader.ts')
          found.push(`${rel(file)} -> ${rel(t)}`);
    }
    assert.deepEqual(found, []);
  });

  it('the cycle finder sees direct, long and self cycles, and nothing in a tree', () => {
    const g = (edges: Record<string, string[]>) =>
      new Map(Object.entries(edges).map(([k, v]) => [join(SRC, k), v.map((t) => join(SRC, t))]));
    assert.deepEqual(importCycles(g({ 'a.ts': ['b.ts'], 'b.ts': ['a.ts'], 'c.ts': ['a.ts'] })), [['a.ts', 'b.ts']]);
    assert.deepEqual(importCycles(g({ 'a.ts': ['b.ts'], 'b.ts': ['c.ts'], 'c.ts': ['a.ts'] })), [
      ['a.ts', 'b.ts', 'c.ts'],
    ]);
    assert.deepEqual(importCycles(g({ 'a.ts': ['a.ts'] })), [['a.ts']]);
    assert.deepEqual(importCycles(g({ 'a.ts': ['b.ts', 'c.ts'], 'b.ts': ['c.ts'], 'c.ts': [] })), []);
  });

  it('every known exception still exists (stale ones are removed)', () => {
    const present = new Set(upwardImports());
    assert.deepEqual(
      [...KNOWN_EXCEPTIONS].filter((v) => !present.has(v)),
      [],
    );
  });

  it('the checker sees static, type-only, re-exported and dynamic imports', () => {
    const text = [
      "import { a } from './a.js';",
      "import type { B } from '../b/b.js';",
      "export { c } from './c.js';",
      "import './d.js';",
      "const m = await import('../e/e.js');",
      "const spec = '../f/f.js';",
      "new Worker(new URL('../g/worker.js', import.meta.url));",
      "import { readFileSync } from 'node:fs';",
    ].join('\n');
    assert.deepEqual(relativeImports(text).sort(), [
      '../b/b.js',
      '../e/e.js',
      '../f/f.js',
      '../g/worker.js',
      './a.js',
      './c.js',
      './d.js',
    ]);
  });
});
