/**
 * Reading a request body as JSON: declared as JSON by its Content-Type (415 otherwise), no larger
 * than the server's limit (413), valid UTF-8 (400 naming the first bad byte, rather than text
 * with U+FFFD where the client sent something else), non-empty, nested no deeper than
 * MAX_BODY_DEPTH and parseable (400).
 */
import type { IncomingMessage } from 'node:http';
import { jsonNestsDeeperThan } from '../formats/json-source.js';
import { ApiError, badRequest } from './api-error.js';
import { MalformedJson, NestsTooDeep, parseError, parseJsonInTurns } from './json-in-turns.js';

/**
 * Deepest nesting of a request body: what validates a value nested thousands deep overflows the
 * stack. Deeper than model files may nest (MAX_JSON_DEPTH), so that a JSON schema nested too deep
 * for the constraint gets that check's own 400, which names the field.
 */
const MAX_BODY_DEPTH = 1000;

/** 415 unless the body is declared as `application/json`, in UTF-8 when a charset is given. */
export function checkJsonContentType(header: string | undefined): void {
  const [type, ...params] = (header ?? '').split(';').map((s) => s.trim().toLowerCase());
  const charset = params
    .find((p) => p.startsWith('charset='))
    ?.slice('charset='.length)
    .replace(/^"(.*)"$/, '$1');
  if (type === 'application/json' && (charset === undefined || charset === 'utf-8' || charset === 'utf8')) return;
  const got = header === undefined ? 'no Content-Type' : `Content-Type "${header}"`;
  throw new ApiError(
    415,
    `Send the request body as JSON, with the header "Content-Type: application/json" (UTF-8); got ${got}.`,
    'invalid_request_error',
    null,
    'unsupported_media_type',
  );
}

/**
 * Offset of the first byte that does not start a well-formed UTF-8 sequence (Unicode's Table 3-7),
 * or -1; the search begins at `from`, the start of a sequence.
 */
export function firstInvalidUtf8(b: Uint8Array, from = 0): number {
  let i = from;
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let more: number;
    let lo = 0x80,
      hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) more = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      more = 2;
      if (c === 0xe0) lo = 0xa0;
      if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      more = 3;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f;
    } else return i;
    for (let k = 1; k <= more; k++) {
      const x = b[i + k];
      if (x === undefined || x < (k === 1 ? lo : 0x80) || x > (k === 1 ? hi : 0xbf)) return i;
    }
    i += more + 1;
  }
  return -1;
}

/**
 * Reads and parses a JSON request body of at most `limit` bytes; `jsonErrorOf` finds the parse
 * error of a large body that does not parse (default: JSON.parse in place).
 */
export function readJsonBody(req: IncomingMessage, limit: number, jsonErrorOf?: JsonErrorOf): Promise<unknown> {
  checkJsonContentType(req.headers['content-type']);
  const tooBig = () => {
    const message = `The request body is larger than ${limit} bytes (server --max-body).`;
    return new ApiError(413, message, 'invalid_request_error', null, 'request_too_large');
  };
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(tooBig());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        reject(tooBig());
        return;
      }
      chunks.push(c);
    });
    req.on('error', (e) => {
      if (failed) return;
      failed = true;
      reject(badRequest(`Could not read the request body: ${e.message}`));
    });
    req.on('end', () => {
      if (!failed) parseJsonBody(Buffer.concat(chunks), jsonErrorOf).then(resolve, reject);
    });
  });
}

/** Bodies from this size are decoded, scanned, parsed and handed on in turns of their own. */
const LARGE_BODY = 64 * 1024;

/** Bytes of a large body decoded per turn of the event loop. */
const DECODE_SLICE = 256 * 1024;

/**
 * JSON.parse's own message for a text it refuses, or null when it parses: a large body's parse
 * error is found by a whole parse, which the server runs in its prompt worker (the message names a
 * position, so it must come from one parse of the whole text).
 */
export type JsonErrorOf = (text: string) => Promise<string | null>;

const nextTurn = () => new Promise((r) => setImmediate(r));

function invalidUtf8(bytes: Uint8Array, from: number): ApiError {
  const at = firstInvalidUtf8(bytes, from);
  const message = `The request body is not valid UTF-8: the sequence at byte ${at} (from 0) is malformed.`;
  return badRequest(message, null, 'invalid_encoding');
}

function unparsable(why: string): ApiError {
  return badRequest(`We could not parse the JSON body of your request: ${why}.`, null, 'invalid_json');
}

function tooDeep(): ApiError {
  const message = `The JSON body nests arrays or objects more than ${MAX_BODY_DEPTH} deep.`;
  return badRequest(message, null, 'invalid_json');
}

/**
 * The start of the UTF-8 sequence that byte `at` belongs to, or `at` when it starts one: where a
 * search for the first malformed sequence may begin once every byte before `at` has decoded.
 */
function sequenceStart(bytes: Uint8Array, at: number): number {
  let k = at - 1;
  while (k >= 0 && at - k <= 3 && (bytes[k]! & 0xc0) === 0x80) k--;
  return k >= 0 && at - k <= 3 && bytes[k]! >= 0xc0 ? k : at;
}

/**
 * A body's bytes as UTF-8 JSON, or the 400 for what is wrong with them. Each of the passes over a
 * megabyte (decoding, the structure scan, JSON.parse, then the handler's own checks) costs the
 * event loop 5-80 ms busy: a large body is decoded in slices and parsed by json-in-turns.ts, each
 * slice in a turn of its own, and handed on in a turn of its own.
 */
async function parseJsonBody(bytes: Buffer, jsonErrorOf?: JsonErrorOf): Promise<unknown> {
  if (bytes.length < LARGE_BODY) {
    let text: string;
    try {
      // A leading byte-order mark is dropped (RFC 8259 lets a parser ignore it).
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw invalidUtf8(bytes, 0);
    }
    if (text.trim() === '') throw badRequest('The request body is empty: send a JSON object.', null, 'invalid_body');
    if (jsonNestsDeeperThan(text, MAX_BODY_DEPTH)) throw tooDeep();
    try {
      return JSON.parse(text);
    } catch (e) {
      throw unparsable((e as Error).message);
    }
  }
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let text = '';
  for (let at = 0; at < bytes.length; at += DECODE_SLICE) {
    if (at > 0) await nextTurn();
    const end = Math.min(at + DECODE_SLICE, bytes.length);
    try {
      text += decoder.decode(bytes.subarray(at, end), { stream: end < bytes.length });
    } catch {
      throw invalidUtf8(bytes, sequenceStart(bytes, at));
    }
  }
  if (text.trim() === '') throw badRequest('The request body is empty: send a JSON object.', null, 'invalid_body');
  await nextTurn();
  let body: unknown;
  try {
    body = await parseJsonInTurns(text, { maxDepth: MAX_BODY_DEPTH });
  } catch (e) {
    if (e instanceof NestsTooDeep) throw tooDeep();
    if (!(e instanceof MalformedJson)) throw e;
    const why = jsonErrorOf ? await jsonErrorOf(text) : parseError(text);
    // Refused in pieces but parsed whole would be a fault of the pieces: the whole parse is right.
    if (why === null) return JSON.parse(text);
    throw unparsable(why);
  }
  await nextTurn();
  return body;
}
