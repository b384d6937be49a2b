/**
 * Progress on stderr for long commands (loading weights, perplexity, training, conversion).
 * stdout stays for results.
 *
 * In a terminal, one status line is redrawn in place (carriage return + clear-line, cut to the
 * terminal's width so it never wraps, at most every `redrawEveryMs`), and permanent lines
 * (`log`) are printed above it. Elsewhere (a pipe, a log file) there is no redrawing: the status
 * becomes a plain line at most every `lineEveryMs` (0: every update), and `finish` prints the
 * last status when it was not printed yet, so a log always ends with the final state.
 */
import type { StepProgress } from '../train/trainer.js';

/** What a status line writes to: process.stderr, or a fake in tests. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface StatusOptions {
  /** Where to draw (default process.stderr). */
  stream?: ProgressStream;
  /** Redraw in place (default: when the stream is a terminal). */
  live?: boolean;
  /** Print nothing at all. */
  quiet?: boolean;
  /** Not live: at most one plain line per this many ms (0: every update; Infinity: none). Default 10 s. */
  lineEveryMs?: number;
  /** Live: at most one redraw per this many ms. Default 100. */
  redrawEveryMs?: number;
  /** The clock, in ms (tests pass a fake one). */
  now?: () => number;
}

const CLEAR = '\r\x1b[2K';
const BAR_WIDTH = 20;

/** `[#####...............]` for a fraction in [0, 1]. */
export function progressBar(fraction: number, width = BAR_WIDTH): string {
  const fill = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}]`;
}

/** "42s", "3m05s", "2h07m"; "-" when unknown (NaN, infinite or negative). */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '-';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Seconds left for `total − done` units at `rate` units per second (NaN when the rate is unknown). */
export function etaSeconds(done: number, total: number, rate: number): number {
  if (!(rate > 0)) return NaN;
  return Math.max(0, total - done) / rate;
}

/**
 * Throughput over recent events (exponential averages of the amount and of the seconds per event,
 * weight `alpha` on the newest), so the rate follows speed changes without jumping at each step.
 */
export class RateMeter {
  private amount = 0;
  private seconds = 0;
  constructor(private readonly alpha = 0.2) {}

  /** Records one event: `amount` units (tokens) in `seconds`. */
  add(amount: number, seconds: number): void {
    const first = this.seconds === 0;
    this.amount = first ? amount : (1 - this.alpha) * this.amount + this.alpha * amount;
    this.seconds = first ? seconds : (1 - this.alpha) * this.seconds + this.alpha * seconds;
  }

  /** Units per second (0 before the first event). */
  get rate(): number {
    return this.seconds > 0 ? this.amount / this.seconds : 0;
  }

  /** Seconds per event (NaN before the first event). */
  get secondsPerEvent(): number {
    return this.seconds > 0 ? this.seconds : NaN;
  }
}

/** One status line (redrawn in a terminal, rate-limited plain lines elsewhere) and permanent lines. */
export class StatusLine {
  readonly live: boolean;
  private readonly stream: ProgressStream;
  private readonly quiet: boolean;
  private readonly lineEveryMs: number;
  private readonly redrawEveryMs: number;
  private readonly now: () => number;
  /** The latest status (what a redraw draws) and whether it is on screen / in the log. */
  private text = '';
  private shown = true;
  private drawn = false;
  private lastOut: number;

  constructor(o: StatusOptions = {}) {
    this.stream = o.stream ?? process.stderr;
    this.quiet = o.quiet === true;
    this.live = !this.quiet && (o.live ?? this.stream.isTTY === true);
    this.lineEveryMs = o.lineEveryMs ?? 10_000;
    this.redrawEveryMs = o.redrawEveryMs ?? 100;
    this.now = o.now ?? (() => performance.now());
    // Plain lines wait a full interval (a short task prints only its final line); redraws do not.
    this.lastOut = this.live ? -Infinity : this.now();
  }

  /** Sets the status: `text`, after a bar when `fraction` (0..1) is given and the line is live. */
  update(text: string, fraction?: number): void {
    if (this.quiet) return;
    this.text = this.live && fraction !== undefined ? `${progressBar(fraction)} ${text}` : text;
    this.shown = false;
    const t = this.now();
    if (t - this.lastOut < (this.live ? this.redrawEveryMs : this.lineEveryMs)) return;
    this.lastOut = t;
    this.show();
  }

  /** Prints a permanent line (above the status line in a terminal). */
  log(line: string): void {
    if (this.quiet) return;
    if (!this.live) {
      this.stream.write(line + '\n');
      return;
    }
    this.stream.write(`${this.drawn ? CLEAR : ''}${line}\n`);
    this.drawn = false;
    if (this.text) this.show();
  }

  /**
   * Ends the status: prints `line` in its place when given, else leaves the latest status as a
   * permanent line (printing it if rate limiting held it back). A later update starts a new one.
   */
  finish(line?: string): void {
    if (this.quiet) return;
    const last = line ?? (this.shown && !this.live ? undefined : this.text || undefined);
    const out = `${this.drawn ? CLEAR : ''}${last !== undefined ? last + '\n' : ''}`;
    if (out) this.stream.write(out);
    this.drawn = false;
    this.text = '';
    this.shown = true;
    // The next status (a new one) is drawn at once in a terminal; plain lines keep their pace.
    this.lastOut = this.live ? -Infinity : this.now();
  }

  private show(): void {
    this.shown = true;
    if (!this.live) {
      this.stream.write(this.text + '\n');
      return;
    }
    // One column short of the width: a line that fills it would wrap and break the redraw.
    const cols = this.stream.columns ?? 0;
    const text = cols > 1 && this.text.length > cols - 1 ? this.text.slice(0, cols - 1) : this.text;
    this.stream.write(CLEAR + text);
    this.drawn = true;
  }
}

/** Progress through a known amount of work (tokens, tensors, bytes). */
export interface Progress {
  /** Reports progress (units done out of total). */
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

export interface ProgressOptions extends StatusOptions {
  /** Format of the totals (default: bytes), or a unit name for counts ("tokens"). */
  unit?: 'bytes' | 'count' | string;
  /** Show the rate and the time left (default: for counts with a unit name). */
  rate?: boolean;
}

/**
 * A progress bar labelled `label` ("loading model"): live in a terminal; elsewhere plain lines as
 * StatusOptions.lineEveryMs says (default: none); always a final line with the total and the time.
 */
export function createProgress(label: string, options: ProgressOptions = {}): Progress {
  const status = new StatusLine({ lineEveryMs: Infinity, ...options });
  const now = options.now ?? (() => performance.now());
  const unit = options.unit ?? 'bytes';
  const named = unit !== 'bytes' && unit !== 'count';
  const fmt = unit === 'bytes' ? formatBytes : (n: number) => (named ? `${n} ${unit}` : String(n));
  const withRate = options.rate ?? named;
  const per = unit === 'bytes' ? 'B' : named ? unit : 'units';
  const start = now();
  let lastTotal = 0;
  let finished = false;
  return {
    update(done, total) {
      lastTotal = total;
      if (finished) return;
      const secs = (now() - start) / 1000;
      const frac = total > 0 ? Math.min(1, done / total) : 0;
      const pct = (frac * 100).toFixed(0).padStart(3);
      let text = `${label} ${pct}% ${unit === 'bytes' ? formatBytes(done) : done}/${fmt(total)}`;
      if (withRate) {
        const rate = secs > 0 ? done / secs : 0;
        text += ` | ${rate.toFixed(0)} ${per}/s | ETA ${formatDuration(etaSeconds(done, total, rate))}`;
      }
      status.update(text, frac);
    },
    finish(message) {
      if (finished) return;
      finished = true;
      const secs = (now() - start) / 1000;
      const rate = withRate && secs > 0 && lastTotal > 0 ? ` (${(lastTotal / secs).toFixed(0)} ${per}/s)` : '';
      status.finish(message ?? `${label}: ${lastTotal > 0 ? fmt(lastTotal) + ' ' : ''}in ${secs.toFixed(1)} s${rate}`);
    },
  };
}

/**
 * Training progress for StatusLine: each step as the redrawn status (bar, step/total, loss, recent
 * tokens/s, elapsed, ETA) or a plain line; steps that evaluated stay as permanent lines.
 */
export function trainProgress(status: StatusLine): (p: StepProgress) => void {
  const meter = new RateMeter();
  return (p) => {
    meter.add(p.stepTokens, p.stepSeconds);
    const eta = (p.maxSteps - p.record.step) * meter.secondsPerEvent;
    const line =
      `${p.summary} | ${meter.rate.toFixed(0)} tok/s | ` +
      `${formatDuration(p.record.elapsed)} elapsed | ETA ${formatDuration(eta)}`;
    if (p.newEval) status.finish(line);
    else status.update(line, p.record.step / p.maxSteps);
  };
}

/** What an interrupted training run tells its user: where its steps are kept, and how to go on. */
export function stoppedNote(step: number, checkpoint: string | null): string {
  return checkpoint
    ? `stopped after step ${step}: checkpoint saved in ${checkpoint}; the same command resumes from it`
    : `stopped after step ${step}; without a save folder nothing was saved`;
}
