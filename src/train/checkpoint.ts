/**
 * Training checkpoints: everything a run needs to continue exactly where it stopped (parameters,
 * optimizer moments and step, data position, loss history, vocabulary map, model config) in a
 * folder `<save_folder>/checkpoint/` holding `state.safetensors` (f32) and `trainer.json`.
 * Writes are atomic: the new checkpoint is written to a temporary folder, the old one renamed
 * aside, the new one renamed into place, the old one removed. A crash at any point leaves either
 * `checkpoint/` or `checkpoint.old/` complete, and `findCheckpoint` takes whichever exists.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openSafetensors, writeSafetensors, type TensorToWrite } from '../formats/safetensors.js';
import { tensorToFloat32 } from '../formats/dtypes.js';
import { FormatError } from '../errors.js';

export interface CheckpointData {
  /** Free-form JSON state (step, data position, history, config, vocabulary). */
  meta: Record<string, unknown>;
  /** Named f32 tensors (parameters and optimizer moments). */
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

const bytesOf = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();

export async function saveCheckpoint(folder: string, data: CheckpointData): Promise<string> {
  await mkdir(folder, { recursive: true });
  const final = join(folder, 'checkpoint'), old = join(folder, 'checkpoint.old');
  const tmp = join(folder, `checkpoint.tmp-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp);
  const tensors: TensorToWrite[] = [...data.tensors].map(([name, t]) => ({ name, dtype: 'f32', shape: t.shape, data: () => bytesOf(t.data) }));
  await writeSafetensors(join(tmp, 'state.safetensors'), tensors);
  await writeFile(join(tmp, 'trainer.json'), JSON.stringify(data.meta) + '\n');
  await rm(old, { recursive: true, force: true });
  if (existsSync(final)) await rename(final, old);
  await rename(tmp, final);
  await rm(old, { recursive: true, force: true });
  return final;
}

/** The newest complete checkpoint folder under `folder`, or null. */
export function findCheckpoint(folder: string): string | null {
  for (const name of ['checkpoint', 'checkpoint.old']) {
    const p = join(folder, name);
    if (existsSync(join(p, 'trainer.json')) && existsSync(join(p, 'state.safetensors'))) return p;
  }
  return null;
}

export async function loadCheckpoint(dir: string): Promise<CheckpointData> {
  let meta: Record<string, unknown>;
  try {
    meta = JSON.parse(await readFile(join(dir, 'trainer.json'), 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new FormatError(`cannot read ${join(dir, 'trainer.json')}: ${(e as Error).message}`);
  }
  const src = await openSafetensors(join(dir, 'state.safetensors'));
  try {
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const info of src.list()) tensors.set(info.name, { shape: info.shape, data: tensorToFloat32(info, await src.read(info.name)) });
    return { meta, tensors };
  } finally {
    await src.close();
  }
}
