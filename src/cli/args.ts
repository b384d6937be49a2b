/**
 * A small argument parser shared by the subcommands: `--name value`, `--name=value`, boolean
 * flags, repeated options, and positionals. Unknown options are errors that name the option.
 */
import { InputError } from '../errors.js';

export interface OptionSpec {
  /** 'string' takes a value, 'boolean' does not; 'number' takes a numeric value. */
  type: 'string' | 'number' | 'boolean';
  /** The option may be given several times (values collected in an array). */
  multiple?: boolean;
  short?: string;
}

export interface ParsedArgs {
  positionals: string[];
  options: Record<string, string | number | boolean | Array<string | number>>;
}

export function parseArgs(argv: string[], spec: Record<string, OptionSpec>, command: string): ParsedArgs {
  const positionals: string[] = [];
  const options: ParsedArgs['options'] = {};
  const byShort = new Map<string, string>();
  for (const [k, v] of Object.entries(spec)) if (v.short) byShort.set(v.short, k);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    let name: string | undefined;
    let value: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      if (eq >= 0) value = a.slice(eq + 1);
    } else if (a.startsWith('-') && a.length === 2 && byShort.has(a[1]!)) {
      name = byShort.get(a[1]!)!;
    } else if (/^-[A-Za-z]$/.test(a)) {
      // Not prompt text: `mpt generate -m model.gguf …` (llama.cpp's habit) would otherwise
      // generate from the default model with "-m model.gguf …" as the prompt.
      throw new InputError(
        `unknown option ${a} (see mpt ${command} --help; "--" before a prompt that starts with "-")`,
      );
    } else {
      positionals.push(a);
      continue;
    }
    const s = spec[name];
    if (!s) throw new InputError(`unknown option --${name} (see mpt ${command} --help)`);
    let v: string | number | boolean;
    if (s.type === 'boolean') {
      if (value !== undefined) v = value !== 'false' && value !== '0';
      else v = true;
    } else {
      if (value === undefined) {
        if (i + 1 >= argv.length) throw new InputError(`option --${name} needs a value`);
        value = argv[++i]!;
      }
      if (s.type === 'number') {
        const n = Number(value);
        if (value.trim() === '' || !Number.isFinite(n))
          throw new InputError(`option --${name} needs a number, got "${value}"`);
        v = n;
      } else v = value;
    }
    if (s.multiple) {
      const prev = options[name];
      const arr = Array.isArray(prev) ? prev : [];
      arr.push(v as string | number);
      options[name] = arr;
    } else options[name] = v;
  }
  return { positionals, options };
}

/** A comma-separated list of token ids given with `option` (e.g. "1,2,3"), each a non-negative integer. */
export function parseTokenIds(spec: string, option: string): number[] {
  const ids = spec
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => {
      const n = Number(s);
      if (!Number.isInteger(n) || n < 0) throw new InputError(`${option}: "${s}" is not a token id`);
      return n;
    });
  if (ids.length === 0) throw new InputError(`${option} needs at least one token id`);
  return ids;
}
