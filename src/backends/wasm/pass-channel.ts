/**
 * How a pass reaches the worker threads and how its end comes back, through one SharedArrayBuffer
 * instead of a message each way (a message costs a structured clone, a task on each side and, on
 * a small model, a third of the step). Each worker sleeps on its own wake word (pool.ts bumps it);
 * the pass itself is written into the descriptor below, which every worker decodes; each worker
 * counts itself out in `done`, and the main thread waits on that word (Atomics.waitAsync).
 *
 * What the descriptor cannot hold — a buffer or sampling options the worker has not seen yet, a
 * penalty history longer than its room — goes as today's message (MESSAGE wake), after which the
 * worker knows it: buffers and sampling options are sent once, then referred to.
 *
 * Int32 words of the buffer: HEAD words, then per worker WAKE_STRIDE words (its wake word and
 * the kind of wake, each worker on its own cache line), then the descriptor.
 */
import { MptError } from '../../errors.js';
import type { KvType } from '../../model/memory-plan.js';
import type { SampleRequest, SamplingOptions } from '../sampling/sampler.js';
import type { Pass, PassSequence } from './executor.js';

/** Shared words before the wake words. */
export const HEAD = {
  /** Workers of the current pass that have finished it (failed or not). */
  done: 0,
  /** Workers of the current pass that failed and posted their error as a message. */
  failed: 1,
  words: 16,
} as const;

/** Words per worker: its wake word (the pass's sequence number), the kind of wake. */
const WAKE_STRIDE = 16;

/** What a worker does when its wake word changes. */
export const WAKE = {
  /** Run the pass in the descriptor. */
  descriptor: 1,
  /** The pass comes as a message: go back to the event loop to receive it. */
  message: 2,
  /** The pool is closing: leave the loop. */
  quit: 3,
} as const;

/** Int32 slot of a worker's wake word (the kind is the next slot). */
export function wakeSlot(tid: number): number {
  return HEAD.words + tid * WAKE_STRIDE;
}

/** The KV types a descriptor can name, by their code (the index). */
const KV_CODES: readonly KvType[] = ['f32', 'f16', 'q8_0'];

/**
 * A KV type's code in the descriptor; a type the workers do not know is an error, whichever way
 * the pass then travels (descriptor or message: the pool checks every pass with this).
 */
export function kvCodeOf(kvType: KvType): number {
  const code = KV_CODES.indexOf(kvType);
  if (code < 0)
    throw new MptError(
      `internal: a pass names KV type ${JSON.stringify(kvType)}; the workers know ${KV_CODES.join(', ')}`,
    );
  return code;
}

/** Descriptor header words. */
const D = { rows: 0, threads: 1, seqs: 2, logit: 3, logitsOffset: 4, hidden: 5, flags: 6, arenas: 7, words: 8 };
const HAS_WPE = 1,
  HAS_SAMPLE = 2,
  LOGITS_IN_PLACE = 4;

/** Int32 words a penalty history may take in the descriptor (longer ones go as messages). */
const HISTORY_WORDS = 1 << 16;

/** Geometry of a channel for a pool. */
export interface ChannelShape {
  threads: number;
  maxRows: number;
  arenas: number;
}

/** Where the parts of a channel of `s` start, in Int32 words, and its size. */
function layoutOf(s: ChannelShape) {
  const desc = HEAD.words + s.threads * WAKE_STRIDE;
  // The sampling draws (f64) first, at an 8-byte-aligned word.
  const uniforms = desc + D.words;
  const body = uniforms + 2 * s.maxRows;
  const words = body + s.maxRows * (2 + 5 + s.arenas + 2 + 3) + HISTORY_WORDS;
  return { desc, uniforms, body, words };
}

/** Buffers and sampling options a worker already holds, so that the descriptor can name them. */
export interface WorkerKnows {
  logitsOut?: SharedArrayBuffer | ArrayBuffer;
  tokensOut?: SharedArrayBuffer | ArrayBuffer;
  hiddenOut?: SharedArrayBuffer | ArrayBuffer;
  /** Sampling options by id (ids from OptionIds). */
  options: Array<SamplingOptions | undefined>;
}

/** Ids for sampling options, by identity (a Sampler keeps its options object), at most `cap`. */
export class OptionIds {
  private readonly ids = new Map<SamplingOptions, number>();
  /** Bumped when the ids are reissued: every worker's table is then stale. */
  epoch = 0;
  constructor(private readonly cap = 64) {}

  /** The id of `o`, a new one if needed (false when the table was full and was reissued). */
  idOf(o: SamplingOptions): number {
    let id = this.ids.get(o);
    if (id === undefined) {
      if (this.ids.size >= this.cap) {
        this.ids.clear();
        this.epoch++;
      }
      id = this.ids.size;
      this.ids.set(o, id);
    }
    return id;
  }
}

/**
 * One pool's channel, as the main thread and each worker see it: its layout and views are worked
 * out once, when the channel is made or received, not for every pass.
 */
export class PassChannel {
  /** The whole channel as Int32 words (HEAD, the wake words, the descriptor). */
  readonly words: Int32Array;
  /** The sampling draws, one per logit row. */
  private readonly uniforms: Float64Array;
  private readonly desc: number;
  private readonly body: number;
  private readonly end: number;

  /** The channel over `buffer` (made by PassChannel.create for the same shape). */
  constructor(
    readonly buffer: SharedArrayBuffer,
    readonly shape: ChannelShape,
  ) {
    const at = layoutOf(shape);
    if (buffer.byteLength < at.words * 4)
      throw new MptError(
        `internal: a pass channel of ${buffer.byteLength} bytes for a shape that needs ${at.words * 4}`,
      );
    this.words = new Int32Array(buffer);
    this.uniforms = new Float64Array(buffer, at.uniforms * 4, shape.maxRows);
    this.desc = at.desc;
    this.body = at.body;
    this.end = at.words;
  }

  static create(shape: ChannelShape): PassChannel {
    return new PassChannel(new SharedArrayBuffer(layoutOf(shape).words * 4), shape);
  }

  /**
   * Writes `pass` into the descriptor, with sampling options as the ids given. Returns false when
   * it does not fit (then it goes as a message); throws on a KV type the descriptor cannot name.
   */
  encode(pass: Pass, optionIds: ArrayLike<number> | null): boolean {
    const shape = this.shape,
      i32 = this.words,
      desc = this.desc;
    const R = pass.rows,
      nl = pass.logitRows.length,
      nh = pass.hiddenRows?.length ?? 0;
    if (R > shape.maxRows || nl > shape.maxRows || nh > shape.maxRows || pass.seqs.length > shape.maxRows) return false;
    let w = this.body;
    i32.set(pass.tokens.subarray(0, R), w);
    w += R;
    if (pass.wpePos) {
      i32.set(pass.wpePos.subarray(0, R), w);
      w += R;
    }
    for (const sq of pass.seqs) {
      if (sq.kv.length !== shape.arenas) return false;
      const kvCode = kvCodeOf(sq.kvType);
      i32[w++] = sq.rowStart;
      i32[w++] = sq.n;
      i32[w++] = sq.past;
      i32[w++] = sq.capacity;
      i32[w++] = kvCode;
      for (let a = 0; a < shape.arenas; a++) i32[w++] = sq.kv[a]!;
    }
    i32.set(pass.logitRows, w);
    w += nl;
    if (pass.hiddenRows) {
      i32.set(pass.hiddenRows, w);
      w += nh;
    }
    const sample = pass.sample;
    if (sample) {
      if (!optionIds || sample.length !== nl) return false;
      for (let j = 0; j < nl; j++) {
        const r = sample[j];
        if (!r) {
          i32[w++] = -1;
          continue;
        }
        const h = r.history,
          hn = h.length;
        if (w + 3 + hn > this.end) return false;
        this.uniforms[j] = r.uniform;
        i32[w++] = optionIds[j]!;
        i32[w++] = r.promptLength;
        i32[w++] = hn;
        if (h instanceof Int32Array) i32.set(h, w);
        else for (let t = 0; t < hn; t++) i32[w + t] = h[t]!;
        w += hn;
      }
    }
    i32[desc + D.rows] = R;
    i32[desc + D.threads] = pass.threads;
    i32[desc + D.seqs] = pass.seqs.length;
    i32[desc + D.logit] = nl;
    i32[desc + D.logitsOffset] = pass.logitsOffset;
    i32[desc + D.hidden] = pass.hiddenRows ? nh : -1;
    i32[desc + D.flags] =
      (pass.wpePos ? HAS_WPE : 0) | (sample ? HAS_SAMPLE : 0) | (pass.logitsInPlace ? LOGITS_IN_PLACE : 0);
    i32[desc + D.arenas] = shape.arenas;
    return true;
  }

  /** Threads of the pass in the descriptor (known before decoding it, which could fail). */
  descriptorThreads(): number {
    return this.words[this.desc + D.threads]!;
  }

  /** The pass in the descriptor, with the buffers and options the worker holds. */
  decode(knows: WorkerKnows): Pass {
    const i32 = this.words,
      desc = this.desc;
    const R = i32[desc + D.rows]!,
      ns = i32[desc + D.seqs]!,
      nl = i32[desc + D.logit]!,
      nh = i32[desc + D.hidden]!,
      flags = i32[desc + D.flags]!,
      na = i32[desc + D.arenas]!;
    let w = this.body;
    const tokens = i32.subarray(w, w + R);
    w += R;
    let wpePos: Int32Array | undefined;
    if (flags & HAS_WPE) {
      wpePos = i32.subarray(w, w + R);
      w += R;
    }
    const seqs: PassSequence[] = [];
    for (let k = 0; k < ns; k++) {
      const kv: number[] = [];
      for (let a = 0; a < na; a++) kv.push(i32[w + 5 + a]!);
      const kvCode = i32[w + 4]!,
        kvType = KV_CODES[kvCode];
      if (kvType === undefined) throw new MptError(`internal: the pass channel holds KV type code ${kvCode}`);
      seqs.push({ rowStart: i32[w]!, n: i32[w + 1]!, past: i32[w + 2]!, capacity: i32[w + 3]!, kvType, kv });
      w += 5 + na;
    }
    const pass: Pass = {
      rows: R,
      threads: i32[desc + D.threads]!,
      tokens,
      seqs,
      logitRows: i32.subarray(w, w + nl),
      logitsOffset: i32[desc + D.logitsOffset]!,
    };
    w += nl;
    if (wpePos) pass.wpePos = wpePos;
    if (flags & LOGITS_IN_PLACE) pass.logitsInPlace = true;
    else if (nl > 0) pass.logitsOut = knows.logitsOut;
    if (nh >= 0) {
      pass.hiddenRows = i32.subarray(w, w + nh);
      pass.hiddenOut = knows.hiddenOut;
      w += nh;
    }
    if (flags & HAS_SAMPLE) {
      const sample: Array<SampleRequest | null> = [];
      for (let j = 0; j < nl; j++) {
        const id = i32[w++]!;
        if (id < 0) {
          sample.push(null);
          continue;
        }
        const promptLength = i32[w++]!,
          hn = i32[w++]!;
        sample.push({
          options: knows.options[id]!,
          history: i32.subarray(w, w + hn),
          promptLength,
          uniform: this.uniforms[j]!,
        });
        w += hn;
      }
      pass.sample = sample;
      pass.tokensOut = knows.tokensOut;
    }
    return pass;
  }
}
