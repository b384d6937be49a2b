/**
 * The engine in a browser tab against `mpt bench` in Node, on the same GGUF file, in one run
 * (`npm run bench -- browser FILE.gguf [--threads 2] [--pp 512] [--tg 128] [--reps 3] [--rounds 2]`):
 * each round runs `mpt bench FILE --json` in a Node process of its own, then the same measurement
 * in headless Chromium (a fresh browser, a cross-origin isolated page, the file by URL over HTTP
 * Range requests from a local server, the wasm backend on --threads Web Workers); rounds alternate
 * the two so that a busy machine slows both alike. Prints JSON: each run, the medians, and the
 * ratios browser / Node of prompt and decode tokens/s. Also load time, the tab's time to the first
 * token, and peak memory: Node's peak RSS, and the browser's peak PSS summed over its processes.
 * `--tab-only` (the 7B shape: does it load, how long to the first token) skips Node and, with
 * --pp 0 --tg 0, the speed runs. `--tab-dot 1|0` makes the tab use the dot-add kernel build or not
 * instead of letting module-loader.ts's probe decide (Node: MPT_WASM_DOT=1|0 in the environment).
 *   node dist/bench/run.js make-gguf 1b q4_0 /tmp/mpt-1b-q4_0.gguf
 *   npm run bench -- browser /tmp/mpt-1b-q4_0.gguf --threads 2
 */
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { TabOptions, TabRun } from './browser-page.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
const TYPES: Record<string, string> = {
  '.js': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
};
const IMPORTS = {
  '@huggingface/tokenizers': '/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs',
  '@huggingface/jinja': '/node_modules/@huggingface/jinja/dist/index.js',
};
const PAGE =
  '<!doctype html><meta charset="utf-8">' +
  `<script type="importmap">${JSON.stringify({ imports: IMPORTS })}</script>` +
  '<script type="module">import "/dist/bench/browser-page.js"; window.pageReady = true;</script>';
const ISOLATION = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

/** One request for the model file as the server saw it. */
interface ModelRequest {
  method: string;
  /** Bytes sent (the range's length, or the whole file's). */
  bytes: number;
  /** When the request arrived and when its answer was sent, in ms since the server started. */
  at: number;
  ms: number;
}

/** Serves the repository, the page at /, and the model at /model.gguf with streamed Range answers. */
function serve(model: string, log: ModelRequest[]): Promise<{ server: Server; url: string }> {
  const t0 = performance.now();
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    if (path === '/') return void res.writeHead(200, { ...ISOLATION, 'Content-Type': 'text/html' }).end(PAGE);
    const sent = (bytes: number) => {
      if (path !== '/model.gguf') return;
      const at = performance.now();
      const entry: ModelRequest = { method: req.method ?? 'GET', bytes, at: Math.round(at - t0), ms: 0 };
      log.push(entry);
      res.on('finish', () => {
        entry.ms = Math.round(performance.now() - at);
      });
    };
    const file = path === '/model.gguf' ? model : normalize(join(ROOT, path));
    if ((file !== model && !file.startsWith(ROOT)) || !existsSync(file) || !statSync(file).isFile()) {
      return void res.writeHead(404, ISOLATION).end();
    }
    const size = statSync(file).size;
    const type = TYPES[extname(file)] ?? 'application/octet-stream';
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (m === null || req.method === 'HEAD') {
      sent(req.method === 'HEAD' ? 0 : size);
      res.writeHead(200, { ...ISOLATION, 'Content-Type': type, 'Content-Length': size });
      if (req.method === 'HEAD') return void res.end();
      return void createReadStream(file).pipe(res);
    }
    const start = Number(m[1]);
    const end = Math.min(Number(m[2]), size - 1);
    sent(Math.max(0, end - start + 1));
    if (start >= size) return void res.writeHead(416, { ...ISOLATION, 'Content-Range': `bytes */${size}` }).end();
    res.writeHead(206, {
      ...ISOLATION,
      'Content-Type': type,
      'Content-Length': end - start + 1,
      'Content-Range': `bytes ${start}-${end}/${size}`,
    });
    createReadStream(file, { start, end }).pipe(res);
  });
  return new Promise((ok) =>
    server.listen(0, '127.0.0.1', () =>
      ok({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` }),
    ),
  );
}

/** A process's proportional set size (shared pages split among their sharers), 0 when it has ended. */
function pss(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * The memory of this process's descendants (the browser's processes), from /proc: the sum of
 * their PSS, so that memory they share (a shared wasm memory in the page and in each worker's
 * process, the browser's own libraries) counts once.
 */
function descendantsMemory(): number {
  const children = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
    } catch {
      // a process that ended meanwhile
    }
  }
  let total = 0;
  const walk = (pid: number): void => {
    for (const c of children.get(pid) ?? []) {
      total += pss(c);
      walk(c);
    }
  };
  walk(process.pid);
  return total;
}

interface BrowserResult extends TabRun {
  /** Peak of the browser's processes' summed PSS (see descendantsMemory). */
  peak_pss_bytes: number;
  /** The requests for the model file during the run, as the server saw them. */
  requests: RequestSummary;
}

interface RequestSummary {
  count: number;
  bytes: number;
  /** Median and largest answer, in bytes. */
  median_bytes: number;
  max_bytes: number;
  /** Most requests open at once. */
  max_in_flight: number;
  /** Median and longest time from a request's arrival to its answer's last byte sent. */
  median_ms: number;
  max_ms: number;
}

function summarize(log: ModelRequest[]): RequestSummary {
  const edges = log.flatMap((r) => [
    [r.at, 1],
    [r.at + r.ms, -1],
  ]);
  edges.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
  let open = 0;
  let most = 0;
  for (const [, d] of edges) {
    open += d!;
    most = Math.max(most, open);
  }
  return {
    count: log.length,
    bytes: log.reduce((s, r) => s + r.bytes, 0),
    median_bytes: median(log.map((r) => r.bytes)) ?? 0,
    max_bytes: Math.max(0, ...log.map((r) => r.bytes)),
    max_in_flight: most,
    median_ms: median(log.map((r) => r.ms)) ?? 0,
    max_ms: Math.max(0, ...log.map((r) => r.ms)),
  };
}

async function inTab(url: string, log: ModelRequest[], o: TabOptions): Promise<BrowserResult> {
  log.length = 0;
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless=new', '--no-sandbox', '--disable-background-networking', '--disable-component-update'],
  });
  let peak = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, descendantsMemory());
  }, 250);
  try {
    const page = await browser.newPage();
    const said: string[] = [];
    page.on('console', (m) => said.push(m.text()));
    page.on('pageerror', (e) => said.push(String(e)));
    await page.goto(url);
    await page.waitForFunction('window.pageReady === true', undefined, { timeout: 60_000 }).catch(() => {
      throw new Error(`the bench page did not load: ${said.join(' | ')}`);
    });
    const r = (await page.evaluate(
      `window.bench.run(${JSON.stringify(`${url}model.gguf`)}, ${JSON.stringify(o)})`,
    )) as TabRun;
    peak = Math.max(peak, descendantsMemory());
    return { ...r, peak_pss_bytes: peak, requests: summarize(log) };
  } finally {
    clearInterval(sampler);
    await browser.close();
  }
}

interface NodeResult {
  threads: number;
  load_ms: number;
  pp: number | undefined;
  tg: number | undefined;
  peak_rss_bytes: number;
}

function inNode(file: string, o: { threads: number; pp: number; tg: number; reps: number }): NodeResult {
  const args = [join(ROOT, 'bin/mpt.js'), 'bench', file, '--json', '--threads', String(o.threads)];
  args.push('--pp', String(o.pp), '--tg', String(o.tg), '--reps', String(o.reps));
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`mpt bench failed: ${r.stderr}`);
  const { results } = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
    results: { test: string; tokens_per_second: number; load_ms: number; peak_rss_bytes: number; threads: number }[];
  };
  const of = (prefix: string) => results.find((x) => x.test.startsWith(prefix))?.tokens_per_second;
  const first = results[0]!;
  return {
    threads: first.threads,
    load_ms: first.load_ms,
    pp: of('pp'),
    tg: of('tg'),
    peak_rss_bytes: first.peak_rss_bytes,
  };
}

function median(a: number[]): number | undefined {
  if (a.length === 0) return undefined;
  const s = [...a].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined ? undefined : Math.round((a / b) * 1000) / 1000;
}

/** `--request-bytes MIN:MAX` (the URL source's request sizes; 1:1 asks for every read alone). */
function requestBytes(arg: string | undefined): { minRequestBytes?: number; maxRequestBytes?: number } {
  if (arg === undefined) return {};
  const [min, max] = arg.split(':').map(Number);
  if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max))
    throw new Error('--request-bytes takes MIN:MAX (bytes)');
  return { minRequestBytes: min, maxRequestBytes: max };
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      threads: { type: 'string', default: '2' },
      pp: { type: 'string', default: '512' },
      tg: { type: 'string', default: '128' },
      reps: { type: 'string', default: '3' },
      rounds: { type: 'string', default: '2' },
      'tab-only': { type: 'boolean', default: false },
      via: { type: 'string', default: 'url' },
      'request-bytes': { type: 'string' },
      'tab-dot': { type: 'string' },
    },
  });
  const file = positionals[0] === undefined ? undefined : resolve(positionals[0]);
  if (file === undefined || !existsSync(file)) {
    throw new Error(
      'usage: npm run bench -- browser FILE.gguf [--threads 2] [--pp 512] [--tg 128] [--reps 3] [--rounds 2] [--tab-only] [--tab-dot 1|0]',
    );
  }
  if (!existsSync(CHROMIUM)) throw new Error(`chromium is not installed at ${CHROMIUM}`);
  const o = {
    threads: Number(values.threads),
    pp: Number(values.pp),
    tg: Number(values.tg),
    reps: Number(values.reps),
    via: values.via === 'memory' ? ('memory' as const) : ('url' as const),
    ...requestBytes(values['request-bytes']),
    ...(values['tab-dot'] === undefined ? {} : { dotAdd: values['tab-dot'] === '1' }),
  };
  const rounds = Number(values.rounds);
  const log: ModelRequest[] = [];
  const { server, url } = await serve(file, log);
  const node: NodeResult[] = [];
  const tab: BrowserResult[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      // Alternate which goes first, so neither always runs on a machine the other has just warmed.
      const order = r % 2 === 0 ? ['node', 'browser'] : ['browser', 'node'];
      for (const which of order) {
        if (which === 'node' && !values['tab-only']) node.push(inNode(file, o));
        if (which === 'browser') tab.push(await inTab(url, log, o));
      }
    }
  } finally {
    server.close();
  }
  const med = <T>(xs: T[], f: (x: T) => number | undefined) =>
    median(xs.map(f).filter((x): x is number => x !== undefined));
  const browser = {
    pp: med(tab, (x) => median(x.pp)),
    tg: med(tab, (x) => median(x.tg)),
    load_ms: med(tab, (x) => x.load_ms),
    first_token_ms: med(tab, (x) => x.first_token_ms),
    peak_pss_bytes: med(tab, (x) => x.peak_pss_bytes),
  };
  const inNodeMedian = {
    pp: med(node, (x) => x.pp),
    tg: med(node, (x) => x.tg),
    load_ms: med(node, (x) => x.load_ms),
    peak_rss_bytes: med(node, (x) => x.peak_rss_bytes),
  };
  console.log(
    JSON.stringify(
      {
        file: basename(file),
        bytes: statSync(file).size,
        ...o,
        rounds,
        median: { browser, node: inNodeMedian },
        ratio_browser_to_node: { pp: ratio(browser.pp, inNodeMedian.pp), tg: ratio(browser.tg, inNodeMedian.tg) },
        runs: { browser: tab, node },
      },
      null,
      1,
    ),
  );
}

await main(process.argv.slice(2));
