/**
 * Server-sent events as OpenAI streams them: `data: {json}\n\n` per chunk, `data: [DONE]\n\n`
 * at the end, no event names. Writes after the client has gone are dropped silently.
 */
import type { ServerResponse } from 'node:http';

export class SseWriter {
  private started = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly headers: Record<string, string> = {},
  ) {}

  get closed(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  /** Sends the status line and headers (done on the first event). */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.res.writeHead(200, {
      ...this.headers,
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    // Push the headers out now so clients see the stream open before the first token.
    this.res.flushHeaders();
  }

  /** Sends one JSON event. */
  send(data: unknown): void {
    this.start();
    if (this.closed) return;
    this.res.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** Sends `data: [DONE]` and ends the response. */
  done(): void {
    this.start();
    if (this.closed) return;
    this.res.end('data: [DONE]\n\n');
  }

  /** Sends an error event (`data: {"error": …}`, which OpenAI's clients raise) and ends. */
  fail(error: unknown): void {
    this.start();
    if (this.closed) return;
    this.res.end(`data: ${JSON.stringify(error)}\n\n`);
  }
}
