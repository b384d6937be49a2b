/** Writing JSON responses and OpenAI error bodies. */
import type { ServerResponse } from 'node:http';
import type { ApiError } from './api-error.js';

/** Sends a JSON body, unless a response was already started or the client is gone. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  sendJsonBytes(res, status, [Buffer.from(JSON.stringify(body))], headers);
}

const utf8 = new TextEncoder();

/**
 * JSON.stringify(text) in UTF-8: a string's JSON, as a response body writes it. In a buffer of its
 * own (a small Buffer shares Node's pool), which a worker thread can hand over.
 */
export function jsonStringBytes(text: string): Uint8Array<ArrayBuffer> {
  return utf8.encode(JSON.stringify(text));
}

/** Sends a JSON body already written as UTF-8 bytes (the parts in order), as sendJson does. */
export function sendJsonBytes(
  res: ServerResponse,
  status: number,
  parts: readonly Uint8Array[],
  headers: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) {
    if (!res.writableEnded && !res.destroyed) res.end();
    return;
  }
  const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': bytes.length });
  res.end(bytes);
}

/** Sends an ApiError as `{"error": {...}}` with its status and headers. */
export function sendError(res: ServerResponse, e: ApiError, headers: Record<string, string> = {}): void {
  const extra: Record<string, string> = { ...e.headers };
  // A body we stopped reading must not be parsed as the next request on this connection.
  if (e.status === 413 || e.status === 415) extra['Connection'] = 'close';
  sendJson(res, e.status, e.toBody(), { ...headers, ...extra });
}

/**
 * A JSON array whose items are made when it is written: `sendJsonInTurns` makes and writes them a
 * few at a time, the event loop free in between; anywhere else (JSON.stringify, a stream chunk)
 * it is written whole, as an array. `perTurn` items are made and written in one turn of the loop.
 * With `nested`, an item's plain objects are walked for SlicedArrays of their own (which count
 * their items besides); without, each item is JSON.stringify's at once.
 */
export class SlicedArray<T = unknown> {
  readonly perTurn: number;
  readonly nested: boolean;

  constructor(
    readonly length: number,
    readonly item: (index: number) => T,
    options: { perTurn?: number; nested?: boolean } = {},
  ) {
    this.perTurn = options.perTurn ?? 64;
    this.nested = options.nested ?? false;
  }

  /** The items of `a` then those of `b`. */
  static concat<T>(a: SlicedArray<T>, b: SlicedArray<T>): SlicedArray<T> {
    const item = (i: number) => (i < a.length ? a.item(i) : b.item(i - a.length));
    return new SlicedArray(a.length + b.length, item, { perTurn: a.perTurn, nested: a.nested || b.nested });
  }

  toJSON(): T[] {
    return Array.from({ length: this.length }, (_, i) => this.item(i));
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype;
}

/**
 * Appends JSON.stringify(v)'s text to `out`, yielding the share of a turn each SlicedArray item
 * cost. Plain objects are walked (a SlicedArray may be inside); anything else is JSON.stringify's.
 */
function* jsonText(v: unknown, out: string[]): Generator<number, void> {
  if (v instanceof SlicedArray) {
    out.push('[');
    for (let i = 0; i < v.length; i++) {
      if (i) out.push(',');
      const item: unknown = v.item(i);
      // As JSON.stringify writes what JSON has no value for inside an array.
      if (item === undefined || typeof item === 'function' || typeof item === 'symbol') out.push('null');
      else if (v.nested) yield* jsonText(item, out);
      else out.push(JSON.stringify(item));
      yield 1 / v.perTurn;
    }
    out.push(']');
  } else if (isPlainObject(v)) {
    out.push('{');
    let first = true;
    for (const [key, value] of Object.entries(v)) {
      if (value === undefined || typeof value === 'function' || typeof value === 'symbol') continue;
      out.push(first ? '' : ',', JSON.stringify(key), ':');
      first = false;
      yield* jsonText(value, out);
    }
    out.push('}');
  } else out.push(JSON.stringify(v));
}

/**
 * Sends a JSON body (the text JSON.stringify would make) whose SlicedArrays are made and written
 * a turn of the event loop at a time: a body of many megabytes (64 choices with 20 alternatives
 * per token, a long echoed prompt's logprobs) does not hold the server while it is made. Stops
 * when the client leaves.
 */
export async function sendJsonInTurns(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<void> {
  if (res.headersSent || res.destroyed) return sendJson(res, status, null);
  const out: string[] = [];
  const chunks: Buffer[] = [];
  const flush = () => {
    chunks.push(Buffer.from(out.join('')));
    out.length = 0;
  };
  let spent = 0;
  const text = jsonText(body, out);
  for (let step = text.next(); !step.done; step = text.next()) {
    spent += step.value;
    if (spent < 1) continue;
    spent = 0;
    flush();
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (res.destroyed) return;
  }
  flush();
  if (res.headersSent || res.destroyed) return sendJson(res, status, null);
  const bytes = Buffer.concat(chunks);
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': bytes.length });
  res.end(bytes);
}
