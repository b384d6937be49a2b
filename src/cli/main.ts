/**
 * `mpt` command-line entry: dispatches to one module per subcommand (src/cli/commands/NAME.ts),
 * each exporting `run(argv: string[]): Promise<number>` and `help: string`.
 * Errors become one line on stderr and a non-zero exit code.
 */
import { MptError } from '../errors.js';

interface CommandModule {
  run(argv: string[]): Promise<number>;
  help: string;
  summary: string;
}

/** Subcommands in the order `mpt --help` lists them. */
const COMMANDS = [
  'generate', 'chat', 'serve', 'info', 'logits', 'tokenize', 'detokenize', 'convert', 'quantize',
  'bench', 'train', 'finetune', 'perplexity',
] as const;

async function loadCommand(name: string): Promise<CommandModule | undefined> {
  if (!(COMMANDS as readonly string[]).includes(name)) return undefined;
  try {
    return (await import(`./commands/${name}.js`)) as CommandModule;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes(`commands/${name}.js`)) {
      return undefined;
    }
    throw e;
  }
}

async function usage(): Promise<string> {
  const lines = ['usage: mpt <command> [options]', '', 'commands:'];
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
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
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
    if (e instanceof MptError) {
      process.stderr.write(`mpt ${name}: ${e.message}\n`);
      return 1;
    }
    if (e instanceof Error && (e as NodeJS.ErrnoException).code === 'ENOENT') {
      process.stderr.write(`mpt ${name}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}
