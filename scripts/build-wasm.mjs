// Compiles the AssemblyScript kernels (src/backends/wasm/assembly/) to dist/wasm/.
//   kernels.wasm        shared memory + relaxed SIMD: the multi-threaded backend where the engine
//                       has relaxed SIMD (Node 20 behind a V8 flag that module-loader.ts sets)
//   kernels-base.wasm   shared memory, plain SIMD128 only: the same kernels for other engines
//   kernels-dot.wasm    kernels.wasm with the q4_0 and q8_0 tiles' block sums on the relaxed dot-add
//                       (DOT_ADD_TILES = 1, assembly/gemm-q-dot.ts, gemm-q8-dot.ts): for engines that lower it
//                       to one instruction (VNNI), which module-loader.ts finds out by timing
//   dot-probe.wasm      that timing alone (assembly/dot-probe.ts): a few hundred bytes, so that
//                       engines which keep kernels.wasm never compile kernels-dot.wasm
// The kernels keep no state of their own (no data segment, no heap): every buffer is a pointer the
// host passes in, so one module instance per (worker, memory) pair can share a memory with others.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const asc = join(root, 'node_modules/assemblyscript/bin/asc.js');
const entry = join(root, 'src/backends/wasm/assembly/index.ts');
const outDir = join(root, 'dist/wasm');
mkdirSync(outDir, { recursive: true });

const common = [
  '-O3',
  '--noAssert',
  '--runtime',
  'stub',
  '--enable',
  'simd',
  '--importMemory',
  '--initialMemory',
  '1',
  '--use',
  'abort=',
  '--noExportMemory',
];
const shared = ['--enable', 'threads', '--sharedMemory', '--maximumMemory', '65536'];
const relaxed = [...shared, '--enable', 'relaxed-simd'];
const variants = [
  { file: 'kernels.wasm', extra: [...relaxed, '--use', 'DOT_ADD_TILES=0'] },
  { file: 'kernels-base.wasm', extra: [...shared, '--use', 'DOT_ADD_TILES=0'] },
  { file: 'kernels-dot.wasm', extra: [...relaxed, '--use', 'DOT_ADD_TILES=1'] },
  { file: 'dot-probe.wasm', extra: relaxed, entry: join(root, 'src/backends/wasm/assembly/dot-probe.ts') },
];
// The compilations are independent: run them in parallel.
const results = await Promise.all(
  variants.map(
    (v) =>
      new Promise((resolve) => {
        const out = join(outDir, v.file);
        const child = spawn(process.execPath, [asc, v.entry ?? entry, ...common, ...v.extra, '-o', out], {
          cwd: root,
          stdio: 'inherit',
        });
        child.on('close', (code) => resolve({ v, out, code }));
      }),
  ),
);
for (const { v, out, code } of results) {
  if (code !== 0 || statSync(out).size === 0) {
    console.error(`build-wasm: asc failed for ${v.file}`);
    process.exit(code || 1);
  }
}

/**
 * The byte size of a module's data section (id 11), 0 without one. An active data segment is
 * written again by every instantiation, and the backend instantiates the kernels once per worker on
 * a memory whose [0, TABLES_END) already holds the fp16 table: a segment there (asc puts them at
 * 1024, e.g. the standard library's log2 table) silently changes table entries under running models.
 */
function dataSectionBytes(bytes) {
  let p = 8;
  const leb = () => {
    let r = 0;
    let shift = 0;
    let b;
    do {
      b = bytes[p++];
      r += (b & 127) * 2 ** shift;
      shift += 7;
    } while (b & 128);
    return r;
  };
  while (p < bytes.length) {
    const id = bytes[p++];
    const size = leb();
    if (id === 11) return size;
    p += size;
  }
  return 0;
}
for (const { v, out } of results) {
  const size = dataSectionBytes(readFileSync(out));
  if (size > 0) {
    console.error(
      `build-wasm: ${v.file} has a data section (${size} bytes); the kernels must keep no static data ` +
        '(a segment is rewritten over the lookup tables at every instantiation): find the standard-library ' +
        'function or static array that brought it in (asc -t out.wat; look for "(data")',
    );
    process.exit(1);
  }
}
