/**
 * Time to first token of `mpt generate` on a model file: each repetition is a fresh Node process
 * (so process start, module loading, kernel compilation, weight loading, worker start-up and the
 * first forward pass are all included), run twice over:
 *   child:  the same steps as `mpt generate MODEL "Hello" -n 1` (loadModel with the default
 *           backend, then one streamed token), timestamped inside the process from its start
 *           (performance.now() counts from process start): load done, first token; peak RSS.
 *   cli:    the real command `node bin/mpt.js generate MODEL "Hello" -n 1 --quiet`, wall time
 *           from spawn to exit (an upper bound on its time to first token).
 * The first repetition is reported apart ("first") because it may read the file from disk;
 * the medians are over the others (file in the page cache).
 *   node dist/bench/run.js ttft MODEL [--reps 3] [--threads N]
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

interface ChildResult {
  load_ms: number;
  first_token_ms: number;
  peak_rss_bytes: number;
}

const REPO = fileURLToPath(new URL('../../', import.meta.url));

async function child(model: string, threads: number | undefined): Promise<void> {
  const { loadModel } = await import('../src/runtime/model.js');
  const m = await loadModel(model, threads === undefined ? {} : { threads });
  const load = performance.now();
  let first = NaN;
  const stream = m.stream('Hello', { maxTokens: 1 });
  for await (const chunk of stream) {
    void chunk;
    if (Number.isNaN(first)) first = performance.now();
  }
  await stream.result;
  const r: ChildResult = {
    load_ms: load,
    first_token_ms: first,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
  };
  await m.dispose();
  process.stdout.write(`${JSON.stringify(r)}\n`);
}

function runProcess(args: string[]): Promise<{ ms: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.on('error', reject);
    p.on('exit', (code) => {
      const ms = performance.now() - t0;
      if (code !== 0) reject(new Error(`${args.join(' ')} exited with ${code}`));
      else resolve({ ms, stdout: out });
    });
  });
}

const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length === 0 ? NaN : s.length % 2 ? s[s.length >> 1]! : (s[(s.length >> 1) - 1]! + s[s.length >> 1]!) / 2;
};

async function main(argv: string[]): Promise<void> {
  const threadsAt = argv.indexOf('--threads');
  const threads = threadsAt >= 0 ? Number(argv[threadsAt + 1]) : undefined;
  if (argv[0] === '--child') return child(argv[1]!, threads);
  const model = argv.find((a, i) => !a.startsWith('--') && !['--reps', '--threads'].includes(argv[i - 1] ?? ''));
  if (!model) throw new Error('usage: ttft MODEL [--reps N] [--threads N]');
  const repsAt = argv.indexOf('--reps');
  const reps = repsAt >= 0 ? Number(argv[repsAt + 1]) : 3;
  const self = fileURLToPath(import.meta.url);
  const th = threads === undefined ? [] : ['--threads', String(threads)];
  const runs: Array<ChildResult & { cli_ms: number }> = [];
  for (let r = 0; r <= reps; r++) {
    const c = await runProcess([self, '--child', model, ...th]);
    const res = JSON.parse(c.stdout.trim().split('\n').pop()!) as ChildResult;
    const cli = await runProcess(['bin/mpt.js', 'generate', model, 'Hello', '-n', '1', '--quiet', ...th]);
    runs.push({ ...res, cli_ms: cli.ms });
  }
  const rest = runs.slice(1);
  const pick = (k: keyof (typeof runs)[number]) => ({
    median: median(rest.map((x) => x[k])),
    min: Math.min(...rest.map((x) => x[k])),
    max: Math.max(...rest.map((x) => x[k])),
  });
  console.log(
    JSON.stringify(
      {
        model,
        threads: threads ?? 'default',
        reps,
        first: runs[0],
        warm: {
          load_ms: pick('load_ms'),
          first_token_ms: pick('first_token_ms'),
          cli_ms: pick('cli_ms'),
          peak_rss_bytes: pick('peak_rss_bytes'),
        },
        runs,
      },
      null,
      1,
    ),
  );
}

await main(process.argv.slice(2));
