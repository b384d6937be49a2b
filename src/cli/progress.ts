/**
 * A progress bar on stderr for long steps (loading weights): redrawn in place when stderr is a
 * terminal, and in any case one final line with the total and the time it took, so logs and
 * tests see a single line instead of a stream of carriage returns.
 */

export interface Progress {
  /** Reports progress (units done out of total, e.g. bytes). */
  update(done: number, total: number): void;
  /** Ends the bar and prints the final line. */
  finish(message?: string): void;
}

function formatBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

export interface ProgressOptions {
  /** Where to draw (default process.stderr). */
  stream?: NodeJS.WriteStream;
  /** Draw the live bar (default: when the stream is a TTY). */
  live?: boolean;
  /** Print nothing at all. */
  quiet?: boolean;
  /** Format of the totals (default: bytes). */
  unit?: 'bytes' | 'count';
}

/** Creates a progress bar labelled `label` ("loading model"). */
export function createProgress(label: string, options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr;
  const live = !options.quiet && (options.live ?? stream.isTTY === true);
  const fmt = options.unit === 'count' ? (n: number) => String(n) : formatBytes;
  const start = performance.now();
  let lastDraw = 0;
  let lastTotal = 0;
  let drawn = false;
  let finished = false;
  return {
    update(done, total) {
      lastTotal = total;
      if (!live || finished) return;
      const now = performance.now();
      if (now - lastDraw < 100 && done < total) return;
      lastDraw = now;
      const width = 30;
      const frac = total > 0 ? Math.min(1, done / total) : 0;
      const fill = Math.round(frac * width);
      stream.write(`\r${label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${(frac * 100).toFixed(0).padStart(3)}% ${fmt(done)}/${fmt(total)}`);
      drawn = true;
    },
    finish(message) {
      if (finished || options.quiet) { finished = true; return; }
      finished = true;
      const secs = ((performance.now() - start) / 1000).toFixed(1);
      const line = message ?? `${label}: ${lastTotal > 0 ? fmt(lastTotal) + ' ' : ''}in ${secs} s`;
      stream.write(`${drawn ? '\r\x1b[2K' : ''}${line}\n`);
    },
  };
}
