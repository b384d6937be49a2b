/**
 * Serving benchmark: starts `mpt serve` as a child process (its own event loop, as in
 * production) and drives it with 1, 4, 8, 16 concurrent streaming clients over loopback.
 * Prints JSON: per concurrency, aggregate decode tokens/s, per-stream decode tokens/s, and
 * p50/p99 time to first token, and the clients' own CPU use (they run on the same machine); plus
 * the speed-up of 8 streams over 1: best over best, and the median of the per-round ratios.
 *
 *   node dist/bench/serve.js [--model PATH] [--backend wasm|reference|auto] [--threads N]
 *        [--clients 1,4,8,16] [--max-tokens 64] [--rounds 2] [--temperature 1] [--top-p 1] [--out FILE]
 *
 * Default model: models/default/, else the tiny-neox-vocab test fixture. The end-of-text token
 * (id 0 in GPT-NeoX) gets a -100 logit bias so every stream generates exactly --max-tokens.
 * Set MPT_BENCH_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") to pass flags to the server process.
 */
import { spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import { existsSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface Args {
  model: string;
  backend: string;
  threads?: number;
  clients: number[];
  maxTokens: number;
  rounds: number;
  temperature: number;
  topP: number;
  out?: string;
}

function parse(argv: string[]): Args {
  const get = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const dflt = existsSync(`${root}models/default/config.json`)
    ? `${root}models/default`
    : `${root}test/fixtures/tiny-neox-vocab`;
  return {
    model: get('model') ?? dflt,
    backend: get('backend') ?? 'auto',
    threads: get('threads') ? Number(get('threads')) : undefined,
    clients: (get('clients') ?? '1,4,8,16').split(',').map(Number),
    maxTokens: Number(get('max-tokens') ?? 64),
    rounds: Number(get('rounds') ?? 2),
    temperature: Number(get('temperature') ?? 1),
    topP: Number(get('top-p') ?? 1),
    out: get('out'),
  };
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i]!;
}

interface StreamResult {
  sentAt: number;
  firstAt: number;
  endAt: number;
  tokens: number;
}

const agent = new Agent({ keepAlive: true, maxSockets: 64 });

/**
 * One streaming request over node:http, parsed as lightly as a load generator should be (the
 * clients share the 2 cores with the server): events are split on blank lines, the first token is
 * the first event carrying `"finish_reason":null`, and only the usage event is parsed as JSON.
 */
function stream(
  url: string,
  model: string,
  prompt: string,
  a: Pick<Args, 'temperature' | 'topP'>,
  maxTokens: number,
  seed: number,
): Promise<StreamResult> {
  const sentAt = performance.now();
  const body = JSON.stringify({
    model,
    prompt,
    max_tokens: maxTokens,
    temperature: a.temperature,
    top_p: a.topP,
    seed,
    stream: true,
    stream_options: { include_usage: true },
    logit_bias: { 0: -100 },
  });
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/v1/completions`,
      {
        method: 'POST',
        agent,
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
      },
      (res) => {
        res.setEncoding('utf8');
        let buf = '';
        let firstAt = NaN;
        let tokens = 0;
        let failure: Error | null = res.statusCode === 200 ? null : new Error(`HTTP ${res.statusCode}`);
        res.on('data', (chunk: string) => {
          buf += chunk;
          for (let cut = buf.indexOf('\n\n'); cut >= 0; cut = buf.indexOf('\n\n')) {
            const ev = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            if (failure || !ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
            if (Number.isNaN(firstAt) && ev.includes('"finish_reason":null')) firstAt = performance.now();
            if (ev.includes('"usage":{') || ev.includes('"error"')) {
              const j = JSON.parse(ev.slice(6));
              if (j.error) failure = new Error(j.error.message);
              else if (j.usage) tokens = j.usage.completion_tokens;
            }
          }
        });
        res.on('end', () =>
          failure ? reject(failure) : resolve({ sentAt, firstAt, endAt: performance.now(), tokens }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function main(): Promise<void> {
  const a = parse(process.argv.slice(2));
  const maxClients = Math.max(...a.clients);
  const bin = fileURLToPath(new URL('../../bin/mpt.js', import.meta.url));
  const args = [
    ...(process.env.MPT_BENCH_NODE_ARGS ? process.env.MPT_BENCH_NODE_ARGS.split(' ') : []),
    bin,
    'serve',
    a.model,
    '--port',
    '0',
    '--quiet',
    '--parallel',
    String(maxClients),
    '--queue',
    String(maxClients * 2),
    '--backend',
    a.backend,
  ];
  if (a.threads) args.push('--threads', String(a.threads));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
        const m = /listening on (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.on('exit', (code) => reject(new Error(`server exited (${code}): ${stderr}`)));
    });
    const card = (await (await fetch(`${url}/v1/models`)).json()).data[0];
    const prompt = 'The history of the city begins with a small settlement by the river, where';
    await stream(url, card.id, prompt, a, 8, 0); // warm-up
    // Rounds are interleaved (1, 4, 8, 16 clients, then again) so that the shared host's slow
    // drifts, which move single runs by ±30 %, fall on every concurrency alike.
    type Run = { agg: number; perStream: number; ttft: number[]; clientCpu: number };
    const runs = new Map<number, Run[]>(a.clients.map((c) => [c, []]));
    for (let r = 0; r < a.rounds; r++) {
      for (const c of a.clients) {
        // The clients share the machine with the server: their CPU use is reported beside the rates.
        const cpu0 = process.cpuUsage(),
          wall0 = performance.now();
        const rs = await Promise.all(
          Array.from({ length: c }, (_, i) => stream(url, card.id, prompt, a, a.maxTokens, 1000 * r + i)),
        );
        const cpu = process.cpuUsage(cpu0);
        const clientCpu = (cpu.user + cpu.system) / 1000 / (performance.now() - wall0);
        const firstStart = Math.min(...rs.map((x) => x.firstAt));
        const lastEnd = Math.max(...rs.map((x) => x.endAt));
        // Decode phase: tokens after each stream's first, over the span from the first first-token to the last end.
        const decoded = rs.reduce((s, x) => s + x.tokens - 1, 0);
        runs.get(c)!.push({
          agg: decoded / ((lastEnd - firstStart) / 1000),
          perStream: rs.reduce((s, x) => s + (x.tokens - 1) / ((x.endAt - x.firstAt) / 1000), 0) / rs.length,
          ttft: rs.map((x) => x.firstAt - x.sentAt),
          clientCpu,
        });
      }
    }
    const results = a.clients.map((c) => {
      const rr = runs.get(c)!;
      const ttft = rr.flatMap((x) => x.ttft);
      const row = {
        clients: c,
        aggregate_decode_tokens_per_s: Math.round(Math.max(...rr.map((x) => x.agg)) * 10) / 10,
        aggregate_decode_tokens_per_s_median:
          Math.round(
            percentile(
              rr.map((x) => x.agg),
              50,
            ) * 10,
          ) / 10,
        per_stream_decode_tokens_per_s: Math.round((rr.reduce((s, x) => s + x.perStream, 0) / rr.length) * 10) / 10,
        ttft_p50_ms: Math.round(percentile(ttft, 50)),
        ttft_p99_ms: Math.round(percentile(ttft, 99)),
        client_cpu_percent: Math.round((rr.reduce((s, x) => s + x.clientCpu, 0) / rr.length) * 100),
      };
      process.stderr.write(`${JSON.stringify(row)}\n`);
      return row;
    });
    // 8 streams over 1 within each round (runs minutes apart see different hosts), then the median.
    const r1 = runs.get(1),
      r8 = runs.get(8);
    const perRound = r1 && r8 ? r8.map((x, i) => x.agg / r1[i]!.agg) : [];
    const one = results.find((r) => r.clients === 1);
    const eight = results.find((r) => r.clients === 8);
    const report = {
      model: card.id,
      backend: card.backend,
      d_model: card.d_model,
      n_layers: card.n_layers,
      max_tokens: a.maxTokens,
      temperature: a.temperature,
      top_p: a.topP,
      rounds: a.rounds,
      results,
      speedup_8_vs_1:
        one && eight
          ? Math.round((eight.aggregate_decode_tokens_per_s / one.aggregate_decode_tokens_per_s) * 100) / 100
          : null,
      speedup_8_vs_1_per_round: perRound.map((x) => Math.round(x * 100) / 100),
      speedup_8_vs_1_median: perRound.length ? Math.round(percentile(perRound, 50) * 100) / 100 : null,
    };
    const text = JSON.stringify(report, null, 1);
    if (a.out) writeFileSync(a.out, text + '\n');
    process.stdout.write(text + '\n');
  } finally {
    child.kill('SIGTERM');
  }
}

await main();
