/**
 * The dot-add kernel build (kernels-dot.wasm, assembly/gemm-q-dot.ts) against the relaxed build
 * (kernels.wasm) in Node and in headless Chromium, each engine in one process with the calls
 * alternated (bench/dot-ab-page.ts): a q4_0 and a q8_0 prompt chunk of the 1B shape (128 tokens × 512 rows × K 2048: short calls, so that the best of many is a clean one on a busy machine), a
 * q4_0 decode row and 4-row product and a q8_0 decode row against 8192 × 2048, whether both builds give the same bits, and
 * the dot-add probe (dot-lowering.ts) that module-loader.ts decides with. Prints JSON.
 *   node dist/bench/run.js dot-ab [--reps 20] [--relaxed A.wasm] [--dot B.wasm]
 * (other builds of the two, e.g. a tile being tried: paths under the repository folder).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { kernelModule } from '../src/backends/wasm/module-loader.js';
import { abRun, type AbRun } from './dot-ab-page.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
const TYPES: Record<string, string> = { '.js': 'text/javascript', '.wasm': 'application/wasm' };
const ISOLATION = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
const PAGE =
  '<!doctype html><meta charset="utf-8">' +
  '<script type="module">import "/dist/bench/dot-ab-page.js"; window.pageReady = true;</script>';

const argv = process.argv.slice(2);
const flag = (name: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
const reps = Number(flag('--reps') ?? 20) || 20;
/** The two builds, as paths under the repository folder (the page fetches them from there). */
const files = {
  relaxed: flag('--relaxed') ?? 'dist/wasm/kernels.wasm',
  dot: flag('--dot') ?? 'dist/wasm/kernels-dot.wasm',
};
const wasm = (f: string) => readFileSync(join(ROOT, f));

async function inChromium(): Promise<AbRun & { engine: string }> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    if (path === '/') return void res.writeHead(200, { ...ISOLATION, 'Content-Type': 'text/html' }).end(PAGE);
    const file = normalize(join(ROOT, path));
    if (!file.startsWith(ROOT) || !existsSync(file) || !statSync(file).isFile()) return void res.writeHead(404).end();
    res.writeHead(200, { ...ISOLATION, 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless=new', '--no-sandbox'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(url);
    await page.waitForFunction('window.pageReady === true');
    const r = (await page.evaluate(
      async ([reps, relaxed, dot]) => {
        const get = async (f: string) => (await fetch(`/${f}`)).arrayBuffer();
        const run = (globalThis as unknown as { mptDotAb: typeof abRun }).mptDotAb;
        return run(await get(relaxed), await get(dot), await get('dist/wasm/dot-probe.wasm'), reps);
      },
      [reps, files.relaxed, files.dot] as const,
    )) as AbRun;
    return { engine: `Chromium ${browser.version()}`, ...r };
  } finally {
    await browser.close();
    server.close();
  }
}

kernelModule('shared-base'); // sets Node's engine flags (relaxed SIMD) before compiling
const node = {
  engine: `Node ${process.version} (V8 ${process.versions.v8})`,
  ...(await abRun(wasm(files.relaxed), wasm(files.dot), wasm('dist/wasm/dot-probe.wasm'), reps)),
};
const chrome = existsSync(CHROMIUM) ? await inChromium() : null;
console.log(JSON.stringify({ reps, files, runs: [node, chrome] }, null, 1));
