/**
 * Request bodies of the OpenAI-compatible endpoints, validated with zod. A bad body becomes a
 * 400 whose message and `param` name the field, worded like OpenAI's own errors
 * ("Invalid type for 'temperature': expected a number, but got a string.").
 *
 * Unknown top-level fields are refused as OpenAI refuses them ("Unrecognized request argument
 * supplied"); OpenAI fields this server cannot honour (functions, audio, …) are refused by name
 * rather than ignored; fields that change nothing here (user, metadata, store, …) are accepted.
 */
import { QUOTED_CHARS, quoteValue } from '../errors.js';
import * as z from 'zod';
import { badRequest, type ApiError } from './api-error.js';
import { fastList, fastRecord, idLists, strings, tokenIds } from './list-schema.js';
import { Tool, ToolCall, ToolChoice } from './tools.js';

const nullish = <T extends z.ZodType>(t: T) => t.nullable().optional();

/** Stop strings are matched against every new piece of text: their length is bounded. */
const STOP_CHARS = 256;
const StopString = z.string().max(STOP_CHARS);
const Stop = nullish(
  z.union([StopString, fastList(StopString, (v) => typeof v === 'string' && v.length <= STOP_CHARS, { max: 4 })]),
);

const ResponseFormat = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('text') }),
  z.strictObject({ type: z.literal('json_object') }),
  z.strictObject({
    type: z.literal('json_schema'),
    json_schema: z.strictObject({
      name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, underscores or dashes'),
      description: z.string().optional(),
      schema: z.record(z.string(), z.unknown()).optional(),
      strict: nullish(z.boolean()),
    }),
  }),
]);

/** OpenAI's limits on `metadata`. */
const METADATA_PAIRS = 16;
const METADATA_KEY_CHARS = 64;
const METADATA_VALUE_CHARS = 512;

const isBias = (v: unknown) => typeof v === 'number' && v >= -100 && v <= 100;

/** Fields shared by both endpoints. */
const common = {
  model: z.string(),
  max_tokens: nullish(z.number().int().min(1)),
  temperature: nullish(z.number().min(0).max(2)),
  top_p: nullish(z.number().min(0).max(1)),
  top_k: nullish(z.number().int().min(-1)),
  min_p: nullish(z.number().min(0).max(1)),
  stop: Stop,
  seed: nullish(z.number().int()),
  presence_penalty: nullish(z.number().min(-2).max(2)),
  frequency_penalty: nullish(z.number().min(-2).max(2)),
  repetition_penalty: nullish(z.number().gt(0).max(100)),
  n: nullish(z.number().int().min(1).max(128)),
  stream: nullish(z.boolean()),
  stream_options: nullish(
    z.strictObject({ include_usage: z.boolean().optional(), include_obfuscation: z.boolean().optional() }),
  ),
  logit_bias: nullish(
    fastRecord(z.record(z.string().regex(/^\d+$/, 'keys must be token ids'), z.number().min(-100).max(100)), isBias, {
      most: 300,
      tooMany: 'at most 300 entries',
    }),
  ),
  response_format: nullish(ResponseFormat),
  user: z.string().optional(),
  // OpenAI's limits: 16 pairs, keys of at most 64 characters, values of at most 512.
  metadata: nullish(
    fastRecord(
      z.record(
        z.string().max(METADATA_KEY_CHARS, `keys must be at most ${METADATA_KEY_CHARS} characters`),
        z.string().max(METADATA_VALUE_CHARS),
      ),
      (v) => typeof v === 'string' && v.length <= METADATA_VALUE_CHARS,
      { most: METADATA_PAIRS, tooMany: `at most ${METADATA_PAIRS} key-value pairs` },
    ),
  ),
  store: nullish(z.boolean()),
  service_tier: nullish(z.string()),
};

const TextPart = z.strictObject({ type: z.literal('text'), text: z.string() });
const ROLES = ['system', 'developer', 'user', 'assistant', 'tool'] as const;
const Message = z.object({
  role: z.enum(ROLES),
  // Optional for an assistant message that only calls tools.
  content: z.union([z.string(), z.array(TextPart)]).nullish(),
  name: z.string().optional(),
  refusal: nullish(z.string()),
  tool_calls: nullish(z.array(ToolCall)),
  tool_call_id: z.string().optional(),
});

const roles = new Set<unknown>(ROLES);
/** A message of a role and a text alone (most are): Message accepts it as it is. */
function isTextMessage(m: unknown): boolean {
  if (m === null || typeof m !== 'object') return false;
  const o = m as Record<string, unknown>;
  return typeof o['content'] === 'string' && roles.has(o['role']) && Object.keys(o).length === 2;
}

export const ChatRequest = z.strictObject({
  ...common,
  // OpenAI's limit; every message is rendered through the chat template before anything else.
  messages: fastList(Message, isTextMessage, { min: 1, max: 2048 }),
  max_completion_tokens: nullish(z.number().int().min(1)),
  logprobs: nullish(z.boolean()),
  top_logprobs: nullish(z.number().int().min(0).max(20)),
  parallel_tool_calls: nullish(z.boolean()),
  reasoning_effort: nullish(z.string()),
  /**
   * Non-standard (the chat page sends it): when the conversation does not fit, drop its oldest
   * turns (keeping system messages and the latest message) and cap max_tokens at what is left.
   */
  truncate: nullish(z.enum(['oldest_turns'])),
  tools: nullish(z.array(Tool).max(128)),
  tool_choice: nullish(ToolChoice),
  // Refused below when set: this server generates text only.
  functions: z.unknown().optional(),
  function_call: z.unknown().optional(),
  audio: z.unknown().optional(),
  modalities: z.unknown().optional(),
  prediction: z.unknown().optional(),
  web_search_options: z.unknown().optional(),
});
export type ChatRequest = z.infer<typeof ChatRequest>;

export const CompletionRequest = z.strictObject({
  ...common,
  // 0 with echo: the prompt alone (and with logprobs, its scores), as OpenAI's legacy API allows.
  max_tokens: nullish(z.number().int().min(0)),
  prompt: z.union([z.string(), strings({ min: 1 }), tokenIds(1), idLists(1, { min: 1 })]),
  logprobs: nullish(z.number().int().min(0).max(5)),
  echo: nullish(z.boolean()),
  suffix: nullish(z.string()),
  best_of: nullish(z.number().int().min(1).max(128)),
});
export type CompletionRequest = z.infer<typeof CompletionRequest>;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  switch (typeof v) {
    case 'string':
      return 'a string';
    case 'number':
      return Number.isInteger(v) ? 'an integer' : 'a number';
    case 'boolean':
      return 'a boolean';
    case 'object':
      return 'an object';
    default:
      return typeof v;
  }
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'a boolean',
  array: 'an array',
  object: 'an object',
  record: 'an object',
  null: 'null',
  literal: 'a specific value',
};

function paramName(path: readonly PropertyKey[]): string {
  let s = '';
  for (const p of path) {
    // A key of the request's own making may be 100 kB long.
    const key = typeof p === 'string' && p.length > QUOTED_CHARS ? quoteValue(p) : String(p);
    if (typeof p === 'number') s += `[${p}]`;
    else s += s ? `.${key}` : key;
  }
  return s;
}

function valueAt(body: unknown, path: readonly PropertyKey[]): unknown {
  let v = body;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

type Issue = z.core.$ZodIssue;

/** Positive when path `a` reaches further along the lists it indexes than `b`, negative when less far. */
function furtherAlong(a: readonly PropertyKey[], b: readonly PropertyKey[]): number {
  for (let k = 0; k < Math.min(a.length, b.length); k++) {
    const x = a[k];
    const y = b[k];
    if (typeof x !== 'number' || typeof y !== 'number') return 0;
    if (x !== y) return x - y;
  }
  return 0;
}

/** ±Infinity: what JSON.parse makes of a number beyond the float range (1e400). */
function nonFinite(v: unknown): boolean {
  return typeof v === 'number' && !Number.isFinite(v);
}

/** Turns the first zod issue into an OpenAI-style 400. */
export function issueToError(body: unknown, issue: Issue, prefix: readonly PropertyKey[] = []): ApiError {
  const path = [...prefix, ...issue.path];
  const param = paramName(path);
  const value = valueAt(body, path);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const keys = issue.keys.map((k) => paramName([...path, k]));
      return badRequest(`Unrecognized request argument supplied: ${keys.join(', ')}`, keys[0]!, 'unknown_parameter');
    }
    case 'invalid_type':
      if (value === undefined)
        return badRequest(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter');
      if (nonFinite(value)) {
        const message = `Invalid value for '${param}': expected a finite number, but got one too large to represent`;
        return badRequest(`${message} (beyond ±1.8e308).`, param, 'invalid_value');
      }
      return badRequest(
        `Invalid type for '${param}': expected ${EXPECTED[issue.expected] ?? issue.expected}, but got ${describe(value)}.`,
        param,
        'invalid_type',
      );
    case 'invalid_union': {
      if (value === undefined)
        return badRequest(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter');
      const branches = (issue as unknown as { errors: Issue[][]; note?: string }).errors ?? [];
      // When every branch failed on the value's type, list the types accepted.
      const topTypes = branches.map(
        (b) =>
          b.find((i) => i.path.length === 0 && i.code === 'invalid_type') as (Issue & { expected: string }) | undefined,
      );
      if (branches.length && topTypes.every((t) => t !== undefined)) {
        const names = [...new Set(topTypes.map((t) => EXPECTED[t!.expected] ?? t!.expected))];
        return badRequest(
          `Invalid type for '${param}': expected ${names.join(' or ')}, but got ${describe(value)}.`,
          param,
          'invalid_type',
        );
      }
      // A branch that accepted the value's type tells what is wrong with it; of several, the one
      // whose parts mostly had the right types ([1, 1e400] is a list of token ids, not of strings).
      const typed = branches.filter((b, k) => topTypes[k] === undefined && b.length > 0);
      const mismatches = (b: Issue[]) =>
        b.filter((i) => i.code === 'invalid_type' && !nonFinite(valueAt(value, i.path))).length;
      // Of those as close, the one whose first problem is furthest along the list ([1, 1.5] is
      // a list of token ids with a bad second one, not a list of strings with a bad first one).
      const closer = (a: Issue[], b: Issue[]) => mismatches(b) - mismatches(a) || furtherAlong(a[0]!.path, b[0]!.path);
      if (typed.length) {
        const closest = typed.reduce((a, b) => (closer(a, b) < 0 ? b : a));
        return issueToError(body, closest[0]!, path);
      }
      // Otherwise report the deepest problem of the branch that got furthest.
      let best: { issue: Issue; depth: number } | undefined;
      for (const b of branches)
        for (const i of b) if (!best || i.path.length > best.depth) best = { issue: i, depth: i.path.length };
      if (best && best.depth > 0) return issueToError(body, best.issue, path);
      return badRequest(`Invalid value for '${param}'.`, param, 'invalid_value');
    }
    case 'too_small':
    case 'too_big': {
      const i = issue as Issue & {
        origin?: string;
        minimum?: number | bigint;
        maximum?: number | bigint;
        inclusive?: boolean;
      };
      const small = issue.code === 'too_small';
      const bound = small ? i.minimum : i.maximum;
      if (i.origin === 'array' || i.origin === 'string') {
        const what = i.origin === 'array' ? 'items' : 'characters';
        const cmp = small ? 'at least' : 'at most';
        return badRequest(
          `Invalid '${param}': expected ${cmp} ${String(bound)} ${what}.`,
          param,
          small ? 'array_too_short' : 'array_too_long',
        );
      }
      const op = small ? (i.inclusive ? '>=' : '>') : i.inclusive ? '<=' : '<';
      return badRequest(
        `Invalid value for '${param}': must be ${op} ${String(bound)}, got ${quoteValue(value)}.`,
        param,
        small ? 'value_below_minimum' : 'value_above_maximum',
      );
    }
    case 'invalid_value': {
      const values = (issue as Issue & { values: unknown[] }).values;
      return badRequest(
        `Invalid value for '${param}': expected ${values.map((x) => JSON.stringify(x)).join(', ')}, but got ${value === undefined ? 'nothing' : quoteValue(value)}.`,
        param,
        'invalid_value',
      );
    }
    case 'invalid_key': {
      const inner = (issue as Issue & { issues?: Issue[] }).issues?.[0];
      return badRequest(
        `Invalid key in '${paramName(issue.path.length ? [...prefix, ...issue.path.slice(0, -1)] : path)}': ${inner?.message ?? issue.message}.`,
        param,
        'invalid_value',
      );
    }
    case 'invalid_format':
      return badRequest(`Invalid value for '${param}': ${issue.message}.`, param, 'invalid_value');
    default:
      return badRequest(`Invalid value for '${param}': ${issue.message}.`, param, 'invalid_value');
  }
}

/** Parses a body against a schema or throws the 400 for its first problem. */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw badRequest(`The request body must be a JSON object, got ${describe(body)}.`, null, 'invalid_body');
  }
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  // Prefer unknown-field and missing-field problems, then the first in schema order.
  const issues = r.error.issues;
  const first = issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]!;
  throw issueToError(body, first);
}

const REFUSED_CHAT_FIELDS = [
  'functions',
  'function_call',
  'audio',
  'modalities',
  'prediction',
  'web_search_options',
] as const;

/** Chat fields OpenAI defines that this server refuses when they ask for something. */
export function checkRefusedChatFields(req: ChatRequest): void {
  for (const f of REFUSED_CHAT_FIELDS) {
    const v = req[f];
    if (v === undefined || v === null) continue;
    if (Array.isArray(v) && v.length === 0) continue;
    if (f === 'function_call' && (v === 'none' || v === 'auto')) continue;
    if (f === 'modalities' && Array.isArray(v) && v.every((m) => m === 'text')) continue;
    throw badRequest(`'${f}' is not supported by this server (it generates text only).`, f, 'unsupported_parameter');
  }
}
