// The chat page: sends the conversation to a model and renders the reply's markdown as it
// arrives. One page, two ways of reaching a model: served by `mpt serve`, through that server's
// /v1/chat/completions (server-backend.js); served by `mpt web`, which writes the app's
// configuration into the page (<script id="mpt-web">), by running the model in this tab
// (local-backend.js). Plain browser JavaScript, no dependencies, no build step.

import { renderMarkdown } from './markdown.js';

/** The JSON a server wrote into the page as <script type="application/json" id=ID>, or null. */
function pageJson(id) {
  const el = document.getElementById(id);
  if (!el) return null;
  try {
    return JSON.parse(el.textContent);
  } catch {
    return null;
  }
}

/** `mpt web`'s configuration ({ model, name }), or null under `mpt serve`. */
const webConfig = pageJson('mpt-web');
/** The settings before the user changes them ({ temperature, topP, maxTokens }): the CLI's defaults. */
const defaults = pageJson('mpt-defaults') ?? {};
const local = webConfig !== null;
const backend = local ? await import('./local-backend.js') : await import('./server-backend.js');

const $ = (id) => document.getElementById(id);
const els = {
  model: $('model'),
  tps: $('tps'),
  system: $('system'),
  temperature: $('temperature'),
  temperatureValue: $('temperature-value'),
  topP: $('top-p'),
  topPValue: $('top-p-value'),
  maxTokens: $('max-tokens'),
  apiKey: $('api-key'),
  template: $('template'),
  progress: $('load-progress'),
  modelUrl: $('model-url'),
  modelLoad: $('model-load'),
  modelFiles: $('model-files'),
  modelFolder: $('model-folder'),
  clear: $('clear'),
  messages: $('messages'),
  composer: $('composer'),
  prompt: $('prompt'),
  send: $('send'),
  stop: $('stop'),
  status: $('status'),
  settingsToggle: $('settings-toggle'),
};

/** The conversation so far, as OpenAI messages (without the system prompt). */
let history = [];
let modelId = null;
/** AbortController of the reply being streamed, if any. */
let inFlight = null;

const SETTINGS = ['system', 'temperature', 'topP', 'maxTokens', 'apiKey', 'template'];

function loadSettings() {
  for (const k of ['temperature', 'topP', 'maxTokens']) {
    if (typeof defaults[k] === 'number') els[k].value = String(defaults[k]);
  }
  for (const k of SETTINGS) {
    const v = localStorage.getItem(`mpt-chat.${k}`);
    if (v !== null) els[k].value = v;
  }
  showSliderValues();
}

function saveSettings() {
  for (const k of SETTINGS) localStorage.setItem(`mpt-chat.${k}`, els[k].value);
}

function showSliderValues() {
  els.temperatureValue.textContent = Number(els.temperature.value).toFixed(2);
  els.topPValue.textContent = Number(els.topP.value).toFixed(2);
}

const HISTORY_KEY = 'mpt-chat.history';

/** The conversation survives a reload. */
function saveHistory() {
  try {
    localStorage.setItem(HISTORY_KEY, JSON.stringify(history));
  } catch {
    // Storage full or disabled: the conversation just is not kept.
  }
}

function loadHistory() {
  let saved = [];
  try {
    saved = JSON.parse(localStorage.getItem(HISTORY_KEY) ?? '[]');
  } catch {
    saved = [];
  }
  if (!Array.isArray(saved)) return;
  history = saved.filter((m) => m && (m.role === 'user' || m.role === 'assistant') && typeof m.content === 'string');
  let asked = '';
  for (const m of history) {
    addMessage(m.role, m.content, asked);
    if (m.role === 'user') asked = m.content;
  }
}

function setStatus(text) {
  els.status.textContent = text;
}

/** Raw text of each message element (what copy puts on the clipboard). */
const rawText = new WeakMap();

/** Shows a reply's markdown; the user's own messages stay plain text. */
function showText(div, text) {
  const body = div.querySelector('.body');
  if (div.classList.contains('assistant') && !div.classList.contains('error')) body.innerHTML = renderMarkdown(text);
  else body.textContent = text;
}

/**
 * A message in the list. An assistant reply also remembers its raw markdown (for copy) and the
 * user text it answers (for regenerate), and gets those two buttons.
 */
function addMessage(role, text, prompt = null) {
  const div = document.createElement('div');
  div.className = `message ${role}`;
  const body = document.createElement('div');
  body.className = 'body';
  div.append(body);
  if (role === 'assistant') {
    div.dataset.prompt = prompt ?? '';
    const actions = document.createElement('div');
    actions.className = 'actions';
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className = 'copy';
    copy.textContent = 'Copy';
    copy.title = 'Copy this reply (markdown) to the clipboard';
    copy.addEventListener('click', () => void copyReply(div, copy));
    const again = document.createElement('button');
    again.type = 'button';
    again.className = 'regenerate';
    again.textContent = 'Regenerate';
    again.title = 'Ask the last message again for a new reply';
    again.addEventListener('click', () => void regenerate(div));
    actions.append(copy, again);
    div.append(actions);
  }
  setReply(div, text);
  els.messages.append(div);
  els.messages.scrollTop = els.messages.scrollHeight;
  return div;
}

function setReply(div, text) {
  rawText.set(div, text);
  showText(div, text);
}

async function copyReply(div, button) {
  try {
    await navigator.clipboard.writeText(rawText.get(div) ?? '');
    button.textContent = 'Copied';
  } catch (e) {
    button.textContent = 'Copy failed';
    setStatus(`Could not copy: ${e.message}`);
  }
  setTimeout(() => {
    button.textContent = 'Copy';
  }, 1500);
}

function setMeta(div, text) {
  let meta = div.querySelector('.meta');
  if (!meta) {
    meta = document.createElement('span');
    meta.className = 'meta';
    const actions = div.querySelector('.actions');
    if (actions) actions.before(meta);
    else div.append(meta);
  }
  meta.textContent = text;
}

/** Load progress of a model in the tab (bytes done of total), on the progress bar. */
function showProgress(done, total) {
  els.progress.hidden = false;
  els.progress.dataset.bytes = String(total);
  els.progress.value = total > 0 ? done / total : 0;
  setStatus(`Loading the model… ${total > 0 ? Math.floor((100 * done) / total) : 0} %`);
}

/** Connects to the model (under `mpt web`: loads it in the tab, with progress). */
async function loadModel() {
  modelId = null;
  if (local) {
    els.model.textContent = 'loading…';
    setBusy(true, false);
  }
  try {
    const m = await backend.describeModel({ apiKey: els.apiKey.value, onProgress: showProgress });
    modelId = m.id;
    els.model.textContent = `${m.id} · context ${m.context ?? '?'} · ${m.backend}`;
    els.progress.value = 1;
    setStatus('');
  } catch (e) {
    els.model.textContent = local ? 'no model' : 'not connected';
    setStatus(local ? `Could not load the model: ${e.message}` : `Could not list models: ${e.message}`);
  } finally {
    els.progress.hidden = true;
    if (local) setBusy(false);
  }
}

/** Under `mpt web`: another model, from a URL or from Files (a .gguf, or a folder's files). */
async function switchModel(source, name) {
  if (inFlight) inFlight.abort();
  const previous = backend.loadedSource();
  await backend.setSource(source, name);
  await loadModel();
  if (modelId || !previous) return;
  // A wrong file or URL must not leave the page without a model: the one before comes back (from
  // its files or the model cache), and the message about the failed one stays.
  const failed = els.status.textContent;
  await backend.setSource(previous.source, previous.name, previous.options);
  await loadModel();
  setStatus(modelId ? `${failed} (still using ${previous.name})` : failed);
}

function filesName(files) {
  const gguf = files.find((f) => f.name.toLowerCase().endsWith('.gguf'));
  if (gguf) return gguf.name;
  const rel = files[0]?.webkitRelativePath ?? '';
  return rel.includes('/') ? rel.slice(0, rel.indexOf('/')) : backend.CHOSEN_FILES;
}

/** The Files of a dropped folder (its own files; a model folder has no subfolders that matter). */
function folderFiles(entry) {
  return new Promise((resolve, reject) => {
    const reader = entry.createReader();
    const files = [];
    const more = () =>
      reader.readEntries((entries) => {
        if (entries.length === 0) {
          Promise.all(files).then(resolve, reject);
          return;
        }
        for (const e of entries) if (e.isFile) files.push(new Promise((res, rej) => e.file(res, rej)));
        more();
      }, reject);
    more();
  });
}

async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  const folder = entries.find((e) => e.isDirectory);
  if (folder) return { files: await folderFiles(folder), name: folder.name };
  const files = [...dataTransfer.files];
  return { files, name: filesName(files) };
}

function setBusy(busy, stoppable = busy) {
  els.send.disabled = busy;
  els.stop.disabled = !stoppable;
  document.body.classList.toggle('busy', busy);
}

/** A new user turn, answered. */
async function send(text) {
  if (!modelId) await loadModel();
  if (!modelId) return;
  history.push({ role: 'user', content: text });
  addMessage('user', text);
  await respond(text);
}

/** Drops the last reply (and the turn it answers) and asks that turn again. */
async function regenerate(div) {
  if (inFlight || div !== els.messages.lastElementChild) return;
  const prompt = div.dataset.prompt;
  if (history.at(-1)?.role === 'assistant') history.pop();
  if (history.at(-1)?.role === 'user') history.pop();
  const asked = div.previousElementSibling;
  div.remove();
  if (asked?.classList.contains('user')) asked.remove();
  await send(prompt);
}

/** Streams the reply to the conversation so far (which ends with the user's `prompt`). */
async function respond(prompt) {
  const div = addMessage('assistant', '', prompt);
  div.classList.add('streaming');
  const messages = [];
  const system = els.system.value.trim();
  if (system) messages.push({ role: 'system', content: system });
  messages.push(...history);
  const controller = new AbortController();
  inFlight = controller;
  setBusy(true);
  setStatus('Waiting for the first token…');
  const started = performance.now();
  let firstAt = null;
  let chunks = 0;
  let usage = null;
  let finish = null;
  let reply = '';
  // Markdown is rendered at most once a frame, however fast the tokens come.
  let frame = 0;
  const render = () => {
    frame = 0;
    setReply(div, reply);
    els.messages.scrollTop = els.messages.scrollHeight;
  };
  const showSpeed = (tokens) => {
    if (firstAt === null || tokens < 2) return;
    const secs = (performance.now() - firstAt) / 1000;
    if (secs > 0) els.tps.textContent = `${((tokens - 1) / secs).toFixed(1)} tok/s`;
  };
  try {
    const stream = backend.streamChat({
      model: modelId,
      messages,
      apiKey: els.apiKey.value,
      signal: controller.signal,
      settings: {
        temperature: Number(els.temperature.value),
        topP: Number(els.topP.value),
        // An empty or zero field asks for the default.
        maxTokens: Math.max(1, Math.floor(Number(els.maxTokens.value) || defaults.maxTokens)),
        template: els.template.value,
      },
    });
    for await (const piece of stream) {
      if (piece.text) {
        if (firstAt === null) {
          firstAt = performance.now();
          setStatus('');
        }
        chunks++;
        reply += piece.text;
        frame ||= requestAnimationFrame(render);
        showSpeed(chunks);
      } else {
        finish = piece.finish;
        usage = piece.usage;
      }
    }
    cancelAnimationFrame(frame);
    render();
    const tokens = usage?.completion_tokens ?? chunks;
    showSpeed(tokens);
    const ttft = firstAt === null ? null : ((firstAt - started) / 1000).toFixed(2);
    const cut = finish === 'length' ? ' · stopped at max tokens' : '';
    const dropped = usage?.dropped_messages ? ` · ${usage.dropped_messages} old messages left out` : '';
    setMeta(div, `${tokens} tokens${ttft ? ` · first token ${ttft} s` : ''} · ${els.tps.textContent}${cut}${dropped}`);
    history.push({ role: 'assistant', content: reply });
    saveHistory();
  } catch (e) {
    cancelAnimationFrame(frame);
    if (controller.signal.aborted) {
      render();
      setMeta(div, 'stopped');
      if (reply) history.push({ role: 'assistant', content: reply });
      saveHistory();
    } else {
      div.classList.add('error');
      setReply(div, reply || `Error: ${e.message}`);
      if (reply) setMeta(div, `Error: ${e.message}`);
      // Drop the unanswered turn so the next one does not repeat it.
      history.pop();
    }
  } finally {
    div.classList.remove('streaming');
    inFlight = null;
    setBusy(false);
    setStatus('');
  }
}

els.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = els.prompt.value.trim();
  if (!text || inFlight) return;
  els.prompt.value = '';
  void send(text);
});

els.prompt.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    els.composer.requestSubmit();
  }
});

els.stop.addEventListener('click', () => inFlight?.abort());

// On a narrow screen the settings panel is folded away behind this button (see style.css).
els.settingsToggle.addEventListener('click', () => {
  const open = document.body.classList.toggle('settings-open');
  els.settingsToggle.setAttribute('aria-expanded', String(open));
});

els.clear.addEventListener('click', () => {
  inFlight?.abort();
  history = [];
  saveHistory();
  els.messages.replaceChildren();
  els.tps.textContent = '– tok/s';
});

for (const k of SETTINGS) els[k].addEventListener('change', saveSettings);
els.temperature.addEventListener('input', showSliderValues);
els.topP.addEventListener('input', showSliderValues);
els.apiKey.addEventListener('change', () => void loadModel());

if (local) {
  document.body.classList.add('local');
  // ?model=URL loads another model; ?threads=N sets the wasm backend's worker count (default: all
  // cores); ?backend=wasm|webgpu chooses the backend (default: WebGPU on a hardware adapter, else wasm).
  const query = new URLSearchParams(location.search);
  const asked = query.get('model');
  const url = asked ?? webConfig.model;
  const name = asked ? (asked.split('/').filter(Boolean).at(-1) ?? asked) : webConfig.name;
  const threads = Number(query.get('threads'));
  const options = Number.isInteger(threads) && threads > 0 ? { threads } : {};
  const chosen = query.get('backend');
  if (chosen === 'wasm' || chosen === 'webgpu') options.backend = chosen;
  await backend.setSource(url, name, options);
  els.modelUrl.value = asked ?? '';
  els.modelLoad.addEventListener('click', () => {
    const u = els.modelUrl.value.trim();
    if (u) void switchModel(u, u.split('/').filter(Boolean).at(-1) ?? u);
  });
  for (const input of [els.modelFiles, els.modelFolder]) {
    input.addEventListener('change', () => {
      const files = [...input.files];
      if (files.length) void switchModel(files, filesName(files));
    });
  }
  document.addEventListener('dragover', (e) => {
    e.preventDefault();
    document.body.classList.add('dropping');
  });
  document.addEventListener('dragleave', () => document.body.classList.remove('dropping'));
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    document.body.classList.remove('dropping');
    droppedFiles(e.dataTransfer).then(
      ({ files, name }) => (files.length ? switchModel(files, name) : undefined),
      (err) => setStatus(`Could not read the dropped files: ${err.message}`),
    );
  });
  // The app's files stay available offline (sw.js); the model's bytes are the engine's to keep.
  navigator.serviceWorker?.register('/sw.js').catch((e) => console.info(`mpt: no offline copy: ${e.message}`));
}

loadSettings();
loadHistory();
void loadModel();
