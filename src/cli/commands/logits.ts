/** `mpt logits MODEL --tokens 1,2,3 [--last]`: the debugging tool for comparing implementations. */
import { InputError } from '../../errors.js';
import { defaultModelPath } from '../../model/default-model.js';
import { loadRunner, type BackendName } from '../../backends/registry.js';
import { parseArgs, parseTokenIds } from '../args.js';

export const summary = 'print the logits for a list of token ids as JSON';
export const help = `usage: mpt logits [MODEL] --tokens 1,2,3 [--last] [--backend reference|wasm|webgpu] [--threads N]

Runs the token ids through the model in one forward pass and prints JSON
{"logits": [[...], ...]}: one row of vocab_size numbers per position, or only the last with --last.
The default backend is the reference one (MosaicML's forward pass written out in plain TypeScript:
exact, slow on large models); --backend wasm is the fast one that generate uses.`;

export async function run(argv: string[]): Promise<number> {
  const { positionals, options } = parseArgs(
    argv,
    {
      tokens: { type: 'string' },
      last: { type: 'boolean' },
      backend: { type: 'string' },
      threads: { type: 'number' },
    },
    'logits',
  );
  const path = positionals[0] ?? defaultModelPath();
  const spec = options['tokens'] as string | undefined;
  if (!spec) throw new InputError('--tokens is required, e.g. --tokens 1,2,3');
  const ids = parseTokenIds(spec, '--tokens');
  const { runner } = await loadRunner(path, {
    backend: (options['backend'] as BackendName | undefined) ?? 'reference',
    threads: options['threads'] as number | undefined,
  });
  try {
    const cache = runner.createCache({ capacity: ids.length });
    const [out] = await runner.forward([{ cache, tokens: ids }], { logits: options['last'] ? 'last' : 'all' });
    const V = runner.config.vocabSize;
    const rows: number[][] = [];
    for (let r = 0; r < out!.logits.length / V; r++) rows.push(Array.from(out!.logits.subarray(r * V, (r + 1) * V)));
    process.stdout.write(JSON.stringify({ logits: rows }) + '\n');
  } finally {
    await runner.dispose();
  }
  return 0;
}
