/** `mpt detokenize`: token ids as JSON on stdin → text. */
import { InputError } from '../../errors.js';
import { parseArgs } from '../args.js';
import { loadTokenizerForCli, readStdin, writeOut } from '../model-options.js';

export const summary = 'turn token ids (JSON on stdin) back into text';
export const help = `usage: mpt detokenize [MODEL_DIR | TOKENIZER_JSON | FILE.gguf] [--jsonl] [--skip-special]

Reads {"ids": [...]} (or a bare [...] list) from stdin and prints the decoded text exactly, with
no newline added. Decoding is the Hugging Face tokenizers library's: ids the tokenizer does not
know are skipped and invalid UTF-8 becomes U+FFFD.

  --jsonl          one ids list (or {"ids": [...]}) per input line; one JSON string per output line
  --skip-special   leave special tokens (<|endoftext|>, ...) out`;

function idsOf(v: unknown, where: string): number[] {
  const ids = Array.isArray(v) ? v : typeof v === 'object' && v !== null ? (v as { ids?: unknown }).ids : undefined;
  if (!Array.isArray(ids) || !ids.every((x) => Number.isInteger(x) && x >= 0)) {
    throw new InputError(`${where}: expected {"ids": [non-negative integers]} or a list of ids`);
  }
  return ids as number[];
}

export async function run(argv: string[]): Promise<number> {
  const { positionals, options } = parseArgs(
    argv,
    { jsonl: { type: 'boolean' }, 'skip-special': { type: 'boolean' } },
    'detokenize',
  );
  if (positionals.length > 1)
    throw new InputError(`expected at most one path, got ${positionals.length} arguments (the ids come from stdin)`);
  const tok = await loadTokenizerForCli(positionals[0]);
  const skipSpecialTokens = options['skip-special'] === true;
  const input = await readStdin();
  if (!options['jsonl']) {
    let v: unknown;
    try {
      v = JSON.parse(input);
    } catch {
      throw new InputError('stdin is not JSON: expected {"ids": [...]}');
    }
    writeOut(tok.decode(idsOf(v, 'stdin'), { skipSpecialTokens }));
    return 0;
  }
  const lines = input.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    if (line.trim() === '') continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new InputError(`line ${i + 1}: not JSON (each line must be a list of ids or {"ids": [...]})`);
    }
    writeOut(JSON.stringify(tok.decode(idsOf(v, `line ${i + 1}`), { skipSpecialTokens })) + '\n');
  }
  return 0;
}
