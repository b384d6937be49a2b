/**
 * The browser entry (src/browser.ts, also the start of `mpt-ts` in Node) exports every type its
 * API names: a page that calls `generate` with a `constraint`, or reads a chunk's `logprob`, can
 * name the types it writes (TokenConstraint, TokenLogprobInfo) without reaching into the package's
 * files; likewise the Node entry (src/index.ts). Found with TypeScript's checker: from each
 * export, every type its public declarations name (parameters, results, properties, what it
 * extends; not private members or function bodies), followed to the types those name in turn,
 * must itself be exported when it is declared in src/.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';
import { REPO_ROOT } from './helpers/goldens.js';

const SRC = join(REPO_ROOT, 'src');

function isHidden(node: ts.Node): boolean {
  const modifiers = ts.canHaveModifiers(node) ? (ts.getModifiers(node) ?? []) : [];
  if (modifiers.some((m) => m.kind === ts.SyntaxKind.PrivateKeyword || m.kind === ts.SyntaxKind.ProtectedKeyword))
    return true;
  const name = (node as { name?: ts.Node }).name;
  return name !== undefined && ts.isPrivateIdentifier(name);
}

/** The types declared in src/ that the public API of `entry` names but `entry` does not export, each with where it is named. */
function unexportedTypes(entry: string): Map<string, string> {
  const parsed = ts.getParsedCommandLineOfConfigFile(
    join(REPO_ROOT, 'tsconfig.json'),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
      },
    },
  );
  const program = ts.createProgram([entry], { ...parsed!.options, noEmit: true });
  const checker = program.getTypeChecker();
  const unalias = (s: ts.Symbol) => (s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s);
  const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(entry)!)!;
  const exported = new Set(checker.getExportsOfModule(moduleSymbol).map(unalias));
  const missing = new Map<string, string>();
  const seen = new Set<ts.Symbol>(exported);
  const queue = [...exported];
  const inSrc = (d: ts.Node) => d.getSourceFile().fileName.startsWith(SRC);

  const visit = (node: ts.Node, from: string): void => {
    if (isHidden(node) || ts.isBlock(node)) return;
    if (ts.isVariableDeclaration(node) || ts.isPropertyDeclaration(node) || ts.isParameter(node)) {
      // Their type, not their initial value (a default argument is the function's business).
      if (node.type) visit(node.type, from);
      return;
    }
    const name = ts.isTypeReferenceNode(node)
      ? node.typeName
      : ts.isExpressionWithTypeArguments(node)
        ? node.expression
        : ts.isTypeQueryNode(node)
          ? node.exprName
          : undefined;
    const symbol = name === undefined ? undefined : checker.getSymbolAtLocation(name);
    if (symbol !== undefined) {
      const target = unalias(symbol);
      const decl = target.declarations?.[0];
      if (decl !== undefined && inSrc(decl) && !ts.isTypeParameterDeclaration(decl)) {
        if (!exported.has(target)) {
          const key = `${target.name} (${decl.getSourceFile().fileName.slice(REPO_ROOT.length)})`;
          if (!missing.has(key)) missing.set(key, from);
        }
        if (!seen.has(target)) {
          seen.add(target);
          queue.push(target);
        }
      }
    }
    ts.forEachChild(node, (child) => visit(child, from));
  };

  for (let s = queue.shift(); s !== undefined; s = queue.shift()) {
    for (const d of s.declarations ?? []) if (inSrc(d)) visit(d, s.name);
  }
  return missing;
}

test('the browser entry exports every type its API names (TokenConstraint, TokenLogprobInfo among them)', () => {
  const missing = unexportedTypes(join(SRC, 'browser.ts'));
  assert.deepEqual(
    [...missing].map(([type, from]) => `${type}, named by ${from}`),
    [],
    'types the API names that src/browser.ts does not export',
  );
});

test('the Node entry exports every type its API names (the prompt cache types among them)', () => {
  const missing = unexportedTypes(join(SRC, 'index.ts'));
  assert.deepEqual(
    [...missing].map(([type, from]) => `${type}, named by ${from}`),
    [],
    'types the API names that src/index.ts does not export',
  );
});
