// What a browser loads of the engine: the compiled module graphs of the backends, followed as a
// browser (or a bundler with the "browser" condition) follows them — static imports, dynamic
// imports of string literals, worker scripts (`new URL('./x.js', import.meta.url)`) and
// `#platform` through package.json "imports" — must not touch Node: no node:* module, no
// `process`, `Buffer`, `setImmediate`, `require`, `__dirname` or `__filename`. And no bare
// specifier but `#platform` in src/platform/index.js, which a browser never evaluates: a page
// needs no import map, and Web Workers (which import maps do not reach) resolve everything.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';
import { REPO_ROOT } from './helpers/goldens.js';
import { BROWSER_IMPORT_MAP } from './helpers/web-import-map.js';

const NODE_GLOBALS = new Set(['process', 'Buffer', 'setImmediate', 'require', '__dirname', '__filename']);
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8'));

/** A package.json "imports" entry as a browser bundler resolves it. */
function resolvePackageImport(spec: string): string | null {
  const entry = pkg.imports?.[spec];
  if (entry === undefined) return null;
  const target = typeof entry === 'string' ? entry : (entry.browser ?? entry.import ?? entry.default);
  return join(REPO_ROOT, target);
}

/** Whether an identifier is a reference to a variable (not `x.name`, `{ name: … }`, a method name…). */
function isReference(id: ts.Identifier): boolean {
  const p = id.parent;
  if (ts.isPropertyAccessExpression(p) && p.name === id) return false;
  if (
    (ts.isPropertyAssignment(p) ||
      ts.isMethodDeclaration(p) ||
      ts.isPropertyDeclaration(p) ||
      ts.isGetAccessor(p) ||
      ts.isSetAccessor(p) ||
      ts.isPropertySignature(p)) &&
    p.name === id
  )
    return false;
  return true;
}

/** The string a `const name = '...'` of the file holds (`import(spec)` of an optional module), if any. */
function constString(sf: ts.SourceFile, name: string): string | undefined {
  let found: string | undefined;
  const look = (node: ts.Node): void => {
    if (
      ts.isVariableDeclaration(node) &&
      ts.isIdentifier(node.name) &&
      node.name.text === name &&
      (node.parent.flags & ts.NodeFlags.Const) !== 0 &&
      node.initializer &&
      ts.isStringLiteralLike(node.initializer)
    ) {
      found = node.initializer.text;
    }
    ts.forEachChild(node, look);
  };
  look(sf);
  return found;
}

function resolveRelative(from: string, spec: string): string {
  return spec.startsWith('./') || spec.startsWith('../') ? resolve(dirname(from), spec) : spec;
}

interface Graph {
  files: string[];
  problems: string[];
  bare: string[];
  lazy: string[];
}

/**
 * Walks the graph from `entries`. A dynamic import of one of `lazyNodeOnly` (absolute paths) is
 * listed in `lazy` and not followed: Node-only code loaded only for what a page cannot be given.
 */
function walk(entries: string[], lazyNodeOnly = new Set<string>()): Graph {
  const seen = new Set<string>();
  const problems: string[] = [],
    bare: string[] = [],
    lazy: string[] = [];
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const where = relative(REPO_ROOT, file);
    const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true, ts.ScriptKind.JS);
    const follow = (spec: string) => {
      if (spec.startsWith('node:') || builtinModules.includes(spec)) problems.push(`${where} imports ${spec}`);
      else if (spec.startsWith('./') || spec.startsWith('../')) visit(resolve(dirname(file), spec));
      else {
        bare.push(`${where} imports ${spec}`);
        const target = resolvePackageImport(spec);
        if (target) visit(target);
      }
    };
    const check = (node: ts.Node): void => {
      const from = ts.isImportDeclaration(node) || ts.isExportDeclaration(node) ? node.moduleSpecifier : undefined;
      if (from && ts.isStringLiteral(from)) {
        follow(from.text);
      } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
        const arg = node.arguments[0];
        const spec =
          arg === undefined
            ? undefined
            : ts.isStringLiteralLike(arg)
              ? arg.text
              : ts.isIdentifier(arg)
                ? constString(sf, arg.text)
                : undefined;
        if (spec === undefined) problems.push(`${where} imports a computed specifier: ${node.getText(sf)}`);
        else if (lazyNodeOnly.has(resolveRelative(file, spec))) lazy.push(`${where} imports ${spec}`);
        else follow(spec);
      } else if (ts.isNewExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === 'URL') {
        // new URL('./worker.js', import.meta.url): a worker script (other files, e.g. .wasm, are data)
        const [arg, base] = node.arguments ?? [];
        const script = arg && ts.isStringLiteralLike(arg) && arg.text.endsWith('.js');
        if (script && base?.getText(sf) === 'import.meta.url') follow(arg.text);
      } else if (ts.isIdentifier(node) && NODE_GLOBALS.has(node.text) && isReference(node)) {
        const { line } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
        problems.push(`${where}:${line + 1} uses ${node.text}`);
      }
      ts.forEachChild(node, check);
    };
    check(sf);
  };
  for (const e of entries) visit(join(REPO_ROOT, e));
  return { files: [...seen].map((f) => relative(REPO_ROOT, f)).sort(), problems, bare, lazy };
}

const ENTRIES = [
  'dist/src/backends/wasm/index.js',
  'dist/src/backends/reference/index.js',
  'dist/src/runtime/generate.js',
];

for (const entry of ENTRIES) {
  test(`the browser's module graph of ${entry} touches nothing of Node`, () => {
    const g = walk([entry]);
    assert.deepEqual(g.problems, []);
    assert.deepEqual(
      g.bare.filter((b) => b !== 'dist/src/platform/index.js imports #platform'),
      [],
    );
  });
}

test('the graph walk sees what it must: the wasm workers, browser.js, and Node code where there is some', () => {
  const wasm = walk(['dist/src/backends/wasm/index.js']).files;
  for (const f of ['backends/wasm/worker.js', 'platform/browser.js', 'backends/wasm/module-loader.js']) {
    assert.ok(wasm.includes(`dist/src/${f}`), f);
  }
  assert.ok(!wasm.includes('dist/src/platform/node.js'));
  const node = walk(['dist/src/platform/node.js']).problems;
  for (const p of ['imports node:fs', 'imports node:worker_threads', 'uses process', 'uses setImmediate']) {
    assert.ok(
      node.some((x) => x.includes(p)),
      p,
    );
  }
});

/**
 * Node-only modules the library loads with `await import()` only for what a page cannot be given
 * (a local path, a file to write), each with where it is loaded: a page never evaluates them.
 */
const LAZY_NODE_ONLY: Record<string, string> = {
  'dist/src/model/open-path.js': "openCheckpoint, for a path (loadModel makes a page's strings URLs)",
  'dist/src/model/default-model.js': 'loadModel without a source, in Node (a page fetches models/default/)',
  'dist/src/runtime/tokenizer-files.js': 'a tokenizer given by path, in Node',
  'dist/src/formats/file-reader.js': 'the format readers, for paths',
  'dist/src/formats/atomic-write.js': 'writing safetensors and GGUF files',
};
/** Bare specifiers of the browser entry's graph: what a page's import map must map. */
const BROWSER_BARE = [
  'dist/src/platform/index.js imports #platform', // resolved at run time: a page never evaluates it
  'dist/src/runtime/chat-template.js imports @huggingface/jinja',
  'dist/src/runtime/template-budget.js imports @huggingface/jinja',
  'dist/src/runtime/tokenizer.js imports @huggingface/tokenizers',
  // navigator.gpu in a page; the optional `webgpu` package only where there is none (Node)
  'dist/src/backends/webgpu/gpu.js imports webgpu',
];

test('the browser entry (dist/src/browser.js): nothing of Node, bare specifiers only for the import map', () => {
  const lazy = new Set(Object.keys(LAZY_NODE_ONLY).map((f) => join(REPO_ROOT, f)));
  const g = walk(['dist/src/browser.js'], lazy);
  assert.deepEqual(g.problems, []);
  assert.deepEqual([...new Set(g.bare)].sort(), [...BROWSER_BARE].sort());
  for (const f of [
    'runtime/model.js',
    'runtime/tokenizer-source.js',
    'model/load.js',
    'formats/url-source.js',
    'backends/wasm/worker.js',
    'platform/browser.js',
  ]) {
    assert.ok(g.files.includes(`dist/src/${f}`), f);
  }
  // Bundlers leave them out of a browser bundle through package.json's "browser" field.
  assert.deepEqual(
    Object.entries(pkg.browser ?? {}).sort(),
    Object.keys(LAZY_NODE_ONLY)
      .map((f) => [`./${f}`, false])
      .sort(),
  );
  // Each module of the list is reached, only dynamically, and really is Node's (the list does not rot).
  const reached = new Set(g.lazy.map((l) => l.split(' imports ')[1]!.replace(/^.*\//, '')));
  for (const f of Object.keys(LAZY_NODE_ONLY)) {
    assert.ok(!g.files.includes(f), `${f} is imported statically`);
    assert.ok(reached.has(f.replace(/^.*\//, '')), `${f} is no longer imported: take it off the list`);
    assert.notDeepEqual(walk([f]).problems, [], `${f} touches nothing of Node: take it off the list`);
  }
});

test('the bare dependencies a page maps are plain ES modules that import nothing', () => {
  for (const [name, file] of Object.entries(BROWSER_IMPORT_MAP)) {
    const g = walk([file]);
    assert.deepEqual(g.problems, [], name);
    assert.deepEqual(g.bare, [], name);
    assert.deepEqual(g.files, [file], name);
  }
});
