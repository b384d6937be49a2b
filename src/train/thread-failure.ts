/**
 * The first failure among the threads of the trainer's threaded kernels (kernels-wasm.ts), kept
 * in shared memory: the calling thread may be blocked at the Team's barrier, where no message or
 * Worker event can reach it, so whoever sees a thread fail (the thread itself, the watchdog,
 * the caller's own Worker events) writes what happened here before it aborts the Team, and the
 * caller reads it when it leaves the barrier. The first record wins: the later ones are the
 * consequences of the first (the threads that leave with TeamAborted, their exits).
 *
 * Int32 words: state (EMPTY, WRITING, WRITTEN), the failed thread's id, the message's byte
 * length; then the message, UTF-8, cut at MESSAGE_BYTES.
 */

const STATE = 0,
  TID = 1,
  LENGTH = 2,
  HEAD_BYTES = 16;
const EMPTY = 0,
  WRITING = 1,
  WRITTEN = 2;
const MESSAGE_BYTES = 1024;
/** How long a reader waits for a record being written (its writer could die while writing it). */
const WRITE_WAIT_MS = 200;

export interface ThreadFailure {
  /** The thread that failed: 0 the calling thread, 1.. the workers, WATCHDOG_TID the watchdog. */
  tid: number;
  message: string;
}

/** The `tid` of a failure of the watchdog thread (kernels-wasm-watchdog.ts). */
export const WATCHDOG_TID = -1;

function threadName(tid: number): string {
  if (tid === 0) return 'the calling thread';
  if (tid === WATCHDOG_TID) return 'the watchdog of the training workers';
  return `training worker ${tid}`;
}

export function createFailureRecord(): SharedArrayBuffer {
  return new SharedArrayBuffer(HEAD_BYTES + MESSAGE_BYTES);
}

/** Records that thread `tid` failed, unless a failure is already recorded; true if this one is. */
export function recordFailure(record: SharedArrayBuffer, tid: number, message: string): boolean {
  const head = new Int32Array(record, 0, HEAD_BYTES / 4);
  if (Atomics.compareExchange(head, STATE, EMPTY, WRITING) !== EMPTY) return false;
  // Encoded apart and copied: encoders may refuse views of shared memory.
  const text = new TextEncoder().encode(message).subarray(0, MESSAGE_BYTES);
  new Uint8Array(record, HEAD_BYTES, MESSAGE_BYTES).set(text);
  const written = text.length;
  Atomics.store(head, TID, tid);
  Atomics.store(head, LENGTH, written);
  Atomics.store(head, STATE, WRITTEN);
  Atomics.notify(head, STATE);
  return true;
}

/** The recorded failure, or null when no thread has failed. */
export function readFailure(record: SharedArrayBuffer): ThreadFailure | null {
  const head = new Int32Array(record, 0, HEAD_BYTES / 4);
  const state = Atomics.load(head, STATE);
  if (state === EMPTY) return null;
  if (state === WRITING) Atomics.wait(head, STATE, WRITING, WRITE_WAIT_MS);
  const tid = Atomics.load(head, TID);
  if (Atomics.load(head, STATE) !== WRITTEN) return { tid, message: 'failed (no description was recorded)' };
  // Copied out of the shared buffer first: TextDecoder refuses views of shared memory.
  const bytes = new Uint8Array(record, HEAD_BYTES, Atomics.load(head, LENGTH)).slice();
  return { tid, message: new TextDecoder().decode(bytes) };
}

/**
 * What a worker whose thread ended without reporting an error died of, and what to do: said the
 * same whether the watchdog saw its channel close or the caller saw its exit (`code`).
 */
export function threadEndedMessage(code?: number): string {
  const exit = code === undefined ? '' : ` (exit code ${code})`;
  return (
    `its thread ended without reporting an error${exit}: it was terminated, ran out of memory or crashed. ` +
    'Run the training again (it resumes from its last checkpoint), ' +
    'with fewer --threads or a smaller batch if memory was short'
  );
}

/** How a recorded failure reads in an error: which thread, what happened. */
export function describeThreadFailure(f: ThreadFailure): string {
  return `${threadName(f.tid)} failed: ${f.message}`;
}
