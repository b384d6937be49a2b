/**
 * The peer for bench/serve.ts: llama.cpp (node-llama-cpp 3.21.1, its prebuilt CPU binary)
 * decoding 1, 4, 8, 16 sequences at once in one context — its own continuous batching — on a
 * GGUF file, with the same aggregate-decode definition as bench/serve.ts (tokens after each
 * sequence's first, over the span from the first first-token to the last end). No HTTP: this is
 * llama.cpp's batching alone, an upper bound for a server built on it.
 *
 *   node dist/bench/serve-llamacpp.js --model FILE.gguf [--clients 1,4,8,16] [--max-tokens 64]
 *        [--rounds 2] [--threads 2] [--temperature 1] [--out FILE]
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { getLlama, LlamaLogLevel, type Token } from 'node-llama-cpp';

function arg(name: string, dflt?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

async function main(): Promise<void> {
  const model = arg('model');
  if (!model) throw new Error('--model FILE.gguf is required');
  const clients = arg('clients', '1,4,8,16')!.split(',').map(Number);
  const maxTokens = Number(arg('max-tokens', '64'));
  const rounds = Number(arg('rounds', '2'));
  const threads = Number(arg('threads', String(availableParallelism())));
  const temperature = Number(arg('temperature', '1'));
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, progressLogs: false });
  const m = await llama.loadModel({ modelPath: model });
  const prompt = m.tokenize('The history of the city begins with a small settlement by the river, where');
  const results = [];
  for (const c of clients) {
    const runs: { agg: number; ttft: number[] }[] = [];
    for (let r = 0; r < rounds; r++) {
      const ctx = await m.createContext({
        sequences: c,
        contextSize: c * (prompt.length + maxTokens + 16),
        threads,
        batchSize: 512,
      });
      const seqs = Array.from({ length: c }, () => ctx.getSequence());
      const rs = await Promise.all(
        seqs.map(async (seq, i) => {
          const sentAt = performance.now();
          let firstAt = NaN;
          let tokens = 0;
          for await (const tok of seq.evaluate(prompt as Token[], { temperature, seed: 1000 * r + i })) {
            void tok;
            if (tokens++ === 0) firstAt = performance.now();
            if (tokens >= maxTokens) break;
          }
          return { sentAt, firstAt, endAt: performance.now(), tokens };
        }),
      );
      await ctx.dispose();
      const firstStart = Math.min(...rs.map((x) => x.firstAt));
      const lastEnd = Math.max(...rs.map((x) => x.endAt));
      runs.push({
        agg: rs.reduce((s, x) => s + x.tokens - 1, 0) / ((lastEnd - firstStart) / 1000),
        ttft: rs.map((x) => x.firstAt - x.sentAt),
      });
    }
    const ttft = runs.flatMap((x) => x.ttft);
    results.push({
      clients: c,
      aggregate_decode_tokens_per_s: Math.round(Math.max(...runs.map((x) => x.agg)) * 10) / 10,
      ttft_p50_ms: Math.round(percentile(ttft, 50)),
      ttft_p99_ms: Math.round(percentile(ttft, 99)),
    });
    process.stderr.write(`${JSON.stringify(results[results.length - 1])}\n`);
  }
  await m.dispose();
  const one = results.find((r) => r.clients === 1);
  const eight = results.find((r) => r.clients === 8);
  const report = {
    engine: 'llama.cpp (node-llama-cpp 3.21.1, prebuilt CPU)',
    model,
    threads,
    max_tokens: maxTokens,
    temperature,
    rounds,
    results,
    speedup_8_vs_1:
      one && eight
        ? Math.round((eight.aggregate_decode_tokens_per_s / one.aggregate_decode_tokens_per_s) * 100) / 100
        : null,
  };
  const text = JSON.stringify(report, null, 1);
  const out = arg('out');
  if (out) writeFileSync(out, text + '\n');
  process.stdout.write(text + '\n');
}

await main();
