/**
 * Typed errors. Every error a user can cause (bad file, bad option, bad request) is one of these,
 * with a message that says what is wrong and, where possible, what to do about it.
 */
export class MptError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A checkpoint or data file is malformed, truncated or inconsistent. */
export class FormatError extends MptError {}
/** A config.json is malformed or asks for something the engine does not implement. */
export class ConfigError extends MptError {}
/** An option this engine refuses rather than silently ignores. */
export class UnsupportedError extends ConfigError {}
/** Tensors present in a checkpoint do not match what the config requires. */
export class WeightsError extends MptError {}
/** Input out of range: unknown token id, prompt longer than the context, etc. */
export class InputError extends MptError {}
/** Not enough memory for what was asked (see the memory planner). */
export class MemoryPlanError extends MptError {}
/** The host lacks something the engine needs (a browser page that may not share memory, say). */
export class PlatformError extends MptError {}
/** An output file could not be written (a full disk, a file-size limit, no permission): names the file. */
export class OutputError extends MptError {}
/** A pickle asked for something outside the whitelist. */
export class UnsafePickleError extends FormatError {}
/**
 * A remote file could not be read: the request failed, the server answered with an HTTP error
 * (`status`), or its answer was not what was asked for. Names the URL.
 */
export class FetchError extends MptError {
  /** The HTTP status, when the server answered. */
  readonly status: number | undefined;

  constructor(message: string, options?: { cause?: unknown; status?: number }) {
    super(message, options);
    this.status = options?.status;
  }
}
/**
 * A server sent a whole large file where a byte range was asked for: it does not support HTTP
 * Range requests, so a checkpoint cannot be read from it piece by piece.
 */
export class RangeNotSupportedError extends FetchError {}

/** How many characters of a value an error message repeats (about a line's worth). */
export const QUOTED_CHARS = 60;

/**
 * A value from a file or a request, written for an error message: as JSON (strings quoted), and
 * when longer than QUOTED_CHARS cut there with its full length after — a hostile 100 kB string in
 * a config.json field must not become a 100 kB message, log line or HTTP answer.
 */
export function quoteValue(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    // A BigInt, or an array nested too deep for the stack.
    text = typeof value === 'bigint' ? `${value}` : Object.prototype.toString.call(value);
  }
  return boundedText(text);
}

/** Text made from a file's or request's values, cut after QUOTED_CHARS characters with its full length after. */
export function boundedText(text: string): string {
  if (text.length <= QUOTED_CHARS) return text;
  // Not between the two halves of a surrogate pair.
  const end = /[\ud800-\udbff]/.test(text[QUOTED_CHARS - 1]!) ? QUOTED_CHARS - 1 : QUOTED_CHARS;
  return `${text.slice(0, end)}… (${text.length} chars)`;
}

/**
 * What a system call's error says, without Node's code prefix and syscall suffix
 * ("ENOENT: no such file or directory, stat '/x'" → "no such file or directory"), for messages
 * that name the path themselves. Other errors give their message.
 */
export function systemErrorText(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !message.startsWith(`${code}: `)) return message;
  return message.slice(code.length + 2).replace(/, [a-z_]+(?: '.*')?$/s, '');
}

/** A name from a file or request (a tensor's, a shard's) for an error message: as it is, or quoted bounded when long. */
export function nameForMessage(name: string): string {
  return name.length <= QUOTED_CHARS ? name : quoteValue(name);
}
