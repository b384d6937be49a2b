/**
 * The loops of one function's x64 code and what they are made of: instructions, memory operands,
 * register moves, vector ALU operations by width (xmm / ymm / zmm), an opcode histogram and, for a
 * profile, each loop's share of the function's samples. Reads either listing that
 * docs/cpu-profile.md compares:
 *   - V8's `--print-wasm-code` output for one function (`bash bench/wasm-code.sh NAME OUT.txt`),
 *   - `perf annotate --stdio -s SYMBOL` of native code (AT&T syntax, sample percentages),
 *     e.g. llama.cpp's kernels (`bash bench/llama-loops.sh`).
 * A loop is the code from a backward jump's target to the jump; nested loops are listed each on
 * its own (an outer loop's count includes its inner loops' code once): V8's largest first, a
 * profile's smallest first of those holding at least 5 % of the samples (inner loop, then the
 * loops around it: a block's count is outer - inner + trips × inner).
 *
 *   node dist/bench/run.js loop-mix LISTING [--top 4]
 */
import { readFileSync } from 'node:fs';

interface Insn {
  at: number;
  op: string;
  args: string;
  share: number;
}

const argv = process.argv.slice(2);
const file = argv.find((a, i) => !a.startsWith('--') && argv[i - 1] !== '--top');
const top = Number(argv.includes('--top') ? argv[argv.indexOf('--top') + 1] : 4) || 4;
if (!file) {
  console.error('usage: loop-mix LISTING [--top N]   (V8 --print-wasm-code or perf annotate --stdio output)');
  process.exit(2);
}

const v8Line = /^0x[0-9a-f]+\s+([0-9a-f]+)\s+[0-9a-f]+\s+(?:REX\.W\s+)?(\S+)\s*(.*)$/;
const perfLine = /^\s*([\d.]+)\s*:\s*([0-9a-f]+):\s*(\S+)\s*(.*)$/;
const insns: Insn[] = [];
let intel = false;
for (const line of readFileSync(file, 'utf8').split('\n')) {
  const v = v8Line.exec(line);
  if (v) {
    intel = true;
    insns.push({ at: Number.parseInt(v[1]!, 16), op: v[2]!, args: v[3]!, share: 0 });
    continue;
  }
  const p = perfLine.exec(line);
  if (!p) continue;
  let op = p[3]!;
  let args = p[4]!;
  // objdump writes the encoding prefix of AVX-VNNI forms as a word of its own: `{vex} vpdpbusd …`
  const prefixed = op === '{vex}' || op === '{evex}' ? /^(\S+)\s*(.*)$/.exec(args) : null;
  if (prefixed) [op, args] = [prefixed[1]!, prefixed[2]!];
  insns.push({ at: Number.parseInt(p[2]!, 16), op, args, share: Number(p[1]) });
}

/** Jump target: V8 prints `<+0xOFFSET>`, objdump the absolute address first. */
const target = (i: Insn): number | undefined => {
  if (!i.op.startsWith('j')) return undefined;
  const m = intel ? /<\+0x([0-9a-f]+)>/.exec(i.args) : /^([0-9a-f]+)\b/.exec(i.args);
  return m ? Number.parseInt(m[1]!, 16) : undefined;
};

const isMove = (op: string) => /^(v?mov|vbroadcast|vpbroadcast|push|pop)/.test(op) && !/^vmov(hl|lh|sh|sl)/.test(op);
const hasMemory = (args: string) => (intel ? args.includes('[') : args.includes('('));

function mix(body: Insn[]) {
  const ops = new Map<string, number>();
  let memory = 0;
  let regMoves = 0;
  const vector = { xmm: 0, ymm: 0, zmm: 0 };
  for (const i of body) {
    ops.set(i.op, (ops.get(i.op) ?? 0) + 1);
    const mem = hasMemory(i.args) && !i.op.startsWith('lea');
    if (mem) memory++;
    if (isMove(i.op)) {
      if (!mem) regMoves++;
    } else if (i.op.startsWith('v')) {
      const w = i.args.includes('zmm') ? 'zmm' : i.args.includes('ymm') ? 'ymm' : 'xmm';
      vector[w]++;
    }
  }
  return {
    instructions: body.length,
    with_memory_operand: memory,
    register_moves: regMoves,
    vector_alu: vector,
    /** 128-bit lanes of vector ALU work: what V8's xmm code and a zmm instruction are measured in. */
    vector_alu_128bit_lanes: vector.xmm + 2 * vector.ymm + 4 * vector.zmm,
    ops: Object.fromEntries([...ops].sort((a, b) => b[1] - a[1])),
  };
}

const share = (body: Insn[]) => Math.round(body.reduce((s, i) => s + i.share, 0) * 10) / 10;
const index = new Map(insns.map((i, n) => [i.at, n]));
const loops = insns
  .map((i, n) => ({ n, to: target(i) }))
  .filter((j): j is { n: number; to: number } => j.to !== undefined && j.to < insns[j.n]!.at && index.has(j.to))
  .map(({ n, to }) => insns.slice(index.get(to)!, n + 1))
  // V8: largest first (a kernel's main loop); perf: innermost first of the loops holding >= 5 % of the samples
  .filter((body) => intel || share(body) >= 5)
  .sort((a, b) => (intel ? b.length - a.length : a.length - b.length));

console.log(
  JSON.stringify(
    {
      file,
      listing: intel ? 'v8' : 'perf annotate',
      function_instructions: insns.length,
      loops: loops.slice(0, top).map((body) => ({
        from: `0x${body[0]!.at.toString(16)}`,
        to: `0x${body[body.length - 1]!.at.toString(16)}`,
        ...(intel ? {} : { sample_share_pct: share(body) }),
        ...mix(body),
      })),
    },
    null,
    1,
  ),
);
