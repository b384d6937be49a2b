/**
 * Compiles a JSON Schema (the subset structured output needs) into a graph of schema nodes the
 * byte-level JSON automaton walks. Keywords the automaton cannot enforce are refused with a
 * message naming the keyword and its location, never silently ignored: what the server returns
 * must validate against the schema the client gave.
 *
 * Supported: type (one or several), properties, required, additionalProperties (bool or schema),
 * minProperties/maxProperties, items, prefixItems, minItems/maxItems, enum, const,
 * anyOf/oneOf (as a union), allOf with one member, $ref to "#", "#/$defs/…" or
 * "#/definitions/…" (recursion allowed), minLength/maxLength, pattern (a safe subset, regex.ts),
 * format (date, date-time, time, uuid, email), minimum/maximum/exclusiveMinimum/exclusiveMaximum,
 * multipleOf (integers, by an integer), nullable (OpenAPI style), and the annotations (title,
 * description, default, examples, $schema, $id, $comment, deprecated, …).
 * Refused, among others: not, if/then/else, patternProperties, uniqueItems, contains.
 */

import { quoteValue } from '../../errors.js';
import { numBounds, type NumBounds } from './numeric.js';
import { compilePattern, FORMATS, PatternError, StringLanguage, type Dfa } from './regex.js';
import type { SchemaNode } from './schema-node.js';
import { whyNoValue } from './shortest.js';

export type { ArrayNode, ObjectNode, SchemaNode } from './schema-node.js';

/** A schema the automaton cannot enforce, or a malformed schema. */
export class SchemaError extends Error {
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(`${message} (at ${path})`);
    this.name = 'SchemaError';
  }
}

const ANNOTATIONS = new Set([
  'title',
  'description',
  'default',
  'examples',
  '$schema',
  '$id',
  '$comment',
  'strict',
  'deprecated',
  'readOnly',
  'writeOnly',
  '$defs',
  'definitions',
]);
const HANDLED = new Set([
  'type',
  'properties',
  'required',
  'additionalProperties',
  'minProperties',
  'maxProperties',
  'items',
  'prefixItems',
  'minItems',
  'maxItems',
  'enum',
  'const',
  'anyOf',
  'oneOf',
  'allOf',
  '$ref',
  'minLength',
  'maxLength',
  'nullable',
  'pattern',
  'format',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'multipleOf',
]);
const NUMBER_KEYWORDS = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf'] as const;
const TYPES = ['object', 'array', 'string', 'number', 'integer', 'boolean', 'null'] as const;
type TypeName = (typeof TYPES)[number];

const encoder = new TextEncoder();

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The canonical JSON text of a value, with object keys in their given order. */
function jsonText(v: unknown, path: string): string {
  const s = JSON.stringify(v);
  if (s === undefined) throw new SchemaError('enum/const values must be JSON values', path);
  return s;
}

/** Limits that keep one request's schema from costing the server more than a request's worth. */
export const SCHEMA_LIMITS = { nodes: 4096, depth: 64, enumValues: 1024, properties: 1024 } as const;

export class SchemaCompiler {
  private nextId = 0;
  private depth = 0;
  private readonly refCache = new Map<string, SchemaNode>();
  /** Where in the schema each node was compiled from (for messages). */
  readonly paths = new Map<SchemaNode, string>();

  constructor(private readonly root: unknown) {}

  compile(): SchemaNode {
    return this.node(this.root, '#');
  }

  private make<T extends Omit<SchemaNode, 'id'>>(n: T): T & { id: number } {
    if (this.nextId >= SCHEMA_LIMITS.nodes)
      throw new SchemaError(`the schema is too large (more than ${SCHEMA_LIMITS.nodes} sub-schemas)`, '#');
    return { ...n, id: this.nextId++ } as T & { id: number };
  }

  private resolveRef(ref: string, path: string): SchemaNode {
    const cached = this.refCache.get(ref);
    if (cached) return cached;
    if (ref !== '#' && !ref.startsWith('#/'))
      throw new SchemaError(`only local $ref ("#/…") is supported, got ${quoteValue(ref)}`, path);
    let target: unknown = this.root;
    if (ref !== '#') {
      for (const raw of ref.slice(2).split('/')) {
        let part: string;
        try {
          part = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
        } catch {
          throw new SchemaError(`$ref ${quoteValue(ref)} is not valid percent-encoding`, path);
        }
        if (!isPlainObject(target) || !(part in target))
          throw new SchemaError(`$ref ${quoteValue(ref)} does not resolve`, path);
        target = target[part];
      }
    }
    // A lazily compiled node so recursive schemas terminate.
    let compiled: SchemaNode | undefined;
    const node = this.make({ kind: 'ref' as const, target: () => compiled! });
    this.refCache.set(ref, node);
    compiled = this.node(target, ref);
    // A $ref that leads only to $refs (e.g. {"$ref": "#"} alone) describes no value at all.
    for (let x: SchemaNode = compiled, i = 0; x.kind === 'ref'; x = x.target(), i++) {
      if (x === node || i > SCHEMA_LIMITS.depth)
        throw new SchemaError(`$ref ${quoteValue(ref)} refers only to itself`, path);
    }
    return node;
  }

  private node(s: unknown, path: string): SchemaNode {
    if (this.depth >= SCHEMA_LIMITS.depth)
      throw new SchemaError(`the schema is nested more than ${SCHEMA_LIMITS.depth} levels deep`, path);
    this.depth++;
    try {
      const n = this.nodeAt(s, path);
      if (!this.paths.has(n)) this.paths.set(n, path);
      return n;
    } finally {
      this.depth--;
    }
  }

  private nodeAt(s: unknown, path: string): SchemaNode {
    if (s === true) return this.make({ kind: 'any' as const });
    if (s === false) return this.make({ kind: 'never' as const });
    if (!isPlainObject(s)) throw new SchemaError('a schema must be an object or a boolean', path);
    for (const k of Object.keys(s)) {
      if (!HANDLED.has(k) && !ANNOTATIONS.has(k))
        throw new SchemaError(`unsupported JSON Schema keyword ${quoteValue(k)}`, path);
    }
    // Combinators first: they replace the node.
    if (s.$ref !== undefined) {
      if (typeof s.$ref !== 'string') throw new SchemaError('$ref must be a string', path);
      const others = Object.keys(s).filter((k) => k !== '$ref' && !ANNOTATIONS.has(k));
      if (others.length) throw new SchemaError(`keywords beside $ref are not supported (${others.join(', ')})`, path);
      return this.resolveRef(s.$ref, path);
    }
    if (s.allOf !== undefined) {
      if (!Array.isArray(s.allOf) || s.allOf.length !== 1)
        throw new SchemaError('allOf is supported with exactly one schema', path);
      const rest = { ...s };
      delete rest.allOf;
      const others = Object.keys(rest).filter((k) => !ANNOTATIONS.has(k));
      if (others.length) throw new SchemaError(`keywords beside allOf are not supported (${others.join(', ')})`, path);
      return this.node(s.allOf[0], `${path}/allOf/0`);
    }
    for (const comb of ['anyOf', 'oneOf'] as const) {
      if (s[comb] === undefined) continue;
      const list = s[comb];
      if (!Array.isArray(list) || list.length === 0) throw new SchemaError(`${comb} must be a non-empty array`, path);
      const others = Object.keys(s).filter((k) => k !== comb && !ANNOTATIONS.has(k));
      if (others.length)
        throw new SchemaError(`keywords beside ${comb} are not supported (${others.join(', ')})`, path);
      // oneOf is enforced as anyOf: the branches of the schemas people write for structured
      // output are disjoint (different types or different required keys).
      const options = list.map((x, i) => this.node(x, `${path}/${comb}/${i}`));
      return options.length === 1 ? options[0]! : this.make({ kind: 'union' as const, options });
    }
    if (s.const !== undefined || s.enum !== undefined) {
      const values = s.const !== undefined ? [s.const] : s.enum;
      if (!Array.isArray(values) || values.length === 0) throw new SchemaError('enum must be a non-empty array', path);
      if (values.length > SCHEMA_LIMITS.enumValues)
        throw new SchemaError(`enum has more than ${SCHEMA_LIMITS.enumValues} values`, path);
      const texts = values.map((v) => encoder.encode(jsonText(v, path)));
      if (s.nullable === true) texts.push(encoder.encode('null'));
      return this.make({ kind: 'literal' as const, texts });
    }

    let types: TypeName[];
    if (s.type === undefined) {
      // No type: infer from the keywords present, else anything.
      const inferred: TypeName[] = [];
      if (s.properties !== undefined || s.required !== undefined || s.additionalProperties !== undefined)
        inferred.push('object');
      if (s.items !== undefined || s.prefixItems !== undefined) inferred.push('array');
      if (s.minLength !== undefined || s.maxLength !== undefined || s.pattern !== undefined || s.format !== undefined) {
        inferred.push('string');
      }
      if (NUMBER_KEYWORDS.some((k) => s[k] !== undefined)) inferred.push('number');
      if (inferred.length === 0) return this.make({ kind: 'any' as const });
      types = inferred;
    } else {
      const raw = Array.isArray(s.type) ? s.type : [s.type];
      if (raw.length === 0) throw new SchemaError('type must not be an empty array', path);
      types = [];
      for (const t of raw) {
        if (!(TYPES as readonly unknown[]).includes(t)) throw new SchemaError(`unknown type ${quoteValue(t)}`, path);
        if (!types.includes(t as TypeName)) types.push(t as TypeName);
      }
    }
    if (s.nullable === true && !types.includes('null')) types.push('null');
    const options = types.map((t) => this.typed(t, s, path));
    return options.length === 1 ? options[0]! : this.make({ kind: 'union' as const, options });
  }

  private count(s: Record<string, unknown>, key: string, path: string, dflt: number): number {
    const v = s[key];
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
      throw new SchemaError(`${key} must be a non-negative integer`, path);
    return v;
  }

  private numberBounds(s: Record<string, unknown>, integer: boolean, path: string): NumBounds | undefined {
    const v: Partial<Record<(typeof NUMBER_KEYWORDS)[number], number>> = {};
    for (const k of NUMBER_KEYWORDS) {
      const x = s[k];
      if (x === undefined) continue;
      // Draft 4's boolean exclusiveMinimum/exclusiveMaximum is not what clients send today.
      if (typeof x !== 'number' || !Number.isFinite(x)) throw new SchemaError(`${k} must be a number`, path);
      v[k] = x;
    }
    if (v.multipleOf !== undefined) {
      if (!integer) throw new SchemaError('multipleOf is supported only for integers', path);
      if (!Number.isSafeInteger(v.multipleOf) || v.multipleOf <= 0) {
        throw new SchemaError('multipleOf must be a positive integer', path);
      }
    }
    try {
      return (
        numBounds(integer, v.minimum, v.maximum, v.exclusiveMinimum, v.exclusiveMaximum, v.multipleOf) ?? undefined
      );
    } catch (e) {
      if (typeof e === 'string') throw new SchemaError(e, path);
      throw e;
    }
  }

  private stringLanguage(s: Record<string, unknown>, minLength: number, maxLength: number, path: string) {
    const dfas: Dfa[] = [];
    try {
      if (s.format !== undefined) {
        const src = typeof s.format === 'string' ? FORMATS[s.format] : undefined;
        if (src === undefined) {
          const known = Object.keys(FORMATS).join(', ');
          throw new SchemaError(`unsupported format ${quoteValue(s.format)} (supported: ${known})`, path);
        }
        dfas.push(compilePattern(src));
      }
      if (s.pattern !== undefined) {
        if (typeof s.pattern !== 'string') throw new SchemaError('pattern must be a string', path);
        dfas.push(compilePattern(s.pattern));
      }
      return dfas.length ? new StringLanguage(dfas, minLength, maxLength, "the string's pattern/format") : undefined;
    } catch (e) {
      if (e instanceof PatternError) throw new SchemaError(`unsupported pattern: ${e.message}`, path);
      throw e;
    }
  }

  private typed(t: TypeName, s: Record<string, unknown>, path: string): SchemaNode {
    switch (t) {
      case 'null':
        return this.make({ kind: 'literal' as const, texts: [encoder.encode('null')] });
      case 'boolean':
        return this.make({ kind: 'literal' as const, texts: [encoder.encode('true'), encoder.encode('false')] });
      case 'number':
      case 'integer': {
        const integer = t === 'integer';
        const bounds = this.numberBounds(s, integer, path);
        return this.make({ kind: 'number' as const, integer, ...(bounds ? { bounds } : {}) });
      }
      case 'string': {
        const minLength = this.count(s, 'minLength', path, 0);
        const maxLength = this.count(s, 'maxLength', path, Infinity);
        if (minLength > maxLength) throw new SchemaError('minLength > maxLength', path);
        const lang = this.stringLanguage(s, minLength, maxLength, path);
        return this.make({ kind: 'string' as const, minLength, maxLength, ...(lang ? { lang } : {}) });
      }
      case 'array': {
        const prefixRaw = s.prefixItems ?? [];
        if (!Array.isArray(prefixRaw)) throw new SchemaError('prefixItems must be an array', path);
        const prefixItems = prefixRaw.map((x, i) => this.node(x, `${path}/prefixItems/${i}`));
        let items: SchemaNode | null;
        if (s.items === undefined) items = this.make({ kind: 'any' as const });
        else if (s.items === false) items = null;
        else if (Array.isArray(s.items))
          throw new SchemaError('items as an array (draft 4 tuples) is not supported: use prefixItems', path);
        else items = this.node(s.items, `${path}/items`);
        const minItems = this.count(s, 'minItems', path, 0);
        let maxItems = this.count(s, 'maxItems', path, Infinity);
        if (items === null) maxItems = Math.min(maxItems, prefixItems.length);
        if (minItems > maxItems)
          throw new SchemaError('minItems > maxItems (or more than prefixItems with items: false)', path);
        return this.make({ kind: 'array' as const, prefixItems, items, minItems, maxItems });
      }
      case 'object': {
        const propsRaw = s.properties ?? {};
        if (!isPlainObject(propsRaw)) throw new SchemaError('properties must be an object', path);
        if (Object.keys(propsRaw).length > SCHEMA_LIMITS.properties)
          throw new SchemaError(`more than ${SCHEMA_LIMITS.properties} properties`, path);
        const properties = new Map<string, SchemaNode>();
        const propertyBytes = new Map<string, Uint8Array>();
        for (const [k, v] of Object.entries(propsRaw)) {
          properties.set(k, this.node(v, `${path}/properties/${k}`));
          propertyBytes.set(k, encoder.encode(JSON.stringify(k).slice(1, -1)));
        }
        const reqRaw = s.required ?? [];
        if (!Array.isArray(reqRaw) || reqRaw.some((r) => typeof r !== 'string'))
          throw new SchemaError('required must be an array of strings', path);
        let additional: SchemaNode | null;
        if (s.additionalProperties === undefined || s.additionalProperties === true)
          additional = this.make({ kind: 'any' as const });
        else if (s.additionalProperties === false) additional = null;
        else additional = this.node(s.additionalProperties, `${path}/additionalProperties`);
        const required = new Set(reqRaw as string[]);
        for (const r of required) {
          if (!properties.has(r) && additional === null)
            throw new SchemaError(
              `required property ${quoteValue(r)} is not allowed by properties/additionalProperties`,
              path,
            );
          // A required key that is not listed takes the additional-properties schema.
          if (!properties.has(r)) {
            properties.set(r, additional!);
            propertyBytes.set(r, encoder.encode(JSON.stringify(r).slice(1, -1)));
          }
        }
        const minProperties = Math.max(this.count(s, 'minProperties', path, 0), 0);
        let maxProperties = this.count(s, 'maxProperties', path, Infinity);
        if (additional === null) maxProperties = Math.min(maxProperties, properties.size);
        if (required.size > maxProperties || minProperties > maxProperties)
          throw new SchemaError('the object cannot satisfy its required/minProperties within maxProperties', path);
        return this.make({
          kind: 'object' as const,
          properties,
          propertyBytes,
          required,
          additional,
          minProperties,
          maxProperties,
        });
      }
    }
  }
}

/** Compiles a JSON schema; throws SchemaError for what cannot be enforced and for a schema no value satisfies. */
export function compileJsonSchema(schema: unknown): SchemaNode {
  const compiler = new SchemaCompiler(schema);
  const root = compiler.compile();
  const why = whyNoValue(root, (n) => compiler.paths.get(n));
  if (why) throw new SchemaError(`no value satisfies the schema: ${why.reason}`, why.path);
  return root;
}

/** Follows ref nodes to the schema they stand for. */
export function deref(n: SchemaNode): SchemaNode {
  let x = n;
  for (let i = 0; x.kind === 'ref'; i++) {
    if (i > 64) throw new SchemaError('$ref cycle without a schema', '#');
    x = x.target();
  }
  return x;
}
