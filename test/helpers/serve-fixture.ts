/**
 * A server on the tiny GPT-NeoX-vocabulary fixture (real 50,432-token vocabulary, d_model 16)
 * for the server tests: reference backend, loopback only, a free port.
 */
import { fileURLToPath } from 'node:url';
import { MptServer, type ServerOptions } from '../../src/server/http-server.js';
import type { ConstraintVocabulary } from '../../src/server/constrain/json-constraint.js';
import { loadServedModel, type ServedModel } from '../../src/server/model-host.js';
import { PromptWorker } from '../../src/server/prompt-worker.js';

export const TINY_NEOX = fileURLToPath(new URL('../../../test/fixtures/tiny-neox-vocab/', import.meta.url));

let cached: Promise<ServedModel> | undefined;

/** The fixture model, loaded once per test process. */
export function tinyModel(): Promise<ServedModel> {
  cached ??= loadServedModel(TINY_NEOX, { backend: 'reference', onNote: () => {} });
  return cached;
}

/** The model's constraint vocabulary as a server builds it (in a prompt worker thread), kept by the model. */
export async function constraintVocabulary(model: ServedModel): Promise<ConstraintVocabulary> {
  const prompts = new PromptWorker(model.tokenizer);
  try {
    return await model.constraintVocabulary(prompts);
  } finally {
    prompts.close(new Error('closed'));
  }
}

export interface TestServer {
  server: MptServer;
  model: ServedModel;
  url: string;
  close(): Promise<void>;
}

export async function startTestServer(options: ServerOptions = {}): Promise<TestServer> {
  const model = await tinyModel();
  const server = new MptServer(model, { port: 0, host: '127.0.0.1', ...options });
  const { url } = await server.listen();
  return { server, model, url, close: () => server.shutdown(0) };
}

/** Reads one gauge or counter from /metrics text. */
export function metricValue(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`metric ${name} not found`);
  return Number(line.slice(name.length + 1));
}

/** Polls until `cond` holds (at most `ms`). */
export async function waitFor(cond: () => Promise<boolean> | boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
