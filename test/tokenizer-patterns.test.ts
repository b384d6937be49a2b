/**
 * tokenizer.json regular expressions: the linear-time matcher against JavaScript's own engine
 * (the reference, on texts where it does not blow up), hostile patterns that make JavaScript's
 * engine backtrack for minutes, and the patterns that are refused with the file and the pattern
 * named.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { FormatError } from '../src/errors.js';
import { compileLinearPattern, LOOK_MAX_WIDTH, MAX_INSTRUCTIONS } from '../src/runtime/linear-pattern.js';
import { MptTokenizer } from '../src/runtime/tokenizer.js';
import { shippedNeoxTokenizerPath } from '../src/runtime/tokenizer-files.js';

const neox = JSON.parse(readFileSync(shippedNeoxTokenizerPath(), 'utf8')) as Record<string, unknown>;
const plain = new MptTokenizer(neox, {}, 'neox');

/** The GPT-NeoX tokenizer with another pre-tokenizer / normalizer (a Split before ByteLevel, ...). */
function neoxWith(parts: { preSplit?: unknown; normalizer?: unknown }): Record<string, unknown> {
  const tj = { ...neox };
  if (parts.preSplit) {
    tj['pre_tokenizer'] = { type: 'Sequence', pretokenizers: [parts.preSplit, neox['pre_tokenizer']] };
  }
  if (parts.normalizer) tj['normalizer'] = { type: 'Sequence', normalizers: [neox['normalizer'], parts.normalizer] };
  return tj;
}

const split = (regex: string) => ({ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false });

/** Patterns from real tokenizer.json files, as tokenizers.js rewrites them into JavaScript. */
const REAL_PATTERNS = [
  // GPT-2 / GPT-NeoX byte-level (Oniguruma whitespace)
  String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+` +
    String.raw`|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+`,
  // Llama 3 / cl100k, with (?i:...) folded into classes
  String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}` +
    String.raw`| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
  // GPT-4o / o200k
  String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE])?` +
    String.raw`|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}{1,3}` +
    String.raw`| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
  // Bloom-style class, tokenizers.js's anchors and word boundaries
  String.raw` ?[^()|\s.,!?…。，、।۔،]+`,
  String.raw`(?:(?<![\s\S])|(?<=\n))\s*\w+(?:(?=\n)|(?![\s\S]))`,
  String.raw`\b\w+\b|\B.`,
  String.raw`\d{1,3}(?=(?:\d{3})?(?!\d))`,
];

/** Constructs whose priorities a matcher easily gets wrong (lazy, nested, empty iterations). */
const TRICKY_PATTERNS = [
  'a*?b|a+?|b??c',
  '(a|ab)(c|bcd)(d*)',
  'x*',
  '(?:)',
  '(a?){2}b',
  '(a*)*b|a',
  '(?:|a)?b?',
  '(?:a|)*?c|(?:a??){2,3}',
  '^a|b$|(?<=a)b|(?<!a)c|(?<=ab|b)c',
  '[😀-😂]+|.',
  String.raw`\u{1F600}|\uD83D\uDE01|\x41{2,3}?`,
];

const TEXTS = [
  '',
  'Hello world',
  "It's 2024: they'll pay $1,234,567.89!",
  'line one\n\nline two\n',
  '  leading and trailing  ',
  'tabs\tand\r\nCRLF\u0085NEL\u00a0nbsp',
  'Ünïcödé ΣΙΓΜΑ σίγμα 日本語のテキスト',
  'emoji 😀😁 mixed😂x',
  'aabbc abcd aaab ccc',
  'x/y/z ... ?! (a|b) [c]',
  '12345678901 0 999 1000',
  'AbC dEF ghI\n\n\n',
  ' 😀 ',
  '\uD800 lone surrogate',
];

type MatchAllable = { [Symbol.matchAll](s: string): IterableIterator<RegExpMatchArray> };

function matchesOf(text: string, re: MatchAllable): [number, string][] {
  return [...text.matchAll(re as RegExp)].map((m) => [m.index!, m[0]]);
}

test("the linear matcher finds what JavaScript's engine finds (match, matchAll, split, replaceAll)", () => {
  for (const p of [...REAL_PATTERNS, ...TRICKY_PATTERNS]) {
    const js = new RegExp(p, 'gu');
    const lin = compileLinearPattern(p, 'gu', 'test pattern');
    const groups = new RegExp(`${p}|`, 'u').exec('')!.length - 1;
    for (const t of TEXTS) {
      const where = `${p} on ${JSON.stringify(t)}`;
      assert.deepEqual(matchesOf(t, lin), matchesOf(t, js), where);
      assert.deepEqual(t.match(lin as unknown as RegExp), t.match(js), where);
      // JavaScript splices capture groups into split's result; the Rust library does not.
      if (groups === 0) assert.deepEqual(t.split(lin as unknown as RegExp), t.split(js), where);
      assert.equal(t.replaceAll(lin as unknown as RegExp, '<>'), t.replaceAll(js, '<>'), where);
    }
  }
});

test('the linear matcher agrees with JavaScript on random patterns and texts', () => {
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return (seed >> 4) % n;
  };
  const atom = (d: number): string => {
    const r = rnd(d > 2 ? 4 : 9);
    if (r < 2) return ['a', 'b', 'c', ' ', '.', '[ab]', '[^a]', '\\s', '\\w'][rnd(9)]!;
    if (r < 4) return 'ab'[r - 2]!;
    if (r === 4 || r === 8) return (r === 4 ? '(' : '(?:') + alt(d + 1) + ')';
    if (r === 6) return ['^', '$', '\\b', '\\B'][rnd(4)]!;
    return ['(?=', '(?!', '(?<=', '(?<!'][rnd(4)]! + ['a', 'b', 'ab', 'a|bb', '[ab]c?', '\\s'][rnd(6)]! + ')';
  };
  const quantified = (d: number): string => {
    const a = atom(d);
    if (/^[$^]|^\\[bB]|^\(\?[=!<]/.test(a) || rnd(10) < 4) return a;
    return a + ['*', '+', '?', '{2}', '{1,3}', '{0,2}', '{2,}'][rnd(7)]! + (rnd(3) === 0 ? '?' : '');
  };
  const sequence = (d: number): string => Array.from({ length: 1 + rnd(3) }, () => quantified(d)).join('');
  const alt = (d: number): string => {
    let s = sequence(d);
    while (rnd(3) === 0) s += '|' + (rnd(5) === 0 ? '' : sequence(d));
    return s;
  };
  let compared = 0;
  for (let k = 0; k < 600; k++) {
    const p = alt(0);
    const js = new RegExp(p, 'gu');
    const lin = compileLinearPattern(p, 'gu', 'random pattern');
    for (let j = 0; j < 10; j++) {
      const t = Array.from({ length: rnd(25) }, () => 'abc  '[rnd(5)]).join('');
      assert.deepEqual(matchesOf(t, lin), matchesOf(t, js), `${p} on ${JSON.stringify(t)}`);
      compared++;
    }
  }
  assert.equal(compared, 6000);
});

test('patterns that backtrack catastrophically in JavaScript run in one pass', () => {
  // Each of these takes JavaScript's engine 2^n steps (or n^2 for the last ones) on these texts.
  const long = 'a'.repeat(5000);
  const each = (c: string) => Array.from({ length: 5000 }, (_, i) => [i, c] as [number, string]);
  const cases: [string, string, [number, string][]][] = [
    ['(a+)+$', long + '!', []],
    ['(a|a)*b', long, []],
    ['(a|aa)+$', long + '!', []],
    ['(?:a*)*c', long, []],
    ['a*b|a', long, each('a')],
    [String.raw`\p{L}+(?=\d)|.`, 'x'.repeat(5000), each('x')],
  ];
  for (const [p, text, expected] of cases) {
    assert.deepEqual(matchesOf(text, compileLinearPattern(p, 'gu', p)), expected, p);
  }
});

test('a hostile Split or Replace pattern in tokenizer.json tokenizes like the plain tokenizer', () => {
  // (a+)+$ never matches "aaa…a!" (36 characters), so the text stays one piece for ByteLevel.
  const hostileSplit = new MptTokenizer(neoxWith({ preSplit: split('(a+)+$') }), {}, 'hostile-split.json');
  const text = 'a'.repeat(35) + '!';
  assert.deepEqual(hostileSplit.encode(text), plain.encode(text));
  // Where it matches, the match is its own piece: "xyz " | "aaaa".
  assert.deepEqual(hostileSplit.encode('xyz aaaa'), [...plain.encode('xyz '), ...plain.encode('aaaa')]);
  assert.notDeepEqual(hostileSplit.encode('xyz aaaa'), plain.encode('xyz aaaa'));

  const replace = { type: 'Replace', pattern: { Regex: '(a|a)*b' }, content: '$&X' };
  const hostileReplace = new MptTokenizer(neoxWith({ normalizer: replace }), {}, 'hostile-replace.json');
  assert.deepEqual(hostileReplace.encode('a'.repeat(36)), plain.encode('a'.repeat(36)));
  // The content is inserted literally, as the Rust library does ("$&" is not the match).
  assert.deepEqual(hostileReplace.encode('xaab c'), plain.encode('x$&X c'));
});

test("a Split pattern from a real tokenizer encodes as tokenizers.js does on JavaScript's engine", () => {
  const llama3 =
    String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}` +
    String.raw`| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
  const tj = {
    ...neox,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        split(llama3),
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
  };
  const ours = new MptTokenizer(tj, {}, 'llama3-style.json');
  const reference = new HfTokenizer(tj, { clean_up_tokenization_spaces: false });
  for (const t of TEXTS.filter((x) => !/[\u0085\uD800]/.test(x))) {
    assert.deepEqual(ours.encode(t), reference.encode(t, { add_special_tokens: false }).ids, JSON.stringify(t));
  }
});

test('patterns that cannot run in linear time are refused, naming the file and the pattern', () => {
  const refused: [string, RegExp][] = [
    [String.raw`(a+)\1`, /backreference \(\\1\)/],
    [String.raw`(?<x>a)\k<x>`, /backreference \(\\k\)/],
    ['(?=a+b)a', /lookahead that can match unboundedly many characters/],
    [`(?<=a{${LOOK_MAX_WIDTH + 1}})b`, new RegExp(`lookbehind that can match ${LOOK_MAX_WIDTH + 1} characters`)],
    ['(?:a{100}){200}', new RegExp(`too large: it expands to \\d+ matcher states \\(at most ${MAX_INSTRUCTIONS}\\)`)],
  ];
  for (const [regex, reason] of refused) {
    const file = '/models/x/tokenizer.json';
    assert.throws(
      () => new MptTokenizer(neoxWith({ preSplit: split(regex) }), {}, file),
      (e: unknown) => {
        assert.ok(e instanceof FormatError, String(e));
        assert.ok(
          e.message.startsWith(`${file}: the pre-tokenizer Split pattern ${JSON.stringify(regex)} `),
          e.message,
        );
        assert.match(e.message, reason);
        return true;
      },
      regex,
    );
  }
  const backref = { type: 'Replace', pattern: { Regex: '(a)\\1' }, content: '' };
  assert.throws(
    () => new MptTokenizer(neoxWith({ normalizer: backref }), {}, 't.json'),
    /^FormatError: t\.json: the normalizer Replace pattern "\(a\)\\\\1" uses a backreference/,
  );
});
