// The chat page: talks to this server's /v1/chat/completions with stream: true and renders the
// reply as its server-sent events arrive. Plain browser JavaScript, no dependencies.

const $ = (id) => document.getElementById(id);
const els = {
  model: $('model'), tps: $('tps'), system: $('system'), temperature: $('temperature'),
  temperatureValue: $('temperature-value'), topP: $('top-p'), topPValue: $('top-p-value'),
  maxTokens: $('max-tokens'), apiKey: $('api-key'), clear: $('clear'), messages: $('messages'),
  composer: $('composer'), prompt: $('prompt'), send: $('send'), stop: $('stop'), status: $('status'),
};

/** The conversation so far, as OpenAI messages (without the system prompt). */
let history = [];
let modelId = null;
/** AbortController of the reply being streamed, if any. */
let inFlight = null;

const SETTINGS = ['system', 'temperature', 'topP', 'maxTokens', 'apiKey'];

function loadSettings() {
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
  for (const m of history) addMessage(m.role, m.content);
}

function headers() {
  const h = { 'Content-Type': 'application/json' };
  const key = els.apiKey.value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function setStatus(text) {
  els.status.textContent = text;
}

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = `message ${role}`;
  const body = document.createElement('span');
  body.className = 'body';
  body.textContent = text;
  div.append(body);
  els.messages.append(div);
  els.messages.scrollTop = els.messages.scrollHeight;
  return div;
}

function setMeta(div, text) {
  let meta = div.querySelector('.meta');
  if (!meta) {
    meta = document.createElement('span');
    meta.className = 'meta';
    div.append(meta);
  }
  meta.textContent = text;
}

async function loadModel() {
  try {
    const r = await fetch('/v1/models', { headers: headers() });
    const body = await r.json();
    if (!r.ok) throw new Error(body?.error?.message ?? `HTTP ${r.status}`);
    modelId = body.data[0].id;
    els.model.textContent = `${modelId} · context ${body.data[0].context_length ?? '?'} · ${body.data[0].backend ?? ''}`;
    setStatus('');
  } catch (e) {
    els.model.textContent = 'not connected';
    setStatus(`Could not list models: ${e.message}`);
  }
}

/** Yields the JSON payload of each `data:` event of a server-sent event stream. */
async function* sseEvents(response, signal) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const data = event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
        if (!data) continue;
        if (data === '[DONE]') return;
        yield JSON.parse(data);
      }
      if (signal.aborted) return;
    }
  } finally {
    reader.releaseLock();
  }
}

function setBusy(busy) {
  els.send.disabled = busy;
  els.stop.disabled = !busy;
}

async function send(text) {
  if (!modelId) await loadModel();
  if (!modelId) return;
  history.push({ role: 'user', content: text });
  addMessage('user', text);
  const div = addMessage('assistant', '');
  div.classList.add('streaming');
  const body = div.querySelector('.body');
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
  const showSpeed = (tokens) => {
    if (firstAt === null || tokens < 2) return;
    const secs = (performance.now() - firstAt) / 1000;
    if (secs > 0) els.tps.textContent = `${((tokens - 1) / secs).toFixed(1)} tok/s`;
  };
  try {
    const r = await fetch('/v1/chat/completions', {
      method: 'POST',
      headers: headers(),
      signal: controller.signal,
      body: JSON.stringify({
        model: modelId,
        messages,
        stream: true,
        stream_options: { include_usage: true },
        temperature: Number(els.temperature.value),
        top_p: Number(els.topP.value),
        max_tokens: Math.max(1, Math.floor(Number(els.maxTokens.value) || 256)),
        // This server's extension: drop the oldest turns when the conversation outgrows the
        // context, and cap max_tokens at what is left (the shipped model's context is 256).
        truncate: 'oldest_turns',
      }),
    });
    if (!r.ok) {
      const err = await r.json().catch(() => null);
      throw new Error(err?.error?.message ?? `HTTP ${r.status}`);
    }
    for await (const ev of sseEvents(r, controller.signal)) {
      if (ev.error) throw new Error(ev.error.message);
      if (ev.usage) usage = ev.usage;
      const choice = ev.choices?.[0];
      if (!choice) continue;
      const piece = choice.delta?.content;
      if (piece) {
        if (firstAt === null) {
          firstAt = performance.now();
          setStatus('');
        }
        chunks++;
        reply += piece;
        body.textContent = reply;
        els.messages.scrollTop = els.messages.scrollHeight;
        showSpeed(chunks);
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
    const tokens = usage?.completion_tokens ?? chunks;
    showSpeed(tokens);
    const ttft = firstAt === null ? null : ((firstAt - started) / 1000).toFixed(2);
    setMeta(div, `${tokens} tokens${ttft ? ` · first token ${ttft} s` : ''} · ${els.tps.textContent}${finish === 'length' ? ' · stopped at max tokens' : ''}`);
    history.push({ role: 'assistant', content: reply });
    saveHistory();
  } catch (e) {
    if (controller.signal.aborted) {
      setMeta(div, 'stopped');
      if (reply) history.push({ role: 'assistant', content: reply });
      saveHistory();
    } else {
      div.classList.add('error');
      body.textContent = reply || `Error: ${e.message}`;
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

loadSettings();
loadHistory();
void loadModel();
