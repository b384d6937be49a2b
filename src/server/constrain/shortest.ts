/**
 * The length in bytes of the shortest JSON text a compiled schema allows, and, when there is no
 * finite one, where and why. A schema can be well-formed and still admit nothing (a required
 * property whose schema is `false`, an `anyOf` of such, a required property that recurses into
 * the schema itself); constrained decoding of it could only end in text that does not parse.
 *
 * Computed as a least fixed point over the schema graph, recursion included: every node starts at
 * Infinity and is lowered from its children until nothing changes. A node's value is its cheapest
 * derivation, and a cheapest derivation never repeats a node along a branch, so at most one pass
 * per node is needed (children are visited first, so far fewer in practice).
 */
import { shortestNumber } from './numeric.js';
import type { ArrayNode, ObjectNode, SchemaNode } from './schema-node.js';

/** Nodes reachable from the root, children before parents. */
function postOrder(root: SchemaNode): SchemaNode[] {
  const out: SchemaNode[] = [];
  const seen = new Set<SchemaNode>();
  const visit = (n: SchemaNode): void => {
    if (seen.has(n)) return;
    seen.add(n);
    for (const c of children(n)) visit(c);
    out.push(n);
  };
  visit(root);
  return out;
}

function children(n: SchemaNode): SchemaNode[] {
  switch (n.kind) {
    case 'union':
      return n.options;
    case 'ref':
      return [n.target()];
    case 'object':
      return [...n.properties.values(), ...(n.additional ? [n.additional] : [])];
    case 'array':
      return [...n.prefixItems, ...(n.items ? [n.items] : [])];
    default:
      return [];
  }
}

/** Bytes of `"key":value` for a property. */
function memberBytes(keyBytes: number, valueBytes: number): number {
  return keyBytes + 3 + valueBytes;
}

/** The members an object must have at least, cheapest first; null when minProperties cannot be met. */
function objectMembers(n: ObjectNode, min: (n: SchemaNode) => number): number[] | null {
  const required: number[] = [];
  const optional: number[] = [];
  for (const [key, value] of n.properties) {
    const cost = memberBytes(n.propertyBytes.get(key)!.length, min(value));
    (n.required.has(key) ? required : optional).push(cost);
  }
  const need = Math.max(0, n.minProperties - required.length);
  if (need === 0) return required;
  // Keys not listed take the additionalProperties schema; the shortest such key is "".
  const extra = n.additional ? memberBytes(0, min(n.additional)) : Infinity;
  const pool = optional
    .filter((c) => c < extra)
    .sort((a, b) => a - b)
    .slice(0, need);
  while (pool.length < need && extra < Infinity) pool.push(extra);
  return pool.length < need ? null : [...required, ...pool];
}

function arrayItems(n: ArrayNode): SchemaNode[] {
  const out: SchemaNode[] = [];
  for (let i = 0; i < n.minItems; i++) out.push(i < n.prefixItems.length ? n.prefixItems[i]! : n.items!);
  return out;
}

function container(items: number[]): number {
  return 2 + items.reduce((a, b) => a + b, 0) + Math.max(0, items.length - 1);
}

function valueBytes(n: SchemaNode, min: (n: SchemaNode) => number): number {
  switch (n.kind) {
    case 'any':
      return 1;
    case 'never':
      return Infinity;
    case 'number':
      return n.bounds ? shortestNumber(n.bounds) : 1;
    case 'string': {
      if (!n.lang) return 2 + n.minLength;
      const more = n.lang.fewestMore(n.lang.dfa.start, 0);
      return more <= n.maxLength ? 2 + more : Infinity;
    }
    case 'literal':
      return Math.min(...n.texts.map((t) => t.length));
    case 'union':
      return Math.min(...n.options.map(min));
    case 'ref':
      return min(n.target());
    case 'object': {
      const members = objectMembers(n, min);
      return members ? container(members) : Infinity;
    }
    case 'array':
      return container(arrayItems(n).map(min));
  }
}

/** Shortest-value lengths of every node reachable from `root`. */
function solve(root: SchemaNode): Map<SchemaNode, number> {
  const nodes = postOrder(root);
  const best = new Map<SchemaNode, number>(nodes.map((n) => [n, Infinity]));
  const min = (n: SchemaNode) => best.get(n)!;
  for (let pass = 0, changed = true; changed && pass <= nodes.length; pass++) {
    changed = false;
    for (const n of nodes) {
      const v = valueBytes(n, min);
      if (v < min(n)) {
        best.set(n, v);
        changed = true;
      }
    }
  }
  return best;
}

/** Bytes of the shortest JSON text valid under the schema (whitespace-free); Infinity when none is. */
export function shortestValueBytes(root: SchemaNode): number {
  return solve(root).get(root)!;
}

/**
 * Why a schema with no finite value has none: the first place, following what every value must
 * contain, where nothing is left. `pathOf` gives the schema location a node was compiled from.
 */
export function whyNoValue(
  root: SchemaNode,
  pathOf: (n: SchemaNode) => string | undefined,
): { reason: string; path: string } | null {
  const best = solve(root);
  const min = (n: SchemaNode) => best.get(n)!;
  if (min(root) < Infinity) return null;
  // Only references close cycles: the walk stops at one that leads back to where it has been.
  const onPath = new Set<SchemaNode>();
  const explain = (n: SchemaNode, path: string, what: string): { reason: string; path: string } => {
    path = pathOf(n) ?? path;
    onPath.add(n);
    switch (n.kind) {
      case 'never':
        return { reason: `${what} allows no value (its schema is false)`, path };
      case 'ref': {
        const target = n.target();
        if (!onPath.has(target)) return explain(target, path, what);
        return {
          reason: `${what} must contain a value of the same schema again, so no finite value satisfies it`,
          path,
        };
      }
      case 'union':
        return { reason: `none of the ${n.options.length} alternatives of ${what} allows a value`, path };
      case 'object': {
        for (const key of n.required) {
          const value = n.properties.get(key)!;
          if (min(value) === Infinity) return explain(value, `${path}/properties/${key}`, `required property "${key}"`);
        }
        const usable = [...n.properties.values()].filter((v) => min(v) < Infinity).length;
        const reason = `minProperties ${n.minProperties} cannot be met: only ${usable} properties can have a value`;
        return { reason, path };
      }
      case 'array': {
        const items = arrayItems(n);
        const i = items.findIndex((x) => min(x) === Infinity);
        const where = i < n.prefixItems.length ? `${path}/prefixItems/${i}` : `${path}/items`;
        return explain(items[i]!, where, `item ${i} (minItems ${n.minItems})`);
      }
      default:
        return { reason: `${what} allows no value`, path };
    }
  };
  return explain(root, '#', 'the value');
}
