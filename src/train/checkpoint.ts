/**
 * Training checkpoints: everything a run needs to continue exactly where it stopped (parameters,
 * optimizer moments and step, data position, loss history, vocabulary map, model config).
 *
 * Layout. Each save makes a new generation folder `<save_folder>/checkpoint-<n>/` (n is one more
 * than any generation present) holding `state.safetensors` (f32 tensors), `trainer.json` (the
 * JSON state) and, written last, `complete.json` (the step and the byte size of the other two).
 * A checkpoint is complete when complete.json is there and every file it lists has that size.
 *
 * Crash safety. A save (1) removes the `checkpoint.tmp-<pid>` folders of dead processes, (2) writes
 * the three files into its own `checkpoint.tmp-<pid>/`, each flushed to disk, then the folder,
 * (3) renames it to `checkpoint-<n>` and flushes the save folder, so the new checkpoint is durable,
 * and only then (4) removes every other checkpoint folder. A crash at any instant leaves the previous
 * complete checkpoint, the new one or both, never none; resuming takes the highest complete
 * generation. When a save folder holds checkpoints but none is complete, resuming refuses
 * (checkpointToResume) instead of starting over and replacing them at the next save.
 *
 * Earlier versions kept `checkpoint/` and `checkpoint.old/` without complete.json; they are read
 * (older than any generation, `checkpoint/` newer than `checkpoint.old/`) when trainer.json parses
 * and state.safetensors is whole, and removed by the next save.
 */
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { openSafetensors, writeSafetensors, type TensorToWrite } from '../formats/safetensors.js';
import { tensorToFloat32 } from '../formats/dtypes.js';
import { FormatError } from '../errors.js';
import { JSON_FILE_LIMITS, readJsonFile } from '../formats/json-file.js';
import { removeStaleTemps, syncPath, tempPathOf, writeSynced, type AfterStep } from './durable-fs.js';

export interface CheckpointData {
  /** Free-form JSON state (step, data position, history, config, vocabulary). */
  meta: Record<string, unknown>;
  /** Named f32 tensors (parameters and optimizer moments). */
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

const STATE = 'state.safetensors',
  META = 'trainer.json',
  MARK = 'complete.json';
const LEGACY = ['checkpoint', 'checkpoint.old'];
/** The training state holds the loss history: tens of bytes a step, so megabytes for long runs. */
const MAX_STATE_JSON_BYTES = 256 << 20;

const bytesOf = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();

/** The generation of a checkpoint folder's name (the legacy names rank below all), or null. */
function generationOf(name: string): number | null {
  const m = /^checkpoint-(\d+)$/.exec(name);
  if (m) return Number(m[1]);
  return LEGACY.includes(name) ? -1 - LEGACY.indexOf(name) : null;
}

/** Checkpoint folders under `folder`, newest first. */
async function checkpointFolders(folder: string): Promise<Array<{ dir: string; gen: number }>> {
  let names: string[];
  try {
    names = await readdir(folder);
  } catch {
    return [];
  }
  const out: Array<{ dir: string; gen: number }> = [];
  for (const name of names) {
    const gen = generationOf(name);
    const isDir =
      gen !== null &&
      (await stat(join(folder, name)).then(
        (s) => s.isDirectory(),
        () => false,
      ));
    if (isDir) out.push({ dir: join(folder, name), gen: gen! });
  }
  return out.sort((a, b) => b.gen - a.gen);
}

async function sizeOf(path: string): Promise<number | null> {
  try {
    return (await stat(path)).size;
  } catch {
    return null;
  }
}

/** Why `dir` is not a complete checkpoint, or null when it is. */
async function problemOf(dir: string): Promise<string | null> {
  if (LEGACY.includes(basename(dir))) return legacyProblemOf(dir);
  let mark: { files?: Record<string, number> };
  try {
    mark = (await readJsonFile(join(dir, MARK), 'checkpoint mark', JSON_FILE_LIMITS.config)) as typeof mark;
  } catch {
    return `${MARK} is missing or unreadable: the save that wrote this folder did not finish`;
  }
  const files = mark.files ?? {};
  for (const name of [STATE, META]) if (typeof files[name] !== 'number') return `${MARK} does not list ${name}`;
  for (const [name, size] of Object.entries(files)) {
    const actual = await sizeOf(join(dir, name));
    if (actual === null) return `${name} is missing`;
    if (actual !== size) return `${name} is ${actual} bytes where ${MARK} says ${size}: truncated or damaged`;
  }
  return null;
}

async function legacyProblemOf(dir: string): Promise<string | null> {
  try {
    await readJsonFile(join(dir, META), 'training state', MAX_STATE_JSON_BYTES);
  } catch (e) {
    if ((await sizeOf(join(dir, META))) === null) return `${META} is missing`;
    return `${META} is not valid JSON: ${(e as Error).message}`;
  }
  if ((await sizeOf(join(dir, STATE))) === null) return `${STATE} is missing`;
  try {
    await (await openSafetensors(join(dir, STATE))).close();
  } catch (e) {
    return `${STATE} is damaged: ${(e as Error).message}`;
  }
  return null;
}

export interface CheckpointScan {
  /** The newest complete checkpoint folder, or null. */
  latest: string | null;
  /** Checkpoint folders that are not complete, newest first, with what is wrong with each. */
  incomplete: Array<{ dir: string; reason: string }>;
}

/** Looks at every checkpoint folder under `folder` (reads only; changes nothing). */
export async function scanCheckpoints(folder: string): Promise<CheckpointScan> {
  const scan: CheckpointScan = { latest: null, incomplete: [] };
  for (const { dir } of await checkpointFolders(folder)) {
    const reason = await problemOf(dir);
    if (reason !== null) scan.incomplete.push({ dir, reason });
    else if (scan.latest === null) scan.latest = dir;
  }
  return scan;
}

/**
 * The checkpoint a run in `folder` resumes from: the newest complete one, or null when the folder
 * holds no checkpoint at all. Throws when it holds only incomplete ones, since starting over would
 * replace them. `note` hears about incomplete checkpoints newer than the one taken.
 */
export async function checkpointToResume(
  folder: string,
  note: (line: string) => void = () => {},
): Promise<string | null> {
  const scan = await scanCheckpoints(folder);
  const list = (xs: CheckpointScan['incomplete']) => xs.map((x) => `${x.dir} (${x.reason})`).join('; ');
  if (scan.latest === null && scan.incomplete.length > 0) {
    throw new FormatError(
      `${folder} holds no complete checkpoint, only ${list(scan.incomplete)}. ` +
        'Resuming is impossible and starting over would replace it: move it away to keep it, ' +
        'or pass --no-resume to start over deliberately',
    );
  }
  const genOf = (dir: string) => generationOf(basename(dir))!;
  const newer = scan.incomplete.filter((x) => scan.latest !== null && genOf(x.dir) > genOf(scan.latest));
  if (newer.length) note(`skipping incomplete checkpoint ${list(newer)}`);
  return scan.latest;
}

/**
 * Saves a checkpoint as a new generation (see the file header); returns its folder. `afterStep`
 * runs after each step of the save (tests throw from it to simulate a crash there).
 */
export async function saveCheckpoint(
  folder: string,
  data: CheckpointData,
  opts: { afterStep?: AfterStep } = {},
): Promise<string> {
  const afterStep = opts.afterStep ?? (() => {});
  await mkdir(folder, { recursive: true });
  const tmpBase = join(folder, 'checkpoint');
  await removeStaleTemps(tmpBase);
  await afterStep('removed stale temporary folders');
  const older = await checkpointFolders(folder);
  const gen = Math.max(0, ...older.map((c) => c.gen)) + 1;
  const tmp = tempPathOf(tmpBase);
  await mkdir(tmp);
  const tensors: TensorToWrite[] = [...data.tensors].map(([name, t]) => ({
    name,
    dtype: 'f32',
    shape: t.shape,
    data: () => bytesOf(t.data),
  }));
  await writeSafetensors(join(tmp, STATE), tensors); // flushed before it is renamed into place
  await afterStep(`wrote ${STATE}`);
  const meta = new TextEncoder().encode(JSON.stringify(data.meta) + '\n');
  await writeSynced(join(tmp, META), meta);
  await afterStep(`wrote ${META}`);
  const files = { [STATE]: (await stat(join(tmp, STATE))).size, [META]: meta.byteLength };
  await writeSynced(join(tmp, MARK), JSON.stringify({ step: data.meta['step'] ?? null, files }) + '\n');
  await syncPath(tmp, true);
  await afterStep(`wrote ${MARK}`);
  const final = join(folder, `checkpoint-${gen}`);
  await rename(tmp, final);
  await syncPath(folder, true);
  await afterStep(`published ${basename(final)}`);
  // The new checkpoint is durable: the older ones (complete or not) can go.
  for (const { dir } of older) {
    await rm(dir, { recursive: true, force: true });
    await afterStep(`removed ${basename(dir)}`);
  }
  await syncPath(folder, true);
  return final;
}

/** The JSON state of a checkpoint alone (without reading its tensors). */
export async function loadCheckpointMeta(dir: string): Promise<Record<string, unknown>> {
  const meta = await readJsonFile(join(dir, META), 'training state', MAX_STATE_JSON_BYTES);
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) {
    throw new FormatError(`training state ${join(dir, META)} must hold a JSON object`);
  }
  return meta as Record<string, unknown>;
}

export async function loadCheckpoint(dir: string): Promise<CheckpointData> {
  const meta = await loadCheckpointMeta(dir);
  const src = await openSafetensors(join(dir, STATE));
  try {
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const info of src.list())
      tensors.set(info.name, { shape: info.shape, data: tensorToFloat32(info, await src.read(info.name)) });
    return { meta, tensors };
  } finally {
    await src.close();
  }
}
