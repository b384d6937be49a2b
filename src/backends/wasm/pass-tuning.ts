/**
 * How the wasm pool schedules its passes: spin lengths, which passes share their layers, when a
 * light pass takes one thread. One object, read once when a pool starts and sent to every worker,
 * so that all threads of a pool agree (they must: thread 0 runs a solo region only if the others
 * skip it). The MPT_WASM_* environment variables below override each default, so that two
 * settings can be compared in one build on one machine (bench/step-ab.ts `.#VAR=value`); a browser
 * has no environment and always gets the defaults.
 */
import { platform } from '../../platform/index.js';

export interface PassTuning {
  /**
   * Loads of a barrier's word before a waiting thread sleeps (Atomics.wait) while every thread
   * has a core (team.ts). MPT_WASM_BARRIER_SPINS.
   */
  barrierSpins: number;
  /** Loads of its wake word before an idle worker sleeps between passes (worker.ts). MPT_WASM_IDLE_SPINS. */
  idleSpins: number;
  /**
   * On a pool of fewer than 4 threads, a pass of fewer multiply-adds than this (weights counted as
   * q4_0 ones by their decode time) runs on one thread (pass-threads.ts): the calling thread alone
   * where it may block. MPT_WASM_LIGHT_PASS_MACS (0: never).
   */
  lightPassMacs: number;
  /**
   * On a pool of 2-3 threads, whether a light decode pass runs on one thread or on all is chosen
   * by measured pass times (light-share.ts), not fixed at one thread. MPT_WASM_ADAPTIVE_LIGHT=0: fixed.
   */
  adaptiveLight: boolean;
  /**
   * A product of decode rows run by one thread is one work item (executor.ts chunkRows), not one per
   * 2^18 multiply-adds: the shipped model's output matrix was 50 items of JS calls. MPT_WASM_ONE_CHUNK=0: off.
   */
  oneChunk: boolean;
  /**
   * A thread that reaches a barrier keeps spinning (instead of sleeping after barrierSpins) for as
   * long as its own share of the operation took (team.ts): the others are then at most about a
   * work item behind, and a thread that sleeps must be woken by the OS (13 µs and a system call
   * at the least on the 2-core machine, more when its core went idle), while its partner
   * starts the next operation alone. Only while every thread has a core, and less after waits
   * the spin did not cover (team.ts Team.credit: on a loaded machine the others lose their cores).
   * Off by default: on the quiet 2-core machine it did not speed up a 1B decode step (step-ab,
   * p10 / p50 26.9 / 30.0 ms on against 27.5 / 28.6 off) and slowed the shipped model's 128-token
   * prompt by about a third (`mpt bench … --pp 128 --threads 2`, alternated: 8.1-8.5 k tok/s on,
   * 10.6-12.2 k off); it helped only on the shared, loaded machine. MPT_WASM_SPIN_BY_WORK=1: on.
   */
  spinByWork: boolean;
  /**
   * Attention work items of a prompt are claimed last query tile first (executor.ts): a causal
   * tile's cost grows with its position, and the longest ones, claimed last, left one thread
   * working alone at the barrier. MPT_WASM_LONG_FIRST=0: first tile first, as before.
   */
  longFirst: boolean;
  /**
   * A prompt product's last chunk a thread is cut in quarters (executor.ts rowItems): the threads
   * then reach its barrier within a quarter chunk of each other. MPT_WASM_FINE_TAIL=0: off.
   */
  fineTail: boolean;
}

/**
 * Loads of a spin word (about 35 µs on the 2-core machine, V8 11.3). Short enough that a thread
 * whose partner lost its core to another process soon gives up its own (at 20,000, on that machine
 * under load, a decode step of the shipped model took 2.4× as long and one of the 1B shape 1.5×:
 * the spinning thread held the core its partner needed); long enough to cover a decode step's
 * imbalance at a barrier (a work item or two of a few µs).
 */
const SPINS = 2000;

/**
 * One decode row of the shipped model as q4_0 (16-20 M multiply-adds, 12.9 M of them its output
 * matrix) runs on one thread; two rows (32 M) share. Counted as q4_0 multiply-adds (pass-threads.ts
 * PassWork.q4Macs): the same row with bf16 weights (46 M as q4_0 ones) shares. Measured on the
 * 2-core machine (docs/cpu-profile.md, "Light passes on one thread"): a 2-thread step of one row
 * gained at most the output matrix's half less the second thread's wake-ups and waits, and lost
 * whenever that thread was late.
 */
const LIGHT_PASS_MACS = 3 << 23;

/** Defaults (see each field). */
export const DEFAULT_TUNING: Readonly<PassTuning> = {
  barrierSpins: SPINS,
  idleSpins: SPINS,
  lightPassMacs: LIGHT_PASS_MACS,
  adaptiveLight: true,
  oneChunk: true,
  spinByWork: false,
  longFirst: true,
  fineTail: true,
};

/** A non-negative integer from the environment, or the default when unset or not one. */
function envCount(name: string, dflt: number): number {
  const v = platform.env(name);
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 ? n : dflt;
}

/** '1' / '0' from the environment, or the default when unset or anything else. */
function envFlag(name: string, dflt: boolean): boolean {
  const v = platform.env(name);
  return v === '1' ? true : v === '0' ? false : dflt;
}

/** The tuning a pool starts with: the defaults, overridden by MPT_WASM_* variables where set. */
export function passTuning(): PassTuning {
  return {
    barrierSpins: envCount('MPT_WASM_BARRIER_SPINS', DEFAULT_TUNING.barrierSpins),
    idleSpins: envCount('MPT_WASM_IDLE_SPINS', DEFAULT_TUNING.idleSpins),
    lightPassMacs: envCount('MPT_WASM_LIGHT_PASS_MACS', DEFAULT_TUNING.lightPassMacs),
    adaptiveLight: envFlag('MPT_WASM_ADAPTIVE_LIGHT', DEFAULT_TUNING.adaptiveLight),
    oneChunk: envFlag('MPT_WASM_ONE_CHUNK', DEFAULT_TUNING.oneChunk),
    spinByWork: envFlag('MPT_WASM_SPIN_BY_WORK', DEFAULT_TUNING.spinByWork),
    longFirst: envFlag('MPT_WASM_LONG_FIRST', DEFAULT_TUNING.longFirst),
    fineTail: envFlag('MPT_WASM_FINE_TAIL', DEFAULT_TUNING.fineTail),
  };
}
