/**
 * The tokenizer against golden-encodings.json (cases checked against the Rust Hugging Face
 * tokenizers library), against an independent naive encoder on unseen text, and the Rust
 * library's decode semantics.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { openCheckpoint } from '../src/model/load.js';
import type { GgufTokenizer } from '../src/model/gguf-tokenizer.js';
import { MptTokenizer } from '../src/runtime/tokenizer.js';
import { loadTokenizer, shippedNeoxTokenizerPath } from '../src/runtime/tokenizer-files.js';
import { fixturePath, REPO_ROOT } from './helpers/goldens.js';
import { makeChatModelFolder } from './helpers/model-folders.js';
import { ReferenceBpe } from './helpers/reference-bpe.js';

interface GoldenCase {
  text: string;
  ids: number[];
  tokens: string[];
  decoded: string;
}
const golden = JSON.parse(readFileSync(`${REPO_ROOT}assets/gpt-neox-20b/golden-encodings.json`, 'utf8')) as {
  cases: GoldenCase[];
  chatml_example: { text: string; ids: number[]; tokens: string[] };
};
const tokenizerJson = JSON.parse(readFileSync(shippedNeoxTokenizerPath(), 'utf8'));
const tok = new MptTokenizer(tokenizerJson, {}, 'neox');

test('every golden case encodes and decodes exactly', () => {
  assert.equal(golden.cases.length, 30);
  for (const c of golden.cases) {
    assert.deepEqual(tok.encode(c.text), c.ids, `encode ${JSON.stringify(c.text)}`);
    assert.deepEqual(tok.tokens(c.ids), c.tokens, `tokens ${JSON.stringify(c.text)}`);
    assert.equal(tok.decode(c.ids), c.decoded, `decode ${JSON.stringify(c.text)}`);
  }
});

test('the shipped tokenizer has the GPT-NeoX-20B layout', () => {
  assert.equal(tok.size, 50277);
  assert.equal(tok.tokenToId('<|endoftext|>'), 0);
  assert.equal(tok.tokenToId('<|padding|>'), 1);
  assert.equal(tok.tokenToId(' '.repeat(24)), 50254);
  assert.equal(tok.tokenToId('  '), 50276);
  assert.ok(tok.isSpecial(0) && tok.isSpecial(1) && !tok.isSpecial(50276));
  assert.deepEqual(tok.stopIds, [0]);
});

test('the ChatML example encodes with MPT-7B-Chat tokens added from special_tokens_map.json', () => {
  const { dir, cleanup } = makeChatModelFolder();
  try {
    const notes: string[] = [];
    const chat = loadTokenizer(dir, { onNote: (m) => notes.push(m) })!;
    assert.ok(
      notes.some((n) => n.includes('shipped GPT-NeoX-20B tokenizer')),
      'a note says the shipped tokenizer is used',
    );
    assert.equal(chat.tokenToId('<|im_start|>'), 50277);
    assert.equal(chat.tokenToId('<|im_end|>'), 50278);
    assert.equal(chat.size, 50279);
    assert.deepEqual([...chat.stopIds], [0, 50278]);
    const ex = golden.chatml_example;
    assert.deepEqual(chat.encode(ex.text), ex.ids);
    assert.deepEqual(chat.tokens(ex.ids), ex.tokens);
    assert.equal(chat.decode(ex.ids), ex.text);
    assert.equal(
      chat.decode(ex.ids, { skipSpecialTokens: true }),
      ex.text.replaceAll('<|im_start|>', '').replaceAll('<|im_end|>', ''),
    );
  } finally {
    cleanup();
  }
});

/** Text no golden covers: corpus excerpts and strings aimed at each stage of the pipeline. */
function unseenTexts(): string[] {
  const texts: string[] = [];
  // Files shipped in the repository (the tests must not depend on ../shared).
  const files = [
    'data/tinystories/train.txt',
    'data/tinystories/heldout.txt',
    'test/fixtures/README.md',
    'models/default/TRAINING.md',
  ];
  for (const f of files) {
    const text = readFileSync(`${REPO_ROOT}${f}`, 'utf8');
    for (let k = 0; k < 6; k++) {
      const at = Math.floor((text.length * k) / 6);
      texts.push(text.slice(at, at + 1500));
    }
  }
  texts.push(
    'a\u0085\u0085b x \u0085 y',
    '\uFEFFHello \uFEFF world',
    'tabs\t\t  and\u00a0\u00a0nbsp\u2003em\u3000ideographic',
    'line\r\nbreaks\r\n\r\n  indented\n\n\n',
    ' '.repeat(25) + 'x' + ' '.repeat(49) + 'y',
    'x' + ' '.repeat(24) + '\n',
    'e\u0301 A\u030a \u1100\u1161\u11a8 Å ﬁ ①',
    '👩‍👩‍👧‍👦 🇫🇷 🏳️‍🌈 ❤️ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
    "I'LL DON'T it's it’s we've 're",
    'مرحبا بالعالم — Привет, мир! Γειά σου κόσμε',
    '数字123四五六 ๑๒๓ ٣٤٥',
    '<|endoftext|><|endoftext|> <|padding|>x<|endoftext',
    '  <|endoftext|>  ',
    'foo' + '\u200b'.repeat(3) + 'bar\u2028baz\u2029',
    '$$$ ^^^ ``` ~~~ ||| \\\\ ///',
    '   \t   \n   ',
  );
  // Seeded random strings from a mixed pool (ASCII, spaces, accents, CJK, emoji, odd spaces).
  const pool = Array.from('abcXYZ019 \n\t\'"<|>.,!?-_éüßø日本語한😀👍🏽\u0301\u00a0\u0085\u2009');
  let s = 12345;
  const rnd = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32;
  };
  for (let k = 0; k < 200; k++) {
    let t = '';
    const n = 1 + Math.floor(rnd() * 40);
    for (let i = 0; i < n; i++) t += pool[Math.floor(rnd() * pool.length)];
    texts.push(t);
  }
  return texts;
}

test('encoding equals an independent naive encoder on unseen text', () => {
  const ref = new ReferenceBpe(tokenizerJson);
  let n = 0;
  for (const text of unseenTexts()) {
    assert.deepEqual(tok.encode(text), ref.encode(text), `encode ${JSON.stringify(text.slice(0, 80))}`);
    n++;
  }
  assert.ok(n >= 220);
});

test('decode(encode(x)) is NFC(x) for text without special tokens', () => {
  for (const text of unseenTexts()) {
    if (text.includes('<|')) continue;
    assert.equal(tok.decode(tok.encode(text)), text.normalize('NFC'));
  }
});

test('U+0085 is whitespace and U+FEFF is not, as in the Rust library (Oniguruma \\s)', () => {
  // " \x85Z": with Oniguruma's \s the pieces are " ", "\x85", "Z" (whitespace runs before a
  // non-space give up their last character); with JavaScript's \s, NEL is punctuation and " \x85"
  // is one piece, which BPE turns into "ĠÂ" + "ħ" instead of "Ġ" + "Âħ".
  assert.deepEqual(tok.tokens(tok.encode('x \u0085Z')), ['x', 'Ġ', 'Âħ', 'Z']);
  // U+FEFF is not whitespace: " \uFEFF" is one punctuation-class piece, "Ġï»¿" (JavaScript's
  // \s would split it into "Ġ" and "ï»¿").
  assert.deepEqual(tok.tokens(tok.encode('x \uFEFFZ')), ['x', 'Ġï»¿', 'Z']);
});

test('special-token text can be encoded as plain text', () => {
  const plain = tok.encode('x<|endoftext|>y', { parseSpecialTokens: false });
  assert.ok(!plain.includes(0));
  assert.equal(tok.decode(plain), 'x<|endoftext|>y');
  assert.deepEqual(tok.encode('x<|endoftext|>y'), [...tok.encode('x'), 0, ...tok.encode('y')]);
});

test('decode follows the Rust library: unknown ids skipped, invalid UTF-8 -> U+FFFD, BOM kept', () => {
  assert.equal(tok.decode([12092, 50300, 99999, 1533]), 'Hello world');
  assert.equal(tok.decode([]), '');
  const emoji = tok.encode('😀');
  assert.ok(emoji.length >= 2, 'the emoji spans several byte tokens');
  // Only the first byte token: an incomplete sequence is one U+FFFD (maximal subpart).
  assert.equal(tok.decode(emoji.slice(0, 1)), '\uFFFD');
  assert.equal(tok.decode(emoji), '😀');
  // Byte 0x80 is the 35th byte outside GPT-2's printable ranges (0-32, 127, then 128), so its
  // token is U+0100 + 34 = 'Ģ'. A lone continuation byte is one U+FFFD each.
  const b80 = tok.tokenToId(String.fromCodePoint(0x100 + 34))!;
  assert.equal(tok.decode([b80]), '\uFFFD');
  assert.equal(tok.decode([b80, b80]), '\uFFFD\uFFFD');
  assert.equal(tok.decode(tok.encode('\uFEFFabc')), '\uFEFFabc');
  assert.equal(tok.decode([0, 12092, 1], { skipSpecialTokens: true }), 'Hello');
  assert.equal(tok.decode([0, 12092, 1]), '<|endoftext|>Hello<|padding|>');
});

test('a tokenizer built from GGUF data equals the tokenizer.json one', () => {
  const tokens: string[] = [];
  const types: number[] = [];
  for (const [t, id] of Object.entries(tokenizerJson.model.vocab as Record<string, number>)) {
    tokens[id] = t;
    types[id] = 1;
  }
  for (const a of tokenizerJson.added_tokens as { id: number; content: string; special: boolean }[]) {
    tokens[a.id] = a.content;
    types[a.id] = a.special ? 3 : 4;
  }
  // llama.cpp pads the vocabulary to the model's 50432 rows with unused [PAD] tokens.
  for (let id = tokens.length; id < 50432; id++) {
    tokens[id] = `[PAD${id}]`;
    types[id] = 5;
  }
  const data: GgufTokenizer = {
    model: 'gpt2',
    tokens,
    merges: tokenizerJson.model.merges,
    tokenTypes: types,
    bosId: 0,
    eosId: 0,
  };
  const g = MptTokenizer.fromGguf(data);
  assert.equal(g.size, 50277, 'unused [PAD] tokens are not part of the tokenizer');
  assert.deepEqual([...g.stopIds], [0]);
  for (const c of golden.cases) assert.deepEqual(g.encode(c.text), c.ids, JSON.stringify(c.text));
  for (const text of unseenTexts().slice(0, 40)) assert.deepEqual(g.encode(text), tok.encode(text));
  assert.equal(g.decode([12092, 50300, 1533]), 'Hello world');
});

test('the GGUF fixture embeds a byte-level tokenizer that loads', async () => {
  const ck = await openCheckpoint(fixturePath('gguf-tiny-q/tiny-q-f32.gguf'));
  await ck.tensors.close();
  assert.ok(ck.ggufTokenizer, 'the fixture has tokenizer data');
  const g = MptTokenizer.fromGguf(ck.ggufTokenizer!, 'gguf-tiny-q');
  // 1 control token + 256 byte tokens + "Ġt"; the [PAD] fillers are unused.
  assert.equal(g.size, 258);
  assert.deepEqual(g.encode(' t'), [257]);
  const text = 'Hello, wörld 😀';
  assert.equal(g.decode(g.encode(text)), text);
  assert.equal(g.encode(text).length, new TextEncoder().encode(text).length, 'one token per byte (no merges apply)');
});

test('a folder whose vocabulary cannot hold GPT-NeoX has no tokenizer', () => {
  assert.equal(loadTokenizer(fixturePath('tiny-alibi'), { onNote: () => {} }), null);
  const neox = loadTokenizer(fixturePath('tiny-neox-vocab'), { onNote: () => {} });
  assert.ok(neox);
  assert.deepEqual(neox.encode('The quick brown fox jumps over the'), [510, 3158, 8516, 30013, 27287, 689, 253]);
});
