/**
 * What parsing a request body at the limit costs the event loop: one JSON.parse of the whole
 * text, a structured clone of the parsed value (what a parse in a worker thread costs the loop to
 * receive), and json-in-turns.ts's parse in slices (its wall time and its longest turn), for the
 * body shapes of bench/server-stall.ts: a 2,048-message chat, 200,000 token ids, one 1 MB string,
 * 100,000 logit_bias entries and 50,000 metadata keys. Best of `--reps` (default 10) each.
 *   node dist/bench/json-in-turns.js [--reps 10]
 */
import { parseJsonInTurns } from '../src/server/json-in-turns.js';
import { words } from './fixed-words.js';

const at = process.argv.indexOf('--reps');
const reps = at >= 0 ? Number(process.argv[at + 1]) : 10;

const ids: number[] = [];
for (let x = 3; ids.length < 200_000; ) {
  x = (Math.imul(x, 1103515245) + 12345) >>> 0;
  ids.push((x >>> 8) % 50_000);
}
const bias: Record<string, number> = {};
for (let i = 0; i < 100_000; i++) bias[String(i)] = 1;
const metadata: Record<string, string> = {};
for (let i = 0; i < 50_000; i++) metadata[`key${i}`] = `v${i}`;
const bodies: Record<string, string> = {
  chat: JSON.stringify({
    model: 'm',
    messages: Array.from({ length: 2048 }, (_, i) => ({
      role: i % 2 ? 'assistant' : 'user',
      content: words(500, i + 1),
    })),
  }),
  'token ids': JSON.stringify({ model: 'm', prompt: ids }),
  string: JSON.stringify({ model: 'm', prompt: words(1_000_000, 7) }),
  logit_bias: JSON.stringify({ model: 'm', logit_bias: bias }),
  metadata: JSON.stringify({ model: 'm', metadata }),
};

function best(run: () => void): number {
  let b = Infinity;
  for (let r = 0; r < reps; r++) {
    const s = performance.now();
    run();
    b = Math.min(b, performance.now() - s);
  }
  return b;
}

const results = [];
for (const [name, text] of Object.entries(bodies)) {
  const parsed = JSON.parse(text) as unknown;
  const parse = best(() => JSON.parse(text));
  const clone = best(() => structuredClone(parsed));
  let wall = Infinity;
  let longest = Infinity;
  let turns = 0;
  for (let r = 0; r < reps; r++) {
    let last = performance.now();
    let max = 0;
    turns = 0;
    const nextTurn = async () => {
      max = Math.max(max, performance.now() - last);
      turns++;
      await new Promise((resolve) => setImmediate(resolve));
      last = performance.now();
    };
    const s = performance.now();
    await parseJsonInTurns(text, { maxDepth: 1000, nextTurn });
    longest = Math.min(longest, Math.max(max, performance.now() - last));
    wall = Math.min(wall, performance.now() - s);
  }
  const ms = (v: number) => Number(v.toFixed(2));
  results.push({
    body: name,
    chars: text.length,
    json_parse_ms: ms(parse),
    structured_clone_ms: ms(clone),
    in_turns_wall_ms: ms(wall),
    in_turns_longest_turn_ms: ms(longest),
    turns,
  });
  console.error(JSON.stringify(results.at(-1)));
}
console.log(JSON.stringify({ reps, results }, null, 1));
