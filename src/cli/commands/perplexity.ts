/**
 * `mpt perplexity MODEL FILE`: perplexity of a model on a text file by sliding windows
 * (method in src/train/perplexity.ts). Prints JSON {"perplexity": x, "tokens": n, ...}.
 */
import { parseArgs } from '../args.js';
import { InputError } from '../../errors.js';
import { bestKernels } from '../../train/best-kernels.js';
import { loadTrainModel, trainModelTokenizer } from '../../train/weights-io.js';
import { compactIdenticalRows, slidingWindowPerplexity } from '../../train/perplexity.js';
import { readTextFile, splitDocuments, tokenizeDocuments } from '../../train/data.js';
import { createProgress } from '../progress.js';
import { defaultModelPath } from '../../model/default-model.js';

export const summary = 'perplexity of a model on a text file (sliding windows)';
export const help = `usage: mpt perplexity [MODEL] FILE [options]

Prints {"perplexity": x, "tokens": n, ...} as JSON on stdout. MODEL defaults to the shipped
model. Progress goes to stderr: a bar redrawn in place in a terminal (tokens scored / total,
tokens/s, ETA), otherwise a line every 10 s; then a final line.

Method: FILE is tokenized like training data (documents split on <|endoftext|>, EOS after
each; a file without separators is one document + EOS): n tokens. Windows of max_seq_len
tokens (--window) start every --stride tokens (default window/2); each of the n − 1 next-token
predictions is scored once, in the first window where it has at least window − stride tokens
of context (less only at the start of the file). Perplexity = exp(mean NLL) with the full
vocabulary softmax.

options:
  --window N     window length (default: the model's max_seq_len)
  --stride N     window stride (default: window / 2)
  --threads N    threads for the matrix products (default: all cores)
  -q, --quiet    no progress on stderr
`;

export async function run(argv: string[]): Promise<number> {
  const { positionals, options } = parseArgs(
    argv,
    {
      window: { type: 'number' },
      stride: { type: 'number' },
      threads: { type: 'number' },
      quiet: { type: 'boolean', short: 'q' },
    },
    'perplexity',
  );
  if (positionals.length < 1 || positionals.length > 2)
    throw new InputError('needs [MODEL] FILE (see mpt perplexity --help)');
  const modelPath = positionals.length === 2 ? positionals[0]! : defaultModelPath();
  const file = positionals[positionals.length - 1]!;
  const text = readTextFile(file, 'text file');
  const kernels = await bestKernels(options['threads'] as number | undefined);
  try {
    const loaded = await loadTrainModel(modelPath, kernels);
    const tok = trainModelTokenizer(loaded);
    const tokens = tokenizeDocuments(splitDocuments(text), tok, tok.eosId ?? 0);
    const model = compactIdenticalRows(loaded.model, kernels);
    const t0 = performance.now();
    const quiet = options['quiet'] === true;
    const progress = createProgress('perplexity', { unit: 'tokens', lineEveryMs: 10_000, quiet });
    const r = slidingWindowPerplexity(model, tokens, {
      windowLength: options['window'] as number | undefined,
      stride: options['stride'] as number | undefined,
      onProgress: (done, total) => progress.update(done, total),
    });
    progress.finish();
    process.stdout.write(
      JSON.stringify({
        perplexity: Number(r.perplexity.toFixed(4)),
        tokens: r.tokens,
        mean_nll: Number(r.nll.toFixed(6)),
        window: r.windowLength,
        stride: r.stride,
        windows: r.windows,
        model: modelPath,
        file,
        seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
      }) + '\n',
    );
    return 0;
  } finally {
    kernels.close();
  }
}
