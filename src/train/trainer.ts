/**
 * The training loop: global batches split into microbatches (gradient accumulation, loss
 * normalised by the number of target tokens in the whole global batch), lr schedule, gradient
 * clipping by global norm, optimizer step, periodic evaluation, checkpoints that resume exactly,
 * a JSONL log, a loss-curve SVG, and progress after every step (onStep; the command line draws it).
 *
 * The log is appended to step by step. A run first rewrites it from the history it starts from (a
 * run resumed from the checkpoint of step N: steps 1..N; a fresh one: nothing), so the steps that a
 * crashed run logged after its last checkpoint, which the resumed run replays, appear once.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.js';
import { IGNORE_INDEX, type Batch, type TrainModel } from './model.js';
import { clipGradNorm, Optimizer, type OptimizerConfig } from './optim.js';
import { lrMultiplier, type ScheduleConfig } from './schedule.js';
import { ShuffledIterator, type IteratorPosition } from './data.js';
import { checkpointToResume, loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { lossCurveSvg, type CurvePoint } from './svg.js';
import { writeFileAtomic } from './durable-fs.js';

/** Samples a trainer can draw batches from. */
export interface DataSource {
  /** Number of samples. */
  readonly count: number;
  /** The batch made of these samples. */
  batch(rows: readonly number[]): Batch;
}

export interface TrainerOptions {
  model: TrainModel;
  train: DataSource;
  eval?: DataSource | null;
  optimizer: OptimizerConfig;
  schedule: ScheduleConfig;
  maxSteps: number;
  globalBatch: number;
  microBatch: number;
  /** Max global gradient norm (null: no clipping). */
  gradClip: number | null;
  evalInterval: number;
  /** Eval batches per evaluation (of microBatch samples); 0 = the whole eval set. */
  evalBatches: number;
  seed: number;
  saveFolder?: string | null;
  /** Checkpoint every this many steps (and at the end); 0 = only at the end. */
  saveInterval: number;
  /** Called after each checkpoint (e.g. to export a Hugging Face folder). */
  onSave?: (step: number) => Promise<void>;
  /** Extra JSON stored in the checkpoint (config, vocabulary, ...). */
  checkpointMeta?: Record<string, unknown>;
  /** Progress lines: resuming, evaluations (default: stderr). */
  progress?: (line: string) => void;
  /** Called after every optimizer step (default: its summary and tokens/s through `progress`). */
  onStep?: (p: StepProgress) => void;
  /** Title of the loss-curve SVG. */
  title?: string;
  /** Stop (with a checkpoint) after this step without changing the schedule; resume later. */
  stopAt?: number;
  /**
   * When it aborts (Ctrl-C in the CLI), the run ends after the step in progress with a
   * checkpoint, as `stopAt` would there: the steps done are not lost, and a later run resumes.
   */
  stopSignal?: AbortSignal;
}

export interface StepRecord {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
  tokPerSec: number;
  elapsed: number;
}
export interface EvalRecord {
  step: number;
  evalLoss: number;
  evalPerplexity: number;
}

/** Where a run stands after a step. */
export interface StepProgress {
  record: StepRecord;
  maxSteps: number;
  /** The latest eval loss (NaN before any). */
  evalLoss: number;
  /** Whether this step evaluated. */
  newEval: boolean;
  /** Tokens and seconds of this step alone (evaluation not included). */
  stepTokens: number;
  stepSeconds: number;
  /** `step 3/100 | loss 3.1234 | eval 3.2345 (new) | lr 1.00e-3`. */
  summary: string;
}

const stepLogLine = (r: StepRecord) =>
  JSON.stringify({
    step: r.step,
    loss: r.loss,
    lr: r.lr,
    grad_norm: r.gradNorm,
    tokens: r.tokens,
    tok_per_sec: r.tokPerSec,
    elapsed_s: r.elapsed,
  }) + '\n';
const evalLogLine = (e: EvalRecord) => JSON.stringify({ step: e.step, eval_loss: e.evalLoss }) + '\n';

/** train-log.jsonl as a run that reached this history writes it (an eval before the step line of its step). */
function logText(history: readonly StepRecord[], evals: readonly EvalRecord[]): string {
  let out = '',
    e = 0;
  for (const r of history) {
    for (; e < evals.length && evals[e]!.step <= r.step; e++) out += evalLogLine(evals[e]!);
    out += stepLogLine(r);
  }
  for (; e < evals.length; e++) out += evalLogLine(evals[e]!);
  return out;
}

export class Trainer {
  readonly o: TrainerOptions;
  readonly optimizer: Optimizer;
  step = 0;
  tokens = 0;
  /** Wall-clock seconds spent in earlier sessions of this run. */
  private elapsedBefore = 0;
  private iter: ShuffledIterator;
  readonly history: StepRecord[] = [];
  readonly evals: EvalRecord[] = [];

  constructor(o: TrainerOptions) {
    if (o.globalBatch % o.microBatch !== 0) {
      throw new InputError(
        `global_train_batch_size (${o.globalBatch}) must be a multiple of device_train_microbatch_size (${o.microBatch})`,
      );
    }
    this.o = o;
    this.optimizer = new Optimizer(o.optimizer);
    this.iter = new ShuffledIterator(o.train.count, o.seed);
  }

  private get log(): (line: string) => void {
    return this.o.progress ?? ((l) => process.stderr.write(l + '\n'));
  }

  /**
   * Loads the newest complete checkpoint of saveFolder when there is one; returns whether it did.
   * Throws when the folder holds only incomplete checkpoints (see checkpointToResume).
   */
  async resume(): Promise<boolean> {
    if (!this.o.saveFolder) return false;
    const dir = await checkpointToResume(this.o.saveFolder, (l) => this.log(`note: ${l}`));
    if (!dir) return false;
    const ck = await loadCheckpoint(dir);
    const m = ck.meta as {
      step: number;
      tokens: number;
      iterator: IteratorPosition;
      optimizerStep: number;
      history: StepRecord[];
      evals: EvalRecord[];
      elapsed: number;
    };
    for (const p of this.o.model.params) {
      const t = ck.tensors.get(`param/${p.name}`);
      if (!t || t.data.length !== p.data.length)
        throw new InputError(`checkpoint ${dir} does not match the model (${p.name})`);
      p.data.set(t.data);
      const mm = ck.tensors.get(`opt_m/${p.name}`),
        vv = ck.tensors.get(`opt_v/${p.name}`);
      if (mm) this.optimizer.state.m.set(p.name, mm.data);
      if (vv) this.optimizer.state.v.set(p.name, vv.data);
    }
    this.optimizer.state.step = m.optimizerStep;
    this.step = m.step;
    this.tokens = m.tokens;
    this.elapsedBefore = m.elapsed ?? 0;
    this.iter = new ShuffledIterator(this.o.train.count, this.o.seed, m.iterator);
    this.history.splice(0, this.history.length, ...m.history);
    this.evals.splice(0, this.evals.length, ...m.evals);
    this.log(`resumed from ${dir} at step ${this.step}`);
    return true;
  }

  /** Saves a checkpoint; returns its folder (null without saveFolder). */
  async save(): Promise<string | null> {
    if (!this.o.saveFolder) return null;
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const p of this.o.model.params) {
      tensors.set(`param/${p.name}`, { shape: p.shape, data: p.data });
      const m = this.optimizer.state.m.get(p.name),
        v = this.optimizer.state.v.get(p.name);
      if (m) tensors.set(`opt_m/${p.name}`, { shape: p.shape, data: m });
      if (v) tensors.set(`opt_v/${p.name}`, { shape: p.shape, data: v });
    }
    const dir = await saveCheckpoint(this.o.saveFolder, {
      meta: {
        ...this.o.checkpointMeta,
        step: this.step,
        tokens: this.tokens,
        iterator: this.iter.position(),
        optimizerStep: this.optimizer.state.step,
        history: this.history,
        evals: this.evals,
        elapsed: this.elapsed(),
      },
      tensors,
    });
    await this.writeCurve();
    if (this.o.onSave) await this.o.onSave(this.step);
    return dir;
  }

  private startTime = 0;
  private elapsed(): number {
    return this.elapsedBefore + (this.startTime ? (performance.now() - this.startTime) / 1000 : 0);
  }

  /** Mean cross-entropy over the eval set (or its first evalBatches batches). */
  evaluate(): number {
    const ev = this.o.eval;
    if (!ev || ev.count === 0) return NaN;
    const bs = this.o.microBatch;
    const nBatches =
      this.o.evalBatches > 0 ? Math.min(this.o.evalBatches, Math.ceil(ev.count / bs)) : Math.ceil(ev.count / bs);
    let sum = 0,
      count = 0;
    for (let b = 0; b < nBatches; b++) {
      const rows: number[] = [];
      for (let i = b * bs; i < Math.min(ev.count, (b + 1) * bs); i++) rows.push(i);
      const r = this.o.model.step(ev.batch(rows), 0, false);
      sum += r.lossSum;
      count += r.count;
    }
    return sum / Math.max(1, count);
  }

  /** One optimizer step over one global batch; returns its mean loss. */
  trainStep(): StepRecord {
    const { model, globalBatch, microBatch } = this.o;
    const t0 = performance.now();
    const batches: Batch[] = [];
    for (let i = 0; i < globalBatch / microBatch; i++) batches.push(this.o.train.batch(this.iter.next(microBatch)));
    let targets = 0;
    for (const b of batches) for (const t of b.targets) if (t !== IGNORE_INDEX) targets++;
    const lr = this.o.optimizer.lr * lrMultiplier(this.o.schedule, this.step, this.o.maxSteps);
    model.zeroGrad();
    let lossSum = 0;
    for (const b of batches) lossSum += model.step(b, 1 / Math.max(1, targets), true).lossSum;
    const params = model.trainableParams();
    const gn = this.o.gradClip !== null ? clipGradNorm(params, this.o.gradClip) : NaN;
    this.optimizer.step(params, lr);
    this.step++;
    const tokens = batches.reduce((a, b) => a + b.B * b.T, 0);
    this.tokens += tokens;
    const dt = (performance.now() - t0) / 1000;
    const rec: StepRecord = {
      step: this.step,
      loss: lossSum / Math.max(1, targets),
      lr,
      gradNorm: gn,
      tokens: this.tokens,
      tokPerSec: tokens / dt,
      elapsed: this.elapsed(),
    };
    this.history.push(rec);
    return rec;
  }

  private async writeCurve(): Promise<void> {
    if (!this.o.saveFolder) return;
    const train: CurvePoint[] = this.history.map((h) => ({ step: h.step, value: h.loss }));
    const evals: CurvePoint[] = this.evals.map((e) => ({ step: e.step, value: e.evalLoss }));
    const svg = lossCurveSvg(train, evals, this.o.title ?? 'training loss');
    await writeFileAtomic(join(this.o.saveFolder, 'loss-curve.svg'), svg);
  }

  /**
   * Runs from the current step until maxSteps (call resume() first to continue a saved run), or
   * until stopAt or stopSignal; `checkpoint` is the folder of the last save (null without saveFolder).
   */
  async run(): Promise<{ history: StepRecord[]; evals: EvalRecord[]; checkpoint: string | null }> {
    const { saveFolder } = this.o;
    if (saveFolder) mkdirSync(saveFolder, { recursive: true });
    const logPath = saveFolder ? join(saveFolder, 'train-log.jsonl') : null;
    // What an earlier run logged past the state this run starts from is replaced (see the header).
    if (logPath) await writeFileAtomic(logPath, logText(this.history, this.evals));
    const writeLog = (line: string) => {
      if (logPath) appendFileSync(logPath, line);
    };
    this.startTime = performance.now();
    const onStep =
      this.o.onStep ?? ((p: StepProgress) => this.log(`${p.summary} | ${p.record.tokPerSec.toFixed(0)} tok/s`));
    let lastEval = this.evals.length ? this.evals[this.evals.length - 1]!.evalLoss : NaN;
    if (this.step === 0 && this.o.eval && this.o.evalInterval > 0) {
      lastEval = this.evaluate();
      this.evals.push({ step: 0, evalLoss: lastEval, evalPerplexity: Math.exp(lastEval) });
      writeLog(evalLogLine(this.evals[this.evals.length - 1]!));
      this.log(`step 0 | eval loss ${lastEval.toFixed(4)} (ppl ${Math.exp(lastEval).toFixed(1)})`);
    }
    const stopAt = Math.min(this.o.maxSteps, this.o.stopAt ?? Infinity);
    const stopSignal = this.o.stopSignal;
    while (this.step < stopAt && !stopSignal?.aborted) {
      const rec = this.trainStep();
      const stepTokens = rec.tokens - (this.history[this.history.length - 2]?.tokens ?? 0);
      let newEval = false;
      if (
        this.o.eval &&
        this.o.evalInterval > 0 &&
        (this.step % this.o.evalInterval === 0 || this.step === this.o.maxSteps)
      ) {
        lastEval = this.evaluate();
        this.evals.push({ step: this.step, evalLoss: lastEval, evalPerplexity: Math.exp(lastEval) });
        newEval = true;
        writeLog(evalLogLine(this.evals[this.evals.length - 1]!));
      }
      writeLog(stepLogLine(rec));
      const summary =
        `step ${rec.step}/${this.o.maxSteps} | loss ${rec.loss.toFixed(4)} | ` +
        `eval ${Number.isNaN(lastEval) ? '-' : lastEval.toFixed(4)}${newEval ? ' (new)' : ''} | ` +
        `lr ${rec.lr.toExponential(2)}`;
      const stepSeconds = stepTokens / rec.tokPerSec;
      onStep({ record: rec, maxSteps: this.o.maxSteps, evalLoss: lastEval, newEval, stepTokens, stepSeconds, summary });
      if (this.o.saveInterval > 0 && this.step % this.o.saveInterval === 0 && this.step < stopAt) await this.save();
      else if (saveFolder && this.step % 10 === 0) await this.writeCurve();
      // A step is synchronous: the signal's handler (a process signal's) runs only when the loop yields.
      if (stopSignal) await new Promise((resolve) => setImmediate(resolve));
    }
    const checkpoint = await this.save();
    return { history: this.history, evals: this.evals, checkpoint };
  }
}
