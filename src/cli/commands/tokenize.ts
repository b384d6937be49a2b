/** `mpt tokenize`: text on stdin → token ids as JSON. */
import { InputError } from '../../errors.js';
import { parseArgs } from '../args.js';
import { loadTokenizerForCli, readStdin, writeOut } from '../model-options.js';

export const summary = 'turn text from stdin into token ids (JSON)';
export const help = `usage: mpt tokenize [MODEL_DIR | TOKENIZER_JSON | FILE.gguf] [--jsonl] [--tokens] [--no-special]

Reads UTF-8 text from stdin and prints {"ids": [...]}: the ids exactly as the Hugging Face
tokenizers library encodes them, with no special tokens added. The whole input is the text
(a trailing newline counts). Without a path, the default model's tokenizer is used; a model
folder without tokenizer.json uses the shipped GPT-NeoX-20B tokenizer when it fits.

  --jsonl        one JSON string per input line; one {"ids": [...]} per output line
  --tokens       also print the token strings ("tokens": [...])
  --no-special   encode special-token text such as <|endoftext|> as ordinary text`;

export async function run(argv: string[]): Promise<number> {
  const { positionals, options } = parseArgs(
    argv,
    {
      jsonl: { type: 'boolean' },
      tokens: { type: 'boolean' },
      'no-special': { type: 'boolean' },
    },
    'tokenize',
  );
  if (positionals.length > 1)
    throw new InputError(`expected at most one path, got ${positionals.length} arguments (the text comes from stdin)`);
  const tok = await loadTokenizerForCli(positionals[0]);
  const parseSpecialTokens = options['no-special'] !== true;
  const result = (text: string) => {
    const ids = tok.encode(text, { parseSpecialTokens });
    return JSON.stringify(options['tokens'] ? { ids, tokens: tok.tokens(ids) } : { ids });
  };
  const input = await readStdin();
  if (!options['jsonl']) {
    writeOut(result(input) + '\n');
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
      throw new InputError(`line ${i + 1}: not JSON (each line must be a JSON string)`);
    }
    if (typeof v === 'object' && v !== null && typeof (v as { text?: unknown }).text === 'string')
      v = (v as { text: string }).text;
    if (typeof v !== 'string') throw new InputError(`line ${i + 1}: expected a JSON string (or {"text": ...})`);
    writeOut(result(v) + '\n');
  }
  return 0;
}
