/**
 * The regular expressions of a loaded tokenizer, made safe and exact.
 *
 * tokenizers.js compiles every `{"Regex": …}` pattern of a tokenizer.json (Split and Replace
 * pre-tokenizers, Replace normalizers and decoders) into a JavaScript RegExp. A tokenizer file
 * is input, and JavaScript's engine backtracks: `(a+)+$` takes minutes on 36 characters. Those
 * patterns are swapped here for the linear-time matcher of linear-pattern.ts, which finds the
 * same matches; a pattern it cannot run (a backreference, an unbounded lookaround, a pattern
 * too large) is a FormatError naming the file and the pattern, before any text is read.
 *
 * The byte-level pre-tokenizer's GPT-2 regex is built into tokenizers.js, not read from the
 * file; it is linear on JavaScript's engine and stays there, with one correction so that it
 * equals the Rust `tokenizers` library: `\s` must mean Unicode White_Space as Oniguruma defines
 * it (U+0085 is whitespace, U+FEFF is not), where tokenizers.js uses JavaScript's `\s`.
 */
import { quoteValue } from '../errors.js';
import { compileLinearPattern } from './linear-pattern.js';

/** The GPT-2 pre-tokenizer regex as tokenizers.js compiles it (JavaScript `\s`). */
const GPT2_PATTERN_JS = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;
/**
 * The same regex with Oniguruma's Unicode `\s`: TAB..CR, U+0085, and the Space_Separator,
 * Line_Separator and Paragraph_Separator categories, which is exactly the White_Space property.
 */
const GPT2_PATTERN_ONIG =
  String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+` +
  String.raw`|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+`;

/** The component trees of a tokenizers.js Tokenizer that hold patterns. */
export interface PatternHolders {
  normalizer?: unknown;
  pre_tokenizer?: unknown;
  decoder?: unknown;
}

/** What adoptTokenizerPatterns changed. */
export interface AdoptedPatterns {
  /** Byte-level GPT-2 regexes given Oniguruma's whitespace. */
  byteLevel: number;
  /** tokenizer.json patterns now run by the linear-time matcher. */
  linear: number;
}

/**
 * Replaces, in place, the patterns of a tokenizers.js tokenizer's normalizer, pre-tokenizer and
 * decoder trees (Sequence children included): file patterns by the linear-time matcher, the
 * byte-level GPT-2 regex by its Oniguruma-whitespace form. `source` names the file in errors.
 */
export function adoptTokenizerPatterns(hf: PatternHolders, source: string): AdoptedPatterns {
  const done: AdoptedPatterns = { byteLevel: 0, linear: 0 };
  const seen = new Set<unknown>();
  const visit = (node: unknown, where: string): void => {
    // tokenizers.js components are callable objects (functions with a prototype), not plain objects.
    if (node === null || (typeof node !== 'object' && typeof node !== 'function')) return;
    if (seen.has(node) || node instanceof RegExp) return;
    seen.add(node);
    const obj = node as Record<string, unknown>;
    const pattern = obj['pattern'];
    const config = obj['config'] as { type?: unknown; pattern?: { Regex?: unknown } } | undefined;
    const fileRegex = config?.pattern?.Regex;
    if (pattern instanceof RegExp && typeof fileRegex === 'string') {
      const what = `${source}: the ${where} ${String(config?.type ?? '')} pattern ${quoteValue(fileRegex)}`;
      obj['pattern'] = compileLinearPattern(pattern.source, pattern.flags, what);
      done.linear++;
    } else if (pattern instanceof RegExp && pattern.source === GPT2_PATTERN_JS) {
      obj['pattern'] = new RegExp(GPT2_PATTERN_ONIG, pattern.flags);
      done.byteLevel++;
    }
    for (const [key, value] of Object.entries(obj)) {
      if (key === 'config' || key === 'pattern') continue;
      if (Array.isArray(value)) for (const child of value) visit(child, where);
      else if (typeof value === 'object' || typeof value === 'function') visit(value, where);
    }
  };
  visit(hf.normalizer, 'normalizer');
  visit(hf.pre_tokenizer, 'pre-tokenizer');
  visit(hf.decoder, 'decoder');
  return done;
}
