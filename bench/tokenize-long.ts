/**
 * Encoding one long word: tokenizers.js's own merge loop against the tokenizer as MptTokenizer
 * runs it (PairMerger for pre-tokens of 256+ units), alternated in one process, same ids checked.
 *   node dist/bench/tokenize-long.js [--sizes 25000,100000,1048576] [--reps 1]
 */
import { readFileSync } from 'node:fs';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { adoptPairMerger } from '../src/runtime/bpe-merge.js';
import { shippedNeoxTokenizerPath } from '../src/runtime/tokenizer-files.js';
import { adoptTokenizerPatterns } from '../src/runtime/tokenizer-patterns.js';

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? (process.argv[at + 1] ?? fallback) : fallback;
}

const sizes = option('sizes', '25000,100000,1048576').split(',').map(Number);
const reps = Number(option('reps', '1'));
const json = JSON.parse(readFileSync(shippedNeoxTokenizerPath(), 'utf8'));
const build = (pairMerger: boolean) => {
  const hf = new HfTokenizer(json, { clean_up_tokenization_spaces: false });
  adoptTokenizerPatterns(hf, 'gpt-neox-20b');
  if (pairMerger) adoptPairMerger(hf);
  return hf;
};
const variants = { library: build(false), pair_merger: build(true) };

/** Letters from a fixed linear congruential sequence: the same word every run. */
function randomLetters(n: number): string {
  let s = '';
  let x = 5101;
  while (s.length < n) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    s += String.fromCharCode(97 + ((x >>> 16) % 26));
  }
  return s;
}

const results = [];
for (const n of sizes) {
  for (const [word, text] of [
    ['one letter', 'a'.repeat(n)],
    ['random letters', randomLetters(n)],
  ] as const) {
    const ms: Record<string, number> = {};
    const ids: Record<string, string> = {};
    for (let r = 0; r < reps; r++) {
      for (const [name, hf] of Object.entries(variants)) {
        const start = performance.now();
        const out = hf.encode(text, { add_special_tokens: false }).ids;
        const took = performance.now() - start;
        ms[name] = Math.min(ms[name] ?? Infinity, took);
        ids[name] = out.join(',');
      }
    }
    results.push({
      chars: n,
      word,
      library_ms: Math.round(ms['library']!),
      pair_merger_ms: Math.round(ms['pair_merger']!),
      same_ids: ids['library'] === ids['pair_merger'],
    });
  }
}
console.log(JSON.stringify({ bench: 'tokenize-long', reps, results }, null, 1));
