// How the chat page reaches a model: this server's OpenAI-style HTTP API. Everything that knows
// about URLs, headers and server-sent events is here, so another way of reaching a model (one
// running in the page itself) can replace this module with the same two functions.

/** Request headers, with the API key as a bearer token where one is set. */
function headers(apiKey) {
  const h = { 'Content-Type': 'application/json' };
  const key = (apiKey ?? '').trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function errorOf(response) {
  const body = await response.json().catch(() => null);
  return new Error(body?.error?.message ?? `HTTP ${response.status}`);
}

/** The model this server runs: { id, context, backend }. Throws with the server's message. */
export async function describeModel({ apiKey } = {}) {
  const r = await fetch('/v1/models', { headers: headers(apiKey) });
  if (!r.ok) throw await errorOf(r);
  const m = (await r.json()).data[0];
  return { id: m.id, context: m.context_length ?? null, backend: m.backend ?? '' };
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
      for (let cut = buf.indexOf('\n\n'); cut >= 0; cut = buf.indexOf('\n\n')) {
        const event = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const data = event
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).trimStart())
          .join('\n');
        if (!data) continue;
        if (data === '[DONE]') return;
        yield JSON.parse(data);
      }
      if (signal?.aborted) return;
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * Streams one chat reply. `messages` are OpenAI chat messages (system prompt included);
 * `settings` = { temperature, topP, maxTokens }. Yields { text } for each piece of the reply,
 * then at most one { finish, usage } (usage: the server's token counts, or null). Aborting
 * `signal` cancels the generation on the server.
 */
export async function* streamChat({ model, messages, settings, apiKey, signal }) {
  const r = await fetch('/v1/chat/completions', {
    method: 'POST',
    headers: headers(apiKey),
    signal,
    body: JSON.stringify({
      model,
      messages,
      stream: true,
      stream_options: { include_usage: true },
      temperature: settings.temperature,
      top_p: settings.topP,
      max_tokens: settings.maxTokens,
      // This server's extension: drop the oldest turns when the conversation outgrows the
      // context, and cap max_tokens at what is left (the shipped model's context is 256).
      truncate: 'oldest_turns',
    }),
  });
  if (!r.ok) throw await errorOf(r);
  let finish = null;
  let usage = null;
  for await (const ev of sseEvents(r, signal)) {
    if (ev.error) throw new Error(ev.error.message);
    if (ev.usage) usage = ev.usage;
    const choice = ev.choices?.[0];
    if (!choice) continue;
    if (choice.delta?.content) yield { text: choice.delta.content };
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  yield { finish, usage };
}
