/**
 * LoRA adapters on disk: the adapter tensors alone (`adapter_model.safetensors`, names
 * `<linear>.lora_A` [r, in] and `<linear>.lora_B` [out, r]) plus `adapter_config.json` (rank,
 * alpha, target modules, base model), so a fine-tune ships megabytes instead of a model. The full
 * model is produced by merging (W += alpha/r · B·A) before export. Saving stages both files beside
 * the folder and publishes them with adapter_config.json last (publishFiles), so a crash never
 * leaves a folder that looks complete but pairs a new config with old weights or the reverse.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openSafetensors, writeSafetensors } from '../formats/safetensors.js';
import { tensorToFloat32 } from '../formats/dtypes.js';
import { InputError } from '../errors.js';
import type { LoraConfig, TrainModel } from './model.js';
import { publishFiles, removeStaleTemps, tempPathOf } from './durable-fs.js';

export async function saveLoraAdapters(model: TrainModel, dir: string, baseModel: string): Promise<void> {
  if (!model.lora) throw new InputError('the model has no LoRA adapters to save');
  await removeStaleTemps(dir);
  const tmp = tempPathOf(dir);
  await mkdir(tmp, { recursive: true });
  const tensors = model.params.filter((p) => p.name.includes('.lora_')).map((p) => ({
    name: p.name, dtype: 'f32' as const, shape: p.shape,
    data: new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength).slice(),
  }));
  await writeSafetensors(join(tmp, 'adapter_model.safetensors'), tensors);
  const cfg = { peft_type: 'LORA', r: model.lora.rank, lora_alpha: model.lora.alpha, target_modules: model.lora.targets, base_model_name_or_path: baseModel };
  await writeFile(join(tmp, 'adapter_config.json'), JSON.stringify(cfg, null, 2) + '\n');
  await mkdir(dir, { recursive: true });
  await publishFiles(tmp, dir, 'adapter_config.json');
}

/** Attaches adapters saved by saveLoraAdapters to a model loaded from the same base. */
export async function loadLoraAdapters(model: TrainModel, dir: string): Promise<LoraConfig> {
  const cfg = JSON.parse(await readFile(join(dir, 'adapter_config.json'), 'utf8')) as { r: number; lora_alpha: number; target_modules: LoraConfig['targets'] };
  const lora: LoraConfig = { rank: cfg.r, alpha: cfg.lora_alpha, targets: cfg.target_modules };
  model.addLora(lora, 0);
  const src = await openSafetensors(join(dir, 'adapter_model.safetensors'));
  try {
    for (const p of model.params) {
      if (!p.name.includes('.lora_')) continue;
      const info = src.info(p.name);
      if (!info) throw new InputError(`${dir} has no adapter tensor ${p.name}`);
      p.data.set(tensorToFloat32(info, await src.read(p.name)));
    }
  } finally {
    await src.close();
  }
  return lora;
}
