/**
 * `mpt finetune BASE_MODEL DATA.jsonl --out DIR`: instruction fine-tuning (loss on response tokens
 * only), full or LoRA. Writes a merged Hugging Face folder to DIR in the base's dtype (and the
 * adapters alone, as PEFT writes them, to DIR/adapter with --lora).
 */
import { join } from 'node:path';
import { parseArgs } from '../args.js';
import { InputError } from '../../errors.js';
import { bestKernels } from '../../train/best-kernels.js';
import { exportHfFolder, loadTrainModel, modelTokenizerFiles, trainModelTokenizer } from '../../train/weights-io.js';
import { instructBatch, readInstructJsonl } from '../../train/data.js';
import { HF_EXPORT_DTYPES, type HfExportDtype } from '../../model/hf-export.js';
import { Trainer } from '../../train/trainer.js';
import { signalStatus, watchInterrupt } from '../interrupt.js';
import { checkpointToResume } from '../../train/checkpoint.js';
import { optimizerConfig } from '../../train/optim.js';
import { parseScheduleName } from '../../train/schedule.js';
import { saveLoraAdapters } from '../../train/lora.js';
import { Rng } from '../../train/rng.js';
import type { LoraConfig } from '../../train/model.js';
import { StatusLine, stoppedNote, trainProgress } from '../progress.js';

export const summary = 'instruction fine-tuning from JSONL (full or LoRA)';
export const help = `usage: mpt finetune BASE_MODEL DATA.jsonl --out DIR [options]

Fine-tunes BASE_MODEL on JSONL lines {"prompt": ..., "response": ...} ("answer", "completion"
or "output" also name the response; "instruction"/"context" the prompt). The loss is on the
response tokens (and the EOS after them) only; batches are right-padded. DIR receives a full
Hugging Face model folder (adapters merged) in the base model's dtype (f32, f16 or bf16; see
--export-dtype) with the base's tokenizer files and, with --lora, DIR/adapter with the adapters
alone in PEFT's layout (adapter_config.json + adapter_model.safetensors, tensors named
base_model.model.<module>.lora_A.weight / lora_B.weight, as PEFT's save_pretrained writes them).
Examples longer than the context keep their first tokens (a note says how many and names the
first line); one whose prompt alone fills the context is skipped. Checkpoints go to
DIR/checkpoints (crash-safe); running the same command again resumes, and refuses to start over
when DIR/checkpoints holds only incomplete checkpoints (unless --no-resume). Progress goes to
stderr (redrawn in place in a terminal, a line per step otherwise); stdout gets a JSON summary.

An example data file ships with mpt-ts: recipes/finetune-sample.jsonl (eight short story
requests and stories). From the repository (or the installed package's) folder:
  mpt finetune models/default recipes/finetune-sample.jsonl --out my-model --steps 2 --batch-size 4
  mpt generate my-model "Write a short story about a cat who finds a red ball."

options:
  --out DIR             output folder (required)
  --lora                train LoRA adapters only (on Wqkv, out_proj, up_proj, down_proj)
  --rank N              LoRA rank (default 8)
  --alpha X             LoRA alpha (default 16)
  --epochs X            passes over the data (default 1)
  --steps N             optimizer steps (overrides --epochs)
  --batch-size N        examples (JSONL lines) per optimizer step (default 8; mpt generate's
                        --batch-size counts prompt tokens instead)
  --microbatch N        examples per forward pass (default: batch size)
  --max-seq-len N       truncate examples to N tokens (default: the model's max_seq_len)
  --lr X                peak learning rate (default 2e-4 with --lora, 2e-5 without)
  --optimizer NAME      decoupled_lionw | decoupled_adamw | adamw (default decoupled_adamw)
  --warmup N            warmup steps (default 10% of the steps)
  --eval-fraction X     examples held out for eval loss (default 0.05)
  --export-dtype T      f32 | bf16 | f16: type of DIR/model.safetensors (default: the base's)
  --seed N              (default 17)
  --threads N           threads for the matrix products
  --no-resume           start over, ignoring the checkpoints in DIR/checkpoints
`;

export async function run(argv: string[]): Promise<number> {
  const { positionals, options: o } = parseArgs(
    argv,
    {
      out: { type: 'string' },
      lora: { type: 'boolean' },
      rank: { type: 'number' },
      alpha: { type: 'number' },
      epochs: { type: 'number' },
      steps: { type: 'number' },
      'batch-size': { type: 'number' },
      microbatch: { type: 'number' },
      'max-seq-len': { type: 'number' },
      lr: { type: 'number' },
      optimizer: { type: 'string' },
      warmup: { type: 'number' },
      'eval-fraction': { type: 'number' },
      seed: { type: 'number' },
      threads: { type: 'number' },
      'no-resume': { type: 'boolean' },
      'export-dtype': { type: 'string' },
    },
    'finetune',
  );
  if (positionals.length !== 2) throw new InputError('needs BASE_MODEL and DATA.jsonl (see mpt finetune --help)');
  if (!o['out']) throw new InputError('needs --out DIR (see mpt finetune --help)');
  const [base, dataPath] = positionals as [string, string];
  const out = String(o['out']);
  const seed = (o['seed'] as number | undefined) ?? 17;
  const saveFolder = join(out, 'checkpoints');
  const exportDtypeOpt = o['export-dtype'] as string | undefined;
  if (exportDtypeOpt !== undefined && !HF_EXPORT_DTYPES.includes(exportDtypeOpt as HfExportDtype)) {
    throw new InputError(`--export-dtype must be ${HF_EXPORT_DTYPES.join(', ')}, got ${exportDtypeOpt}`);
  }
  // Refuse a folder of only incomplete checkpoints before the data and the model are read.
  if (!o['no-resume']) await checkpointToResume(saveFolder);
  const kernels = await bestKernels(o['threads'] as number | undefined);
  const status = new StatusLine({ lineEveryMs: 0 });
  try {
    const loaded = await loadTrainModel(base, kernels);
    const { model } = loaded;
    const tok = trainModelTokenizer(loaded, (m) => status.log(`note: ${m}`));
    // The tokenizer travels with the model (the shipped one when the base folder has none).
    const tokenizerFiles = modelTokenizerFiles(loaded, tok);
    const eos = tok.eosId ?? 0,
      pad = tok.padId ?? eos;
    const seqLen = Math.min((o['max-seq-len'] as number | undefined) ?? model.config.maxSeqLen, model.config.maxSeqLen);
    const { examples, truncated, skipped } = readInstructJsonl(dataPath, tok, eos, seqLen);
    const count = (n: number) => `${n} example${n === 1 ? '' : 's'}`;
    if (truncated.count) {
      status.log(
        `note: ${count(truncated.count)} longer than the ${seqLen}-token context truncated ` +
          `(first: ${dataPath}:${truncated.firstLine})`,
      );
    }
    if (skipped.count) {
      status.log(
        `note: ${count(skipped.count)} skipped: the prompt alone fills the ${seqLen}-token ` +
          `context, leaving no response token to train on (first: ${dataPath}:${skipped.firstLine})`,
      );
    }
    const order = examples.map((_, i) => i);
    new Rng(seed).shuffle(order);
    const nEval = Math.min(
      examples.length - 1,
      Math.round(examples.length * ((o['eval-fraction'] as number | undefined) ?? 0.05)),
    );
    const evalIdx = order.slice(0, nEval),
      trainIdx = order.slice(nEval);
    const source = (idx: number[]) => ({
      count: idx.length,
      batch: (rows: readonly number[]) =>
        instructBatch(
          examples,
          rows.map((r) => idx[r]!),
          seqLen,
          pad,
        ),
    });
    let lora: LoraConfig | null = null;
    if (o['lora']) {
      lora = {
        rank: (o['rank'] as number | undefined) ?? 8,
        alpha: (o['alpha'] as number | undefined) ?? 16,
        targets: ['Wqkv', 'out_proj', 'up_proj', 'down_proj'],
      };
      model.addLora(lora, seed);
    }
    const batch = (o['batch-size'] as number | undefined) ?? 8;
    const micro = (o['microbatch'] as number | undefined) ?? batch;
    const steps =
      (o['steps'] as number | undefined) ??
      Math.max(1, Math.ceil((((o['epochs'] as number | undefined) ?? 1) * trainIdx.length) / batch));
    const lr = (o['lr'] as number | undefined) ?? (lora ? 2e-4 : 2e-5);
    const trainer = new Trainer({
      model,
      train: source(trainIdx),
      eval: nEval > 0 ? source(evalIdx) : null,
      optimizer: optimizerConfig((o['optimizer'] as string | undefined) ?? 'decoupled_adamw', { lr, weightDecay: 0 }),
      schedule: {
        name: parseScheduleName('cosine_with_warmup'),
        warmupSteps: (o['warmup'] as number | undefined) ?? Math.floor(steps / 10),
        alphaF: 0.1,
      },
      maxSteps: steps,
      globalBatch: batch,
      microBatch: micro,
      gradClip: 1,
      evalInterval: Math.max(1, Math.floor(steps / 5)),
      evalBatches: 0,
      seed,
      saveFolder,
      saveInterval: Math.max(1, Math.floor(steps / 5)),
      checkpointMeta: { base, data: dataPath, lora },
      progress: (l) => status.log(l),
      onStep: trainProgress(status),
      title: `mpt finetune ${lora ? `LoRA r=${lora.rank}` : 'full'}`,
    });
    const nTrain = model.trainableParams().reduce((a, p) => a + p.data.length, 0);
    const loraNote = lora ? ` (LoRA r=${lora.rank}, alpha ${lora.alpha})` : '';
    status.log(
      `finetune: ${trainIdx.length} train / ${nEval} eval examples, ${steps} steps of ${batch}, ` +
        `${(nTrain / 1e6).toFixed(3)} M trainable parameters${loraNote}, kernels ${kernels.name}`,
    );
    if (!o['no-resume']) await trainer.resume();
    const interrupt = watchInterrupt(() =>
      status.log(
        `interrupted: saving a checkpoint after step ${trainer.step + 1} (interrupt again to quit without it)`,
      ),
    );
    (trainer.o as { stopSignal?: AbortSignal }).stopSignal = interrupt.signal;
    let ran: Awaited<ReturnType<typeof trainer.run>>;
    try {
      ran = await trainer.run();
    } finally {
      interrupt.release();
    }
    const { history, evals } = ran;
    if (interrupt.signal.aborted) {
      // The model is not exported from an unfinished run; the same command resumes it.
      status.log(stoppedNote(trainer.step, ran.checkpoint));
      return signalStatus(interrupt.signal.reason as NodeJS.Signals);
    }
    status.finish();
    if (lora) {
      await saveLoraAdapters(model, join(out, 'adapter'), base);
      model.mergeLora();
    }
    const dtype = (exportDtypeOpt as HfExportDtype | undefined) ?? loaded.dtype;
    await exportHfFolder(model, out, { dtype, tokenizer: tokenizerFiles });
    process.stdout.write(
      JSON.stringify({
        steps: trainer.step,
        final_loss: history[history.length - 1]?.loss ?? null,
        eval_loss: evals[evals.length - 1]?.evalLoss ?? null,
        out,
      }) + '\n',
    );
    return 0;
  } finally {
    status.finish();
    kernels.close();
  }
}
