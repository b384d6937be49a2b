/**
 * `mpt train RECIPE.yaml`: pretraining (or continued training) from an llm-foundry-style YAML
 * recipe (see src/train/recipe.ts). Resumes from `save_folder` when it holds a checkpoint, and
 * refuses to start over when it holds only incomplete ones (unless --no-resume).
 */
import { parseArgs } from '../args.js';
import { bestKernels } from '../../train/best-kernels.js';
import { parseDuration, prepareRun, readRecipe } from '../../train/recipe.js';
import { InputError } from '../../errors.js';
import { signalStatus, watchInterrupt } from '../interrupt.js';
import { StatusLine, stoppedNote, trainProgress } from '../progress.js';

export const summary = 'train an MPT model from a YAML recipe (llm-foundry style)';
export const help = `usage: mpt train RECIPE.yaml [options]

Trains an MPT model as the recipe says (model, tokenizer, data, optimizer, scheduler,
max_duration as "1000ba" / "2000000tok" / "2ep", eval_interval, save_folder, seed,
global_train_batch_size, device_train_microbatch_size). Progress goes to stderr: in a terminal
one line redrawn in place (step/total, loss, eval loss, lr, tokens/s, ETA) with evaluations kept
as lines; otherwise a line per step. stdout gets a JSON summary at the end.

save_folder gets train-log.jsonl, loss-curve.svg and numbered checkpoint-<n> folders that a
second run resumes from exactly. Saves are crash-safe: a run killed at any moment resumes from
its last complete checkpoint; when save_folder holds only incomplete checkpoints, mpt train stops
and says so instead of starting over (--no-resume starts over deliberately). Ctrl-C (or SIGTERM)
ends the run after the step in progress with a checkpoint, and says where it is; a second one
quits at once (the last checkpoint saved before stays). With
export_folder, a Hugging Face model folder is written at every save (export_dtype).

options:
  --threads N        worker threads for the matrix products (default: all cores)
  --duration D       overrides max_duration ("1000ba", "2000000tok", "2ep")
  --max-steps N      same as --duration Nba
  --stop-at N        stop after step N with a checkpoint, keeping the schedule of the full
                     duration (a later run resumes from there)
  --save-folder DIR  overrides save_folder (the recipe's export_folder, if any, stays where it says)
  --no-resume        start over, ignoring the checkpoints in save_folder (the first save
                     replaces them)
`;

export async function run(argv: string[]): Promise<number> {
  const { positionals, options } = parseArgs(
    argv,
    {
      threads: { type: 'number' },
      'max-steps': { type: 'number' },
      duration: { type: 'string' },
      'stop-at': { type: 'number' },
      'save-folder': { type: 'string' },
      'no-resume': { type: 'boolean' },
    },
    'train',
  );
  if (positionals.length !== 1) throw new InputError('needs one argument: the recipe YAML (see mpt train --help)');
  const rc = readRecipe(positionals[0]!);
  if (options['save-folder']) rc.saveFolder = String(options['save-folder']);
  if (options['max-steps'] !== undefined) rc.maxDuration = { value: Number(options['max-steps']), unit: 'ba' };
  if (options['duration'] !== undefined) rc.maxDuration = parseDuration(options['duration'], '--duration');
  const kernels = await bestKernels((options['threads'] as number | undefined) ?? rc.threads);
  // Outside a terminal every step is a line (a training log); in one, a redrawn status line.
  const status = new StatusLine({ lineEveryMs: 0 });
  try {
    const resume = !options['no-resume'];
    const prep = await prepareRun(rc, kernels, (l) => status.log(l), { resume, onStep: trainProgress(status) });
    const nParams = prep.model.params.reduce((a, p) => a + p.data.length, 0);
    const c = prep.model.config;
    status.log(
      `model: d_model ${c.dModel}, ${c.nLayers} layers, ${c.nHeads} heads, ${(nParams / 1e6).toFixed(2)} M ` +
        `trained parameters; kernels ${kernels.name}; ${prep.trainer.o.maxSteps} steps of ` +
        `${rc.globalBatch} × ${rc.maxSeqLen} tokens`,
    );
    if (options['stop-at'] !== undefined) (prep.trainer.o as { stopAt?: number }).stopAt = Number(options['stop-at']);
    if (resume) await prep.trainer.resume();
    const interrupt = watchInterrupt(() =>
      status.log(
        `interrupted: saving a checkpoint after step ${prep.trainer.step + 1} (interrupt again to quit without it)`,
      ),
    );
    (prep.trainer.o as { stopSignal?: AbortSignal }).stopSignal = interrupt.signal;
    let ran: Awaited<ReturnType<typeof prep.trainer.run>>;
    try {
      ran = await prep.trainer.run();
    } finally {
      interrupt.release();
    }
    const { history, evals } = ran;
    if (interrupt.signal.aborted) {
      status.log(stoppedNote(prep.trainer.step, ran.checkpoint));
      return signalStatus(interrupt.signal.reason as NodeJS.Signals);
    }
    status.finish();
    const last = history[history.length - 1];
    const lastEval = evals[evals.length - 1];
    process.stdout.write(
      JSON.stringify({
        steps: prep.trainer.step,
        tokens: prep.trainer.tokens,
        final_loss: last?.loss ?? null,
        eval_loss: lastEval?.evalLoss ?? null,
        save_folder: rc.saveFolder,
        export_folder: rc.exportFolder,
      }) + '\n',
    );
    return 0;
  } finally {
    status.finish();
    kernels.close();
  }
}
