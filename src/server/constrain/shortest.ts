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

/**
 * Bytes of `{…}` or `[…]` holding `count` members of `bytes` bytes in all. Counts come from the
 * schema (minItems, minProperties: up to 2^53), so they are multiplied, never listed.
 */
function container(count: number, bytes: number): number {
  return 2 + bytes + Math.max(0, count - 1);
}

/** `count` copies of a member of `each` bytes (0 when none: 0 × Infinity is not Infinity). */
function times(count: number, each: number): number {
  return count > 0 ? count * each : 0;
}

/** The shortest object: its required members, then the cheapest others up to minProperties. */
function objectBytes(n: ObjectNode, min: (n: SchemaNode) => number): number {
  let bytes = 0;
  let required = 0;
  const optional: number[] = [];
  for (const [key, value] of n.properties) {
    const cost = memberBytes(n.propertyBytes.get(key)!.length, min(value));
    if (n.required.has(key)) {
      bytes += cost;
      required++;
    } else optional.push(cost);
  }
  const need = Math.max(0, n.minProperties - required);
  // Keys not listed take the additionalProperties schema; the shortest such key is "".
  const extra = n.additional ? memberBytes(0, min(n.additional)) : Infinity;
  const cheaper = optional
    .filter((c) => c < extra)
    .sort((a, b) => a - b)
    .slice(0, need);
  for (const c of cheaper) bytes += c;
  return container(required + need, bytes + times(need - cheaper.length, extra));
}

/** The shortest array: minItems items, the prefixItems first. */
function arrayBytes(n: ArrayNode, min: (n: SchemaNode) => number): number {
  const prefix = Math.min(n.minItems, n.prefixItems.length);
  let bytes = 0;
  for (let i = 0; i < prefix; i++) bytes += min(n.prefixItems[i]!);
  const rest = n.minItems - prefix;
  return container(n.minItems, bytes + (rest > 0 && !n.items ? Infinity : times(rest, n.items ? min(n.items) : 0)));
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
    case 'object':
      return objectBytes(n, min);
    case 'array':
      return arrayBytes(n, min);
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
        const prefix = Math.min(n.minItems, n.prefixItems.length);
        let i = 0;
        while (i < prefix && min(n.prefixItems[i]!) < Infinity) i++;
        if (i < prefix)
          return explain(n.prefixItems[i]!, `${path}/prefixItems/${i}`, `item ${i} (minItems ${n.minItems})`);
        return explain(n.items!, `${path}/items`, `item ${i} (minItems ${n.minItems})`);
      }
      default:
        return { reason: `${what} allows no value`, path };
    }
  };
  return explain(root, '#', 'the value');
}
