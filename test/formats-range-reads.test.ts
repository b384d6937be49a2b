/**
 * RangeReads (formats/range-reads.ts) driven directly, with answers the test hands out byte by
 * byte, so the order of events is the test's: here, a freed request slot wakes every read that
 * waits for one. A woken read that no longer needs the slot (its bytes were kept from a stream
 * that passed them) must not use up the only wake-up: the read behind it, which does need the
 * slot, would wait forever.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_SKIP, RangeReads } from '../src/formats/range-reads.js';

/** The file's byte at `i` (not periodic over the distances used here, so a misplaced byte shows). */
const byteAt = (i: number) => (i * 131 + (i >>> 11)) & 255;

function fileBytes(start: number, end: number): Uint8Array {
  const out = new Uint8Array(end - start);
  for (let i = start; i < end; i++) out[i - start] = byteAt(i);
  return out;
}

/** An answer the test feeds: the bytes [start, end) asked for, and the stream's controller. */
interface Answer {
  start: number;
  end: number;
  controller: ReadableStreamDefaultController<Uint8Array>;
}

/** Lets every pending promise callback and stream read run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe('RangeReads', () => {
  it('a freed slot wakes every waiting read: one served from kept bytes does not leave the next one waiting', async () => {
    const M = MAX_SKIP;
    const size = 4 * M;
    const answers: Answer[] = [];
    const reads = new RangeReads({
      name: 'test-file',
      size,
      maxStreams: 1,
      minRequest: 3 * M,
      maxRequest: 3 * M,
      open: async (start, end) => {
        let controller!: ReadableStreamDefaultController<Uint8Array>;
        const body = new ReadableStream<Uint8Array>({
          start(c) {
            controller = c;
          },
        });
        answers.push({ start, end, controller });
        return body;
      },
    });
    /** A read of `length` bytes at `x` MiB (MAX_SKIP is 1 MiB) into the file. */
    const read = (x: number, length: number) => {
      const offset = Math.floor(x * M);
      const dest = new Uint8Array(length);
      return { offset, dest, done: reads.readInto(offset, dest, `bytes at ${offset}`) };
    };
    // The first read starts the only stream, bytes [0, 3M); a read less than MAX_SKIP past the
    // last one it serves joins it.
    const a = read(0, 10);
    const a2 = read(0.9, 10);
    // 1.6M past the stream's last read: too far to join, and the slot is taken, so it waits.
    const b = read(2.5, 10);
    // Past the stream's end: waits for the slot too, behind b.
    const c = read(3.5, 10);
    // These join the stream and make it pass b's bytes, which it keeps (no read asked for them).
    const a3 = read(1.8, 10);
    const a4 = read(2.7, 10);
    await settle();
    assert.deepEqual(
      answers.map((x) => [x.start, x.end]),
      [[0, 3 * M]],
      'one stream, for the first read and those that joined it',
    );

    // The stream delivers all its bytes and ends: its slot is free.
    answers[0]!.controller.enqueue(fileBytes(0, 3 * M));
    answers[0]!.controller.close();
    await Promise.all([a, a2, a3, a4].map((r) => r.done));
    // b wakes and finds its bytes kept: it needs no slot. c must have been woken too, and asks.
    await b.done;
    await settle();
    assert.deepEqual(
      answers.map((x) => [x.start, x.end]),
      [
        [0, 3 * M],
        [3.5 * M, size],
      ],
      'the read behind the one served from kept bytes got the free slot',
    );
    answers[1]!.controller.enqueue(fileBytes(3.5 * M, size));
    answers[1]!.controller.close();
    await c.done;
    for (const r of [a, a2, a3, a4, b, c]) {
      assert.deepEqual(r.dest, fileBytes(r.offset, r.offset + r.dest.length), `the bytes at ${r.offset}`);
    }
    reads.close();
  });
});
