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
  if (res.headersSent || res.destroyed) {
    if (!res.writableEnded && !res.destroyed) res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** Sends an ApiError as `{"error": {...}}` with its status and headers. */
export function sendError(res: ServerResponse, e: ApiError, headers: Record<string, string> = {}): void {
  const extra: Record<string, string> = { ...e.headers };
  // A body we stopped reading must not be parsed as the next request on this connection.
  if (e.status === 413 || e.status === 415) extra['Connection'] = 'close';
  sendJson(res, e.status, e.toBody(), { ...headers, ...extra });
}
