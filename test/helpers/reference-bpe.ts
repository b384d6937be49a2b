/**
 * An independent, deliberately naive encoder for byte-level BPE tokenizer.json files, written
 * from the Rust `tokenizers` library's algorithm (not from tokenizers.js), to cross-check the
 * production encoder on text that no golden file covers:
 *
 * 1. Added tokens with `normalized: false` are cut out of the raw text, leftmost match first and
 *    the longest among matches starting there (aho-corasick `LeftmostLongest`).
 * 2. The other pieces are NFC-normalized, then added tokens with `normalized: true` are cut out
 *    the same way (matched against their normalized content).
 * 3. The remaining pieces are pre-tokenized with the GPT-2 regex as Oniguruma runs it: `\s` is
 *    Unicode White_Space (TAB..CR, U+0085, Zs, U+2028, U+2029; Oniguruma's RE document), and
 *    each piece's UTF-8 bytes are mapped through GPT-2's bytes_to_unicode table.
 * 4. BPE on each word: repeatedly merge the adjacent pair with the lowest merge rank, the
 *    leftmost one on ties (Rust's `Word::merge_all` pops (rank, position) from a min-heap).
 */

interface Added {
  id: number;
  content: string;
  normalized: boolean;
}

const WS = String.raw`\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000`;
const PRETOKENIZE = new RegExp(
  `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|[${WS}]+(?![^${WS}])|[${WS}]+`,
  'gu',
);

function bytesToUnicode(): string[] {
  const keep = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const table: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) table[b] = keep(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + n++);
  return table;
}

export class ReferenceBpe {
  private readonly vocab: Map<string, number>;
  private readonly ranks = new Map<string, number>();
  private readonly rawAdded: Added[];
  private readonly normAdded: Added[];
  private readonly byteChar = bytesToUnicode();
  private readonly cache = new Map<string, number[]>();

  constructor(tokenizerJson: {
    model: { vocab: Record<string, number>; merges: (string | [string, string])[] };
    added_tokens: { id: number; content: string; normalized: boolean }[];
  }) {
    this.vocab = new Map(Object.entries(tokenizerJson.model.vocab));
    tokenizerJson.model.merges.forEach((m, i) => {
      const [a, b] = Array.isArray(m) ? m : [m.slice(0, m.indexOf(' ')), m.slice(m.indexOf(' ') + 1)];
      this.ranks.set(`${a}\u0000${b}`, i);
    });
    const added = tokenizerJson.added_tokens.map((t) => ({ id: t.id, content: t.content, normalized: t.normalized }));
    this.rawAdded = added.filter((t) => !t.normalized);
    this.normAdded = added.filter((t) => t.normalized).map((t) => ({ ...t, content: t.content.normalize('NFC') }));
  }

  private split(text: string, tokens: Added[]): (string | number)[] {
    const out: (string | number)[] = [];
    let start = 0;
    let i = 0;
    while (i < text.length) {
      let best: Added | undefined;
      for (const t of tokens)
        if (t.content.length > 0 && text.startsWith(t.content, i) && (!best || t.content.length > best.content.length))
          best = t;
      if (best) {
        if (i > start) out.push(text.slice(start, i));
        out.push(best.id);
        i += best.content.length;
        start = i;
      } else i++;
    }
    if (start < text.length) out.push(text.slice(start));
    return out;
  }

  private bpe(word: string): number[] {
    const hit = this.cache.get(word);
    if (hit) return hit;
    let syms = Array.from(word);
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < syms.length; i++) {
        const r = this.ranks.get(`${syms[i]}\u0000${syms[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      syms = [...syms.slice(0, best), syms[best]! + syms[best + 1]!, ...syms.slice(best + 2)];
    }
    const ids = syms.map((s) => {
      const id = this.vocab.get(s);
      if (id === undefined) throw new Error(`reference BPE: symbol ${JSON.stringify(s)} not in the vocabulary`);
      return id;
    });
    this.cache.set(word, ids);
    return ids;
  }

  encode(text: string): number[] {
    const ids: number[] = [];
    const enc = new TextEncoder();
    for (const piece of this.split(text, this.rawAdded)) {
      if (typeof piece === 'number') {
        ids.push(piece);
        continue;
      }
      for (const sub of this.split(piece.normalize('NFC'), this.normAdded)) {
        if (typeof sub === 'number') {
          ids.push(sub);
          continue;
        }
        for (const m of sub.matchAll(PRETOKENIZE)) {
          const word = Array.from(enc.encode(m[0]), (b) => this.byteChar[b]!).join('');
          ids.push(...this.bpe(word));
        }
      }
    }
    return ids;
  }
}
