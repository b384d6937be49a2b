/**
 * Stop strings that may span several tokens ("\nUser:" can arrive as "\n", "User", ":"). Text is
 * held back while its tail could still become a stop string, so no part of a stop string is
 * ever emitted; when one completes, the text before it is released and generation ends.
 */

export interface StopCheck {
  /** Text that is safe to emit now. */
  text: string;
  /** True when a stop string was found (`text` is then everything before it). */
  stopped: boolean;
  /** The stop string that matched. */
  match?: string;
}

export class StopStringMatcher {
  private readonly stops: string[];
  private held = '';
  private done = false;

  constructor(stopStrings: Iterable<string> = []) {
    this.stops = [...new Set([...stopStrings].filter((s) => typeof s === 'string' && s.length > 0))];
  }

  /** True when there are no stop strings (then `push` passes text straight through). */
  get empty(): boolean {
    return this.stops.length === 0;
  }

  /** Adds newly decoded text; returns what can be emitted and whether a stop string completed. */
  push(piece: string): StopCheck {
    if (this.done) return { text: '', stopped: true };
    if (this.stops.length === 0) return { text: piece, stopped: false };
    const buf = this.held + piece;
    // The earliest occurrence of any stop string (the longest one when two start together).
    let at = -1;
    let match = '';
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (at < 0 || i < at || (i === at && s.length > match.length))) {
        at = i;
        match = s;
      }
    }
    if (at >= 0) {
      this.done = true;
      this.held = '';
      return { text: buf.slice(0, at), stopped: true, match };
    }
    // Hold back the longest tail of buf that is a proper prefix of some stop string.
    let keep = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, buf.length); n > keep; n--) {
        if (buf.endsWith(s.slice(0, n))) {
          keep = n;
          break;
        }
      }
    }
    this.held = buf.slice(buf.length - keep);
    return { text: buf.slice(0, buf.length - keep), stopped: false };
  }

  /** Ends the stream without a stop: releases the held tail (it did not become a stop string). */
  flush(): string {
    if (this.done) return '';
    const t = this.held;
    this.held = '';
    return t;
  }
}
