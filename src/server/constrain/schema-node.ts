/**
 * The compiled form of a JSON Schema (schema.ts makes it): the graph of nodes the automaton
 * (json-automaton.ts) walks and the shortest-value search (shortest.ts) reads. Its own file so
 * that the compiler and the search, which each need the other, do not import each other.
 */
import type { NumBounds } from './numeric.js';
import type { StringLanguage } from './regex.js';

export type SchemaNode =
  | { id: number; kind: 'any' }
  | { id: number; kind: 'union'; options: SchemaNode[] }
  | ObjectNode
  | ArrayNode
  | { id: number; kind: 'string'; minLength: number; maxLength: number; lang?: StringLanguage }
  | { id: number; kind: 'number'; integer: boolean; bounds?: NumBounds }
  | { id: number; kind: 'literal'; texts: Uint8Array[] }
  | { id: number; kind: 'ref'; target: () => SchemaNode }
  | { id: number; kind: 'never' };

export interface ObjectNode {
  id: number;
  kind: 'object';
  /** Known properties: JSON-escaped key bytes (without quotes) → value schema. */
  properties: Map<string, SchemaNode>;
  /** The same keys, as the bytes a generated key must spell (JSON-escaped, without quotes). */
  propertyBytes: Map<string, Uint8Array>;
  required: Set<string>;
  /** Schema of keys not in `properties`, or null when they are not allowed. */
  additional: SchemaNode | null;
  minProperties: number;
  maxProperties: number;
}

export interface ArrayNode {
  id: number;
  kind: 'array';
  prefixItems: SchemaNode[];
  /** Schema of items after the prefix, or null when no more are allowed. */
  items: SchemaNode | null;
  minItems: number;
  maxItems: number;
}
