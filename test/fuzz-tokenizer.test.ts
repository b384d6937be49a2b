// Seeded mutation fuzzing of tokenizer files: a small tokenizer.json cut from the shipped
// GPT-NeoX-20B one (its first 600 ids, the merges among them, its added tokens, pre-tokenizer,
// normalizer and decoder as they are) with MPT-7B-Chat's side files (tokenizer_config.json with
// its chat template, special_tokens_map.json, generation_config.json). One file is mutated per
// case; the folder's tokenizer is loaded, encodes and decodes. Each case must succeed or end in an
// MptError, in bounded time.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { bytesSource } from '../src/formats/byte-source.js';
import type { FolderSource } from '../src/formats/folder-source.js';
import { loadFolderTokenizer } from '../src/runtime/tokenizer-source.js';
import { assertReached, fuzz, mutateJson } from './helpers/fuzz.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CONFIGS = join(ROOT, 'test/fixtures/mpt-configs');
const KEEP_IDS = 600;

/** The shipped tokenizer.json cut down to ids below KEEP_IDS (and the merges among them). */
function smallTokenizerJson(): string {
  const full = JSON.parse(readFileSync(join(ROOT, 'assets/gpt-neox-20b/tokenizer.json'), 'utf8')) as {
    added_tokens: { id: number }[];
    model: { vocab: Record<string, number>; merges: (string | string[])[] };
  };
  const vocab = Object.fromEntries(Object.entries(full.model.vocab).filter(([, id]) => id < KEEP_IDS));
  const merges = full.model.merges.filter((m) => {
    const [a, b] = typeof m === 'string' ? m.split(' ') : m;
    return a! in vocab && b! in vocab && `${a}${b}` in vocab;
  });
  return JSON.stringify({
    ...full,
    added_tokens: full.added_tokens.filter((t) => t.id < KEEP_IDS),
    model: { ...full.model, vocab, merges },
  });
}

const FILES: Record<string, string> = {
  'tokenizer.json': smallTokenizerJson(),
  'tokenizer_config.json': readFileSync(join(CONFIGS, 'mpt-7b-chat.tokenizer_config.json'), 'utf8'),
  'special_tokens_map.json': readFileSync(join(CONFIGS, 'mpt-7b-chat.special_tokens_map.json'), 'utf8'),
  'generation_config.json': readFileSync(join(CONFIGS, 'mpt-7b-chat.generation_config.json'), 'utf8'),
};

function folder(files: Record<string, string>): FolderSource {
  return {
    name: 'fuzz-tokenizer',
    open: async (f) =>
      files[f] === undefined ? undefined : bytesSource(new TextEncoder().encode(files[f]), `fuzz-tokenizer/${f}`),
  };
}

async function loadAndRun(files: Record<string, string>): Promise<void> {
  const tok = await loadFolderTokenizer(folder(files), { vocabSize: 50432, onNote: () => {} });
  if (tok === null) return;
  const text = 'Hello, world!  The <|endoftext|> quick\n\nbrown fox — ünïcode 1234';
  tok.encode(text);
  tok.encode(text, { parseSpecialTokens: false });
  tok.decode(
    Array.from({ length: 64 }, (_, i) => i * 13),
    { skipSpecialTokens: true },
  );
  tok.decode([-1, 1.5, 2 ** 40, Number.NaN, 0]);
}

describe('tokenizer fuzz: mutated tokenizer files load, or fail with an MptError', () => {
  for (const [file, seeds] of [
    ['tokenizer.json', 300],
    ['tokenizer_config.json', 150],
    ['special_tokens_map.json', 60],
    ['generation_config.json', 60],
  ] as const) {
    it(`${file}: ${seeds} seeds`, async () => {
      await loadAndRun(FILES);
      const tally = await fuzz(file, seeds, (r, log) => {
        const files = { ...FILES, [file]: mutateJson(FILES[file]!, r, log) };
        return () => loadAndRun(files);
      });
      assertReached(tally, file);
    });
  }
});
