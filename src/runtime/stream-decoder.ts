/**
 * Streaming detokenization that never emits a broken UTF-8 sequence. Byte-level BPE tokens are
 * byte strings: an emoji's four bytes often arrive in two or three tokens, so decoding token by
 * token would print U+FFFD halves. This decoder feeds each token's bytes to a streaming UTF-8
 * decoder, which holds an incomplete sequence back until its last byte arrives. Invalid bytes
 * become U+FFFD exactly as a one-shot decode would make them, so the concatenation of every
 * piece (plus `flush()`) always equals `tokenizer.decode(ids)`.
 */
import type { MptTokenizer } from './tokenizer.js';

export interface StreamDecoderOptions {
  /** Leave out special tokens (`<|endoftext|>`, `<|im_end|>`), as decode's option. Default false. */
  skipSpecialTokens?: boolean;
}

export class StreamDecoder {
  private readonly utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  private readonly ids: number[] = [];
  private emitted = '';

  constructor(
    private readonly tokenizer: MptTokenizer,
    private readonly options: StreamDecoderOptions = {},
  ) {}

  /** Adds one token; returns the text that became complete (often '', never half a character). */
  push(id: number): string {
    if (this.options.skipSpecialTokens && this.tokenizer.isSpecial(id)) return '';
    if (this.tokenizer.isByteLevel) return this.utf8.decode(this.tokenizer.tokenBytes(id), { stream: true });
    // Other decoders: decode the whole sequence again and hand out what is new, holding it back
    // while it ends in U+FFFD (a sequence that may still complete), as the Rust DecodeStream does.
    this.ids.push(id);
    const text = this.tokenizer.decode(this.ids, this.options);
    if (text.endsWith('\uFFFD') || !text.startsWith(this.emitted)) return '';
    const piece = text.slice(this.emitted.length);
    this.emitted = text;
    return piece;
  }

  /** Ends the stream: returns what is still held (U+FFFD for a truncated UTF-8 sequence). */
  flush(): string {
    if (this.tokenizer.isByteLevel) return this.utf8.decode();
    const text = this.tokenizer.decode(this.ids, this.options);
    const piece = text.startsWith(this.emitted) ? text.slice(this.emitted.length) : '';
    this.emitted = text;
    return piece;
  }
}
