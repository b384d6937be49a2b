/**
 * The fewest tokens a text can encode to, judged from its bytes alone, so that a prompt that
 * cannot fit the context is refused before anyone tokenizes it.
 */
import type { MptTokenizer } from '../runtime/tokenizer.js';

/** JavaScript's whitespace (what `trim` removes, and so what added tokens' lstrip/rstrip may drop) above U+007F. */
function isWideSpace(c: number): boolean {
  return (
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}

/** UTF-8 bytes of the text's non-whitespace characters (a lone surrogate, 3 bytes once encoded, counts 2). */
function solidBytes(text: string): { bytes: number; ascii: boolean } {
  let bytes = 0;
  let ascii = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) {
      if (c !== 0x20 && (c < 0x09 || c > 0x0d)) bytes++;
      continue;
    }
    ascii = false;
    if (isWideSpace(c)) continue;
    bytes += c < 0x800 ? 2 : c >= 0xd800 && c <= 0xdfff ? 2 : 3;
  }
  return { bytes, ascii };
}

const ASCII_SPACE_BYTES = new Set([0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20]);

/**
 * The tokenizer's longest token holding a byte other than ASCII whitespace (0 when no bound
 * applies: not byte-level, a normalizer other than NFC, or a vocabulary that cannot spell every
 * byte). A pass over the vocabulary: done once per tokenizer, when a server starts.
 */
export function longestSolidToken(tok: MptTokenizer): number {
  const normalizer = (tok.construction[0] as { normalizer?: { type?: unknown } | null }).normalizer;
  if (!tok.isByteLevel || (normalizer != null && normalizer.type !== 'NFC')) return 0;
  let longest = 0;
  const single = new Set<number>();
  for (let id = 0; id < tok.size; id++) {
    const b = tok.tokenBytes(id);
    if (b.length === 1) single.add(b[0]!);
    if (b.length > longest && b.some((x) => !ASCII_SPACE_BYTES.has(x))) longest = b.length;
  }
  // A vocabulary without a token for every byte UTF-8 uses (all but C0, C1, F5-FF) drops what it
  // cannot spell: no bound then.
  for (let b = 0; b < 0xf5; b++) if (b !== 0xc0 && b !== 0xc1 && !single.has(b)) return 0;
  return longest;
}

/**
 * A lower bound on the number of tokens `text` encodes to: each of its non-whitespace bytes ends
 * up in a token that holds such a byte, and no such token is longer than `solidTokenBytes`
 * (longestSolidToken). Whitespace does not count: GPT-NeoX packs up to 512 spaces in one token.
 * 0 when `solidTokenBytes` is 0. NFC can only shorten a text, by composing characters.
 */
export function leastTokens(text: string, solidTokenBytes: number): number {
  if (solidTokenBytes === 0) return 0;
  const raw = solidBytes(text);
  const bytes = raw.ascii ? raw.bytes : Math.min(raw.bytes, solidBytes(text.normalize('NFC')).bytes);
  return Math.ceil(bytes / solidTokenBytes);
}
