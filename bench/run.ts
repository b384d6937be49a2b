/**
 * Benchmark dispatcher (`npm run bench -- [name] [args]`), prints JSON.
 *   kernels [K N M]       single-thread kernel micro-benchmarks (bench/kernels.ts)
 *   model [mpt bench args] pp/tg of a random-weight model or a model path (same as `mpt bench --json`)
 *   make-gguf SHAPE TYPE OUT [--layers N] [--weight-scale F]   a random-weight GGUF of a bench shape, for llama.cpp (bench/make-gguf.ts)
 *   ttft MODEL [...]      time from process start to the first generated token, peak RSS (bench/ttft.ts)
 *   train [threads]       training tokens/s of a fixed small config (bench/train.ts)
 *   batched [...]         B sequences decoding together, B = 1..16: step time, tok/s, speed-up (bench/batched.ts)
 *   serve [...]           server: aggregate decode tok/s and TTFT with 1/4/8/16 clients (bench/serve.ts)
 *   serve-llamacpp [...]  the same with llama.cpp's own batching of parallel sequences (bench/serve-llamacpp.ts)
 *   long-context [...]    StoryWriter-shaped model, 4k..100k-token prompts: time and peak RSS (bench/long-context.ts)
 *   kv-quality [...]      KL of f16 / q8_0 KV caches vs f32 on the fixtures (bench/kv-quality.ts)
 *   quant-kl [...]        KL of quantized weights vs f32 on the default model, ours and llama.cpp's (bench/quant-kl.ts)
 *   kernel-ab A.wasm B.wasm  two kernel builds in one process, calls alternated: same bits? time of each (bench/kernel-ab.ts)
 *   dot-ab [--reps N]        the dot-add kernel build against the relaxed one, in Node and headless Chromium (bench/dot-ab.ts)
 *   kquant-step [...]     a 7B-shaped q4_K decode step on one thread, plain vs q4_Kx4 weights, alternated (bench/kquant-step.ts)
 *   layout-ab FILE        a model's decode steps on plain q4_K rows and on q4_Kx4 groups, one process, alternated, CPU time and per-op work (bench/layout-ab.ts)
 *   decode-ab A.wasm B.wasm  decode-sized q4_0 / q8_0 products (1–3 rows, 1B and 7B shapes) of two builds, alternated, CPU time (bench/decode-ab.ts)
 *   kprompt-ab A.wasm B.wasm  q4_K / q5_K / q6_K prompt products (4–128 rows, 1B and 7B shapes; --path, --type q5_k|q6_k) of two builds or paths, alternated, CPU time (bench/kprompt-ab.ts)
 *   browser FILE.gguf [...]  headless Chromium vs `mpt bench` on the same file, alternated: tok/s ratios, load, memory (bench/browser.ts)
 *   vs-llamacpp FILE… [...]  `mpt bench` and native llama-bench alternately on the same GGUF files, ratios (bench/vs-llamacpp.ts)
 *   profile [...]         per-operation times of a decode step and a prompt chunk, inside the workers (bench/profile.ts)
 *   loop-mix LISTING      the loops of one function's x64 code (V8 or perf annotate listing): instructions, vector ALU by width (bench/loop-mix.ts)
 *   read-bandwidth [...]  read bandwidth of T threads streaming a wasm memory (bench/read-bandwidth.ts)
 *   step-series ROOT…     per-step decode times of builds in fresh processes run in turn, warm-up included (bench/step-series.ts)
 *   logits-ab A B --model F  one model through two builds in one process: prompt and decode logits compared bit for bit (bench/logits-ab.ts)
 *   step-ab VARIANT…       decode steps (or prompt chunks) of builds / env settings in one process, blocks alternated: wall, CPU, sleeps, the caller's time on a core (bench/step-ab.ts)
 *   step-instructions ROOT…  instructions a decode step executes (callgrind): wasm kernels, V8 builtins (interpreted JS), GC (bench/step-instructions.ts)
 *   json-mask [ROUNDS] [STEPS] JSON-constraint masks of new states: the trie walk before, now, and by token classes, alternated (bench/json-mask.ts)
 *   tokenize-long [...]   one long word: tokenizers.js's merge loop vs PairMerger, alternated, same ids (bench/tokenize-long.ts)
 *   server-stall [...]    the longest event-loop stall of one request at the body limit or at the limits of n, logprobs, echo, stop, logit_bias, per kind and chat format, a trivial request as the floor (bench/server-stall.ts)
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runKernelBench } from './kernels.js';

/** Benchmarks that are programs of their own (bench/NAME.ts). */
const PROGRAMS = [
  'ttft',
  'train',
  'batched',
  'serve',
  'serve-llamacpp',
  'long-context',
  'kv-quality',
  'quant-kl',
  'kernel-ab',
  'dot-ab',
  'decode-ab',
  'kquant-step',
  'layout-ab',
  'kprompt-ab',
  'browser',
  'vs-llamacpp',
  'read-bandwidth',
  'loop-mix',
  'profile',
  'step-series',
  'step-ab',
  'logits-ab',
  'step-instructions',
  'tokenize-long',
  'server-stall',
  'json-mask',
];

const [name = 'kernels', ...rest] = process.argv.slice(2);
if (name === 'kernels') {
  const [K, N, M] = rest.map(Number);
  console.log(
    JSON.stringify({ results: runKernelBench({ K: K || undefined, N: N || undefined, M: M || undefined }) }, null, 1),
  );
} else if (name === 'model') {
  const bench = await import('../src/cli/commands/bench.js');
  process.exitCode = await bench.run([...rest, '--json']);
} else if (name === 'make-gguf') {
  const { makeGguf } = await import('./make-gguf.js');
  const li = rest.indexOf('--layers');
  const layers = li >= 0 ? Number(rest.splice(li, 2)[1]) : 0;
  const si = rest.indexOf('--weight-scale');
  const weightScale = si >= 0 ? Number(rest.splice(si, 2)[1]) : 1;
  const [shape, type, out] = rest;
  if (!shape || !type || !out) {
    // no default output: a bare call once overwrote a benchmark file in /tmp
    console.error(
      'usage: make-gguf SHAPE(1b|7b|tiny) TYPE(q4_0|q8_0|q4_k|...) OUT.gguf [--layers N] [--weight-scale F]',
    );
    process.exitCode = 2;
  } else {
    await makeGguf(shape, type as never, out, layers, weightScale);
    console.log(JSON.stringify({ wrote: out }));
  }
} else if (PROGRAMS.includes(name)) {
  // Each of these is a program of its own (own process: peak RSS and threads are per run).
  const script = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  const r = spawnSync(process.execPath, [script, ...rest], { stdio: 'inherit' });
  process.exitCode = r.status ?? 1;
} else {
  console.error(`unknown benchmark "${name}" (${['kernels', 'model', 'make-gguf', ...PROGRAMS].join(', ')})`);
  process.exitCode = 2;
}
