/**
 * mpt-ts against native llama.cpp on the same GGUF files, one command:
 *
 *   npm run bench -- vs-llamacpp FILE… [--threads 2] [--pp 128] [--tg 64] [--reps 3] [--rounds 2]
 *                    [--llama-bench PATH] [--out FILE]
 *
 * For each round and each file, `mpt bench FILE --json` and `llama-bench -m FILE -p P -n N -r R
 * -t T -o json` run back to back, each in its own process (their order swaps every round, so that
 * a drift of the shared host falls on both alike). Records the machine (CPU model, cores, memory,
 * load averages before and after — above the core count the numbers are not clean — and the read
 * bandwidth measured with the same thread count: read-bandwidth.ts), prints JSON with every
 * round's tok/s for both engines, the median per engine and the ratios mpt / llama.cpp, and saves
 * it under bench/results/ (vs-llamacpp-DATE.json unless --out).
 *
 * llama-bench: --llama-bench PATH, else the native build of ../shared/scripts/build-llama-bench.sh
 * (~/.cache/llama.cpp-native/src/build/bin/llama-bench). --mpt PATH runs another `mpt` entry
 * script (tests use a recorded one).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, homedir, loadavg, totalmem } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface VsOptions {
  files: string[];
  threads: number;
  pp: number;
  tg: number;
  reps: number;
  rounds: number;
  llamaBench: string;
  mpt: string;
  /** Where the JSON is saved (null: not saved). */
  out: string | null;
  /** Skip the bandwidth measurement (tests). */
  bandwidth: boolean;
}

const BUILD_SCRIPT = '../shared/scripts/build-llama-bench.sh';
const here = dirname(fileURLToPath(import.meta.url));
/** The repository root (this file runs from dist/bench/). */
const root = join(here, '..', '..');

/** The default place of the native llama-bench (build-llama-bench.sh's output). */
/** `path` with the home folder written as `~`, for results that are committed. */
export function withoutHome(path: string, home = homedir()): string {
  return path === home || path.startsWith(home + '/') ? '~' + path.slice(home.length) : path;
}

export function defaultLlamaBench(home = homedir()): string {
  return join(home, '.cache/llama.cpp-native/src/build/bin/llama-bench');
}

export class VsUsageError extends Error {}

/** Parses the command line (after `vs-llamacpp`). */
export function parseVsArgs(argv: string[], home = homedir()): VsOptions {
  const files: string[] = [];
  const flags = new Map<string, string>();
  const known = ['threads', 'pp', 'tg', 'reps', 'rounds', 'llama-bench', 'out', 'mpt'];
  let bandwidth = true;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--no-bandwidth') bandwidth = false;
    else if (a.startsWith('--')) {
      const name = a.slice(2);
      if (!known.includes(name))
        throw new VsUsageError(`unknown option ${a} (${known.map((k) => `--${k}`).join(', ')})`);
      const v = argv[++i];
      if (v === undefined) throw new VsUsageError(`${a} needs a value`);
      flags.set(name, v);
    } else files.push(a);
  }
  if (files.length === 0)
    throw new VsUsageError('usage: vs-llamacpp FILE.gguf… [--threads 2 --pp 128 --tg 64 --reps 3 --rounds 2]');
  const int = (name: string, dflt: number, min: number) => {
    const v = flags.get(name);
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new VsUsageError(`--${name} must be an integer >= ${min}, got "${v}"`);
    return n;
  };
  const o: VsOptions = {
    files,
    threads: int('threads', 2, 1),
    pp: int('pp', 128, 0),
    tg: int('tg', 64, 0),
    reps: int('reps', 3, 1),
    rounds: int('rounds', 2, 1),
    llamaBench: flags.get('llama-bench') ?? defaultLlamaBench(home),
    mpt: flags.get('mpt') ?? join(root, 'bin', 'mpt.js'),
    out: flags.get('out') ?? null,
    bandwidth,
  };
  if (o.pp === 0 && o.tg === 0) throw new VsUsageError('--pp and --tg are both 0: nothing to measure');
  return o;
}

/** Checks that llama-bench is there; the error names the script that builds it. */
export function checkLlamaBench(path: string): void {
  if (!existsSync(path))
    throw new VsUsageError(
      `llama-bench not found at ${path}: build the native llama.cpp with \`bash ${BUILD_SCRIPT}\` ` +
        '(15-25 minutes on 2 cores; it prints the folder holding llama-bench), or pass --llama-bench PATH',
    );
}

/** tok/s of a pp and a tg test (absent when not measured). */
export interface Rates {
  pp?: number;
  tg?: number;
}

/** pp / tg tok/s from llama-bench's `-o json` output (an array of tests). */
export function llamaBenchRates(
  json: unknown,
  pp: number,
  tg: number,
): Rates & { build?: string; cpu?: string; backend?: string } {
  if (!Array.isArray(json)) throw new Error('llama-bench -o json did not print an array');
  const out: Rates & { build?: string; cpu?: string; backend?: string } = {};
  for (const row of json as Array<Record<string, unknown>>) {
    const np = row['n_prompt'],
      ng = row['n_gen'],
      ts = row['avg_ts'];
    if (typeof ts !== 'number') continue;
    if (np === pp && ng === 0 && pp > 0) out.pp = ts;
    if (np === 0 && ng === tg && tg > 0) out.tg = ts;
    if (typeof row['build_commit'] === 'string') out.build = `${row['build_commit']} (${row['build_number'] ?? '?'})`;
    if (typeof row['cpu_info'] === 'string') out.cpu = row['cpu_info'];
    if (typeof row['backends'] === 'string') out.backend = row['backends'];
  }
  return out;
}

/** pp / tg tok/s (medians of the reps) from `mpt bench --json`. */
export function mptRates(json: unknown, pp: number, tg: number): Rates {
  const results = (json as { results?: Array<{ test?: string; tokens_per_second?: number }> }).results;
  if (!Array.isArray(results)) throw new Error('mpt bench --json printed no "results"');
  const out: Rates = {};
  for (const r of results) {
    if (r.test === `pp${pp}` && pp > 0) out.pp = r.tokens_per_second;
    if (r.test === `tg${tg}` && tg > 0) out.tg = r.tokens_per_second;
  }
  return out;
}

export function median(a: number[]): number {
  const s = [...a].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

export interface FileSummary {
  file: string;
  /** Per test (pp128, tg64): every round's tok/s, medians and mpt / llama.cpp. */
  tests: Array<{
    test: string;
    mpt: number[];
    llamacpp: number[];
    mpt_median: number;
    llamacpp_median: number;
    /** mpt_median / llamacpp_median. */
    ratio: number;
    /** Lowest and highest ratio of one round's pair (both measured back to back). */
    ratio_range: [number, number];
  }>;
}

/** Per-file medians and ratios of the rounds' measurements (rounds[r][f]: both engines' rates). */
export function summarize(
  files: string[],
  rounds: Array<Array<{ mpt: Rates; llamacpp: Rates }>>,
  pp: number,
  tg: number,
): FileSummary[] {
  return files.map((file, f) => {
    const tests: FileSummary['tests'] = [];
    for (const [key, name] of [
      ['pp', `pp${pp}`],
      ['tg', `tg${tg}`],
    ] as const) {
      const pairs = rounds
        .map((r) => r[f]!)
        .filter((p) => p.mpt[key] !== undefined && p.llamacpp[key] !== undefined)
        .map((p) => [p.mpt[key]!, p.llamacpp[key]!] as const);
      if (pairs.length === 0) continue;
      const mpt = pairs.map((p) => p[0]),
        llama = pairs.map((p) => p[1]);
      const perRound = pairs.map(([a, b]) => a / b);
      tests.push({
        test: name,
        mpt: mpt.map(round3),
        llamacpp: llama.map(round3),
        mpt_median: round3(median(mpt)),
        llamacpp_median: round3(median(llama)),
        ratio: round3(median(mpt) / median(llama)),
        ratio_range: [round3(Math.min(...perRound)), round3(Math.max(...perRound))],
      });
    }
    return { file, tests };
  });
}

function runJson(cmd: string, args: string[], what: string): unknown {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  if (r.error) throw new Error(`${what} could not start: ${r.error.message}`);
  if (r.status !== 0)
    throw new Error(`${what} failed (exit ${r.status}): ${r.stderr.trim().split('\n').slice(-5).join('\n')}`);
  // Both print their JSON last; llama-bench logs to stderr.
  const text = r.stdout.trim();
  const start = text.search(/^[[{]/m);
  try {
    return JSON.parse(text.slice(start));
  } catch {
    throw new Error(`${what} printed no JSON: ${text.slice(0, 200)}`);
  }
}

export function runMpt(o: VsOptions, file: string): Rates {
  const args = [o.mpt, 'bench', file, '--pp', `${o.pp}`, '--tg', `${o.tg}`, '--reps', `${o.reps}`];
  args.push('--threads', `${o.threads}`, '--json');
  return mptRates(runJson(process.execPath, args, 'mpt bench'), o.pp, o.tg);
}

export function runLlama(o: VsOptions, file: string): ReturnType<typeof llamaBenchRates> {
  const args = ['-m', file, '-p', `${o.pp}`, '-n', `${o.tg}`, '-r', `${o.reps}`, '-t', `${o.threads}`, '-o', 'json'];
  return llamaBenchRates(runJson(o.llamaBench, args, 'llama-bench'), o.pp, o.tg);
}

/** Runs the comparison; returns the report (also saved to o.out when set). */
export async function runVs(o: VsOptions, log: (s: string) => void = () => {}): Promise<Record<string, unknown>> {
  checkLlamaBench(o.llamaBench);
  for (const f of o.files) if (!existsSync(f)) throw new VsUsageError(`no such file: ${f}`);
  const started = new Date();
  const loadBefore = loadavg()[0]!;
  let bandwidth: unknown = 'not measured';
  if (o.bandwidth) {
    const { measureReadBandwidth } = await import('./read-bandwidth.js');
    bandwidth = await measureReadBandwidth(o.threads);
  }
  let llamaInfo: { build?: string; cpu?: string; backend?: string } = {};
  const rounds: Array<Array<{ mpt: Rates; llamacpp: Rates }>> = [];
  for (let r = 0; r < o.rounds; r++) {
    const row: Array<{ mpt: Rates; llamacpp: Rates }> = [];
    for (const file of o.files) {
      let mpt: Rates = {},
        llama: ReturnType<typeof llamaBenchRates> = {};
      for (const engine of r % 2 ? ['llamacpp', 'mpt'] : ['mpt', 'llamacpp']) {
        log(`round ${r + 1}/${o.rounds} ${basename(file)}: ${engine}`);
        if (engine === 'mpt') mpt = runMpt(o, file);
        else llama = runLlama(o, file);
      }
      const { pp, tg, ...info } = llama;
      llamaInfo = { ...llamaInfo, ...info };
      row.push({ mpt, llamacpp: { pp, tg } });
    }
    rounds.push(row);
  }
  const report = {
    benchmark: 'vs-llamacpp',
    date: started.toISOString(),
    seconds: Math.round((Date.now() - started.getTime()) / 1000),
    settings: { threads: o.threads, pp: o.pp, tg: o.tg, reps: o.reps, rounds: o.rounds },
    machine: {
      cpu: cpus()[0]?.model ?? 'unknown',
      cores: cpus().length,
      memory_gib: +(totalmem() / 2 ** 30).toFixed(1),
      node: process.version,
      /** 1-minute load averages before and after: above the cores, the numbers are not clean. */
      load_average: [+loadBefore.toFixed(2), +loadavg()[0]!.toFixed(2)],
      read_bandwidth: bandwidth,
    },
    // The home folder is left out: a saved result names the build, not this machine's user.
    llamacpp: { path: withoutHome(o.llamaBench), ...llamaInfo },
    results: summarize(o.files, rounds, o.pp, o.tg),
  };
  if (o.out) {
    mkdirSync(dirname(o.out), { recursive: true });
    writeFileSync(o.out, `${JSON.stringify(report, null, 1)}\n`);
  }
  return report;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    const o = parseVsArgs(process.argv.slice(2));
    o.out ??= join(
      root,
      'bench',
      'results',
      `vs-llamacpp-${new Date().toISOString().slice(0, 16).replace(':', '')}.json`,
    );
    const report = await runVs(o, (s) => process.stderr.write(`${s}\n`));
    console.log(JSON.stringify(report, null, 1));
    process.stderr.write(`saved ${o.out}\n`);
  } catch (e) {
    process.stderr.write(`vs-llamacpp: ${(e as Error).message}\n`);
    process.exitCode = e instanceof VsUsageError ? 2 : 1;
  }
}
