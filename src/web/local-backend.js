// How the chat page reaches a model when `mpt web` serves it: the model runs in this tab, through
// the library's browser entry (wasm in Web Workers). Same two functions as server-backend.js, plus
// what only a model in the page has: choosing another model (a URL or dropped files) and load
// progress. The conversation is kept within the context as `mpt chat` keeps it (ChatSession drops
// the oldest turns, the system prompt stays; generation ends where the context does).

import { ChatSession, MptModel, loadModel, noTokenizerMessage, resolvePromptFormat } from '/dist/src/browser.js';

/** The name of Files chosen or dropped without a folder around them (a plural, unlike a folder's name). */
export const CHOSEN_FILES = 'chosen files';

/** What to load next: a URL string, or the Files a user dropped or chose. */
let source = null;
let sourceName = '';
/** loadModel's options chosen by the page (threads, backend). */
let loadOptions = {};
/** The source, name and options of the model that loaded last (a failed switch goes back to it). */
let lastLoaded = null;
/** Settles when the reply being generated has ended (a model is not freed under a running reply). */
let running = Promise.resolve();
/** The loaded model (a promise while loading), and per prompt template a view of it with its session. */
let loading = null;
let views = new Map();

/**
 * Chooses the model the next describeModel loads (a URL, or Files) and loadModel's `options`
 * ({ threads }); frees the current model once its reply (stopped by the caller) has ended.
 */
export async function setSource(next, name, options = loadOptions) {
  await running;
  const previous = loading;
  loadOptions = options;
  source = next;
  sourceName = name;
  loading = null;
  for (const v of views.values()) v.session.dispose();
  views = new Map();
  const old = await previous?.catch(() => null);
  await old?.dispose();
}

function loaded({ onProgress } = {}) {
  loading ??= loadModel(source ?? undefined, {
    ...loadOptions,
    onProgress,
    onNote: (m) => console.info(m.startsWith('mpt-ts: ') ? m : `mpt-ts: ${m}`), // some notes name the engine already
  });
  return loading;
}

/** Loads the model if needed: { id, context, backend } (onProgress(done, total) meanwhile). */
export async function describeModel({ onProgress } = {}) {
  let model;
  try {
    model = await loaded({ onProgress });
  } catch (e) {
    loading = null;
    throw e;
  }
  if (!model.hasTokenizer) {
    // A chat needs text: refused at load, as a file that is no model is, not at the first message.
    loading = null;
    const name = model.config.raw.tokenizer_name;
    // The message reads "<where> has no tokenizer": loose files are named by the model they hold.
    const where = sourceName === CHOSEN_FILES ? `the model in the ${CHOSEN_FILES}` : sourceName;
    const why = noTokenizerMessage(where, model.config.vocabSize, typeof name === 'string' ? name : undefined);
    await model.dispose();
    throw new Error(`${why}: choose or drop its tokenizer.json together with the model's files`);
  }
  lastLoaded = { source, name: sourceName, options: loadOptions };
  const { runner } = model;
  const threads = runner.threads;
  const where =
    runner.backendName === 'webgpu'
      ? `WebGPU · ${runner.gpu?.adapterName || 'GPU'}`
      : threads
        ? `wasm · ${threads} thread${threads === 1 ? '' : 's'}`
        : 'in this tab';
  return { id: sourceName, context: model.contextLength, backend: where };
}

/** What setSource needs to load again the model that loaded last: { source, name, options }, or null. */
export function loadedSource() {
  return lastLoaded;
}

/**
 * The model seen through one prompt template ('auto', 'chatml', 'instruct', 'none'): the same
 * weights and workers (runner), another way of rendering messages, and its own conversation cache.
 */
function viewOf(model, template) {
  let v = views.get(template);
  if (!v) {
    for (const other of views.values()) other.session.dispose(); // one KV cache at a time
    views.clear();
    const format = resolvePromptFormat(template, {
      tokenizer: model.hasTokenizer ? model.tokenizer : null,
      configRaw: model.config.raw,
      path: model.path,
    });
    const view = new MptModel(model.runner, model.hasTokenizer ? model.tokenizer : null, format, model.path);
    v = { session: new ChatSession(view) };
    views.set(template, v);
  }
  return v;
}

function abortError() {
  return new DOMException('The reply was stopped.', 'AbortError');
}

/**
 * Streams one chat reply, as server-backend.js does: `messages` are chat messages (system prompt
 * first when there is one, the new user message last); settings = { temperature, topP, maxTokens,
 * template }. Yields { text } per piece, then { finish, usage }. Aborting `signal` stops the
 * generation between two tokens.
 */
export async function* streamChat({ messages, settings, signal }) {
  let ended;
  running = new Promise((resolve) => {
    ended = resolve;
  });
  try {
    yield* reply(await loaded(), messages, settings, signal);
  } finally {
    ended();
  }
}

async function* reply(model, messages, settings, signal) {
  const last = messages.at(-1);
  if (last?.role !== 'user') throw new Error('the conversation must end with a user message');
  const { session } = viewOf(model, settings.template ?? 'auto');
  // The conversation as the page holds it (a regenerated or restored history included): the
  // session feeds again only what differs from its cache, and drops the oldest turns to fit.
  session.messages = messages.slice(0, -1).map((m) => ({ role: m.role, content: m.content }));
  // Its reply room (at most half the context) follows max tokens; the generation itself ends
  // where the context does, so max tokens never runs past what the context has left.
  session.options.maxTokens = settings.maxTokens;
  const options = { maxTokens: settings.maxTokens, temperature: settings.temperature, topP: settings.topP, signal };
  if (settings.seed !== undefined) options.seed = settings.seed;
  const stream = session.send(last.content, options);
  for await (const chunk of stream) {
    if (chunk.text) yield { text: chunk.text };
  }
  const result = await stream.result;
  if (result.finishReason === 'abort' || signal?.aborted) throw abortError();
  yield {
    finish: result.finishReason,
    usage: { completion_tokens: result.tokens.length, dropped_messages: session.lastDropped },
  };
}
