/**
 * `mpt` command-line entry: dispatches to one module per subcommand (src/cli/commands/NAME.ts),
 * each exporting `run(argv: string[]): Promise<number>` and `help: string`.
 * Errors a user can cause become one line on stderr and a non-zero exit code; a closed stdout
 * ends the process quietly (installProcessHandlers, for bin/mpt.js).
 */
import { MptError, systemErrorText } from '../errors.js';
import { DEFAULT_HOST, DEFAULT_PORT } from '../server/listen-address.js';

interface CommandModule {
  run(argv: string[]): Promise<number>;
  help: string;
  summary: string;
}

/** Subcommands in the order `mpt --help` lists them. */
const COMMANDS = [
  'generate',
  'chat',
  'serve',
  'web',
  'info',
  'logits',
  'tokenize',
  'detokenize',
  'convert',
  'quantize',
  'bench',
  'train',
  'finetune',
  'perplexity',
] as const;

async function loadCommand(name: string): Promise<CommandModule | undefined> {
  if (!(COMMANDS as readonly string[]).includes(name)) return undefined;
  try {
    return (await import(`./commands/${name}.js`)) as CommandModule;
  } catch (e) {
    if (
      (e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' &&
      String((e as Error).message).includes(`commands/${name}.js`)
    ) {
      return undefined;
    }
    throw e;
  }
}

/**
 * Codes of file-system errors a user's path or disk causes. Their messages name the path
 * ("EISDIR: illegal operation on a directory, read 'x'"), so they are shown as one line.
 */
const USER_FS_ERRORS = new Set([
  'ENOENT',
  'EISDIR',
  'ENOTDIR',
  'EACCES',
  'EPERM',
  'ENOSPC',
  'EDQUOT',
  'EROFS',
  'ELOOP',
  'ENAMETOOLONG',
  'EEXIST',
  'EMFILE',
  'ENXIO',
  'ERR_FS_FILE_TOO_LARGE',
]);

/** The one-line message for an error a user can cause, or undefined for one that is a bug. */
export function userErrorMessage(e: unknown): string | undefined {
  if (e instanceof MptError) return e.message;
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (e instanceof Error && typeof code === 'string' && USER_FS_ERRORS.has(code)) {
    const path = (e as NodeJS.ErrnoException).path;
    return typeof path === 'string' ? `${path}: ${systemErrorText(e)}` : e.message;
  }
  return undefined;
}

/**
 * Makes the process behave as a Unix command. A reader that stops early (`mpt generate … |
 * head`) closes the pipe: the next write fails with EPIPE, and the process ends quietly with
 * status 0 instead of an unhandled 'error' event's stack trace. An error that escapes a command
 * outside its promise (a callback, a stream) is one line when a user caused it.
 */
export function installProcessHandlers(): void {
  const onStreamError = (e: NodeJS.ErrnoException): void => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  };
  process.stdout.on('error', onStreamError);
  process.stderr.on('error', onStreamError);
  const fatal = (e: unknown): void => {
    if ((e as NodeJS.ErrnoException | null)?.code === 'EPIPE') process.exit(0);
    const message = userErrorMessage(e);
    const bug = (e as Error | null)?.stack ?? String(e);
    process.stderr.write(message !== undefined ? `mpt: ${message}\n` : `mpt: internal error: ${bug}\n`);
    process.exit(1);
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
}

/** The first command a new user runs (README's set-up ends with it): a story from the shipped model. */
export const FIRST_EXAMPLE = 'mpt generate "Once upon a time"';

/** Where `mpt --help` starts: the first example and where to go next, all on the shipped model. */
const START_HERE = `start here (the shipped model, models/default/, offline):
  ${FIRST_EXAMPLE.padEnd(34)} write a story
  ${'mpt chat'.padEnd(34)} chat in the terminal (Ctrl-D leaves)
  ${'mpt serve'.padEnd(34)} OpenAI-compatible API and a chat page at http://${DEFAULT_HOST}:${DEFAULT_PORT}/
  ${'mpt web'.padEnd(34)} a chat app that runs the model in the browser tab
To use another model, name it first: a Hugging Face MPT folder or a .gguf file (mpt generate
MODEL "prompt", mpt serve MODEL). The library, the browser and training: README.md.`;

async function usage(): Promise<string> {
  const lines = ['usage: mpt <command> [options]', '', START_HERE, '', 'commands:'];
  for (const name of COMMANDS) {
    const mod = await loadCommand(name);
    if (mod) lines.push(`  ${name.padEnd(12)} ${mod.summary}`);
  }
  lines.push('', 'Run `mpt <command> --help` for the options of a command.');
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write((await usage()) + '\n');
    return name === undefined ? 1 : 0;
  }
  if (name === '--version' || name === '-v') {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    process.stdout.write(`mpt-ts ${pkg.version}\n`);
    return 0;
  }
  const mod = await loadCommand(name);
  if (!mod) {
    process.stderr.write(`mpt: unknown command "${name}"\n\n${await usage()}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(mod.help.trimEnd() + '\n');
    return 0;
  }
  try {
    return await mod.run(rest);
  } catch (e) {
    const message = userErrorMessage(e);
    if (message === undefined) throw e;
    process.stderr.write(`mpt ${name}: ${message}\n`);
    return 1;
  }
}
