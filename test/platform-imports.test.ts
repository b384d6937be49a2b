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

const NODE_GLOBALS = new Set(['process', 'Buffer', 'setImmediate', 'require', '__dirname', '__filename']);
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8'));

/** A package.json "imports" entry as a browser bundler resolves it. */
function resolvePackageImport(spec: string): string | null {
  const entry = pkg.imports?.[spec];
  if (entry === undefined) return null;
  const target = typeof entry === 'string' ? entry : entry.browser ?? entry.import ?? entry.default;
  return join(REPO_ROOT, target);
}

/** Whether an identifier is a reference to a variable (not `x.name`, `{ name: … }`, a method name…). */
function isReference(id: ts.Identifier): boolean {
  const p = id.parent;
  if (ts.isPropertyAccessExpression(p) && p.name === id) return false;
  if ((ts.isPropertyAssignment(p) || ts.isMethodDeclaration(p) || ts.isPropertyDeclaration(p)
    || ts.isGetAccessor(p) || ts.isSetAccessor(p) || ts.isPropertySignature(p)) && p.name === id) return false;
  return true;
}

interface Graph { files: string[]; problems: string[]; bare: string[] }

function walk(entries: string[]): Graph {
  const seen = new Set<string>();
  const problems: string[] = [], bare: string[] = [];
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
      const from = (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) ? node.moduleSpecifier : undefined;
      if (from && ts.isStringLiteral(from)) {
        follow(from.text);
      } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
        const arg = node.arguments[0];
        if (arg && ts.isStringLiteralLike(arg)) follow(arg.text);
        else problems.push(`${where} imports a computed specifier: ${node.getText(sf)}`);
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
  return { files: [...seen].map((f) => relative(REPO_ROOT, f)).sort(), problems, bare };
}

const ENTRIES = ['dist/src/backends/wasm/index.js', 'dist/src/backends/reference/index.js',
  'dist/src/runtime/generate.js'];

for (const entry of ENTRIES) {
  test(`the browser's module graph of ${entry} touches nothing of Node`, () => {
    const g = walk([entry]);
    assert.deepEqual(g.problems, []);
    assert.deepEqual(g.bare.filter((b) => b !== 'dist/src/platform/index.js imports #platform'), []);
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
    assert.ok(node.some((x) => x.includes(p)), p);
  }
});
