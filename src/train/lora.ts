/**
 * LoRA adapters on disk, in the layout Hugging Face PEFT saves and loads (`save_pretrained` /
 * `PeftModel.from_pretrained`), so a fine-tune ships megabytes instead of a model:
 *
 *   adapter_model.safetensors  f32 tensors `base_model.model.<module>.lora_A.weight` [r, in] and
 *                              `base_model.model.<module>.lora_B.weight` [out, r], where <module> is
 *                              the Linear's path in the MPT model (`transformer.blocks.0.attn.Wqkv`)
 *   adapter_config.json        peft_type LORA, task_type CAUSAL_LM, r, lora_alpha, target_modules,
 *                              base_model_name_or_path, bias "none", fan_in_fan_out false, ...
 *
 * Applying an adapter: W' = W + (lora_alpha / r) · B·A. Reading also accepts the tensor names
 * earlier versions wrote (`<module>.lora_A`, `<module>.lora_B`). Saving stages both files beside
 * the folder and publishes them with adapter_config.json last (publishFiles), so a crash never
 * leaves a folder that looks complete but pairs a new config with old weights or the reverse.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openSafetensors, writeSafetensors } from '../formats/safetensors.js';
import { tensorToFloat32 } from '../formats/dtypes.js';
import { FormatError, InputError, UnsupportedError } from '../errors.js';
import { JSON_FILE_LIMITS, readJsonFile } from '../formats/json-file.js';
import type { LoraConfig, TrainModel } from './model.js';
import { publishFiles, removeStaleTemps, tempPathOf } from './durable-fs.js';

const CONFIG = 'adapter_config.json';
const WEIGHTS = 'adapter_model.safetensors';
const TARGETS: readonly string[] = ['Wqkv', 'out_proj', 'up_proj', 'down_proj'] satisfies LoraConfig['targets'];

/** PEFT's name of an adapter tensor: `<module>.lora_A` → `base_model.model.<module>.lora_A.weight`. */
export function peftTensorName(param: string): string {
  return `base_model.model.${param}.weight`;
}

/** adapter_config.json as PEFT writes it for a LoRA on a causal LM. */
export function peftAdapterConfig(lora: LoraConfig, baseModel: string): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    revision: null,
    r: lora.rank,
    lora_alpha: lora.alpha,
    lora_dropout: 0,
    target_modules: [...lora.targets],
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    use_rslora: false,
    use_dora: false,
  };
}

export async function saveLoraAdapters(model: TrainModel, dir: string, baseModel: string): Promise<void> {
  if (!model.lora) throw new InputError('the model has no LoRA adapters to save');
  await removeStaleTemps(dir);
  const tmp = tempPathOf(dir);
  await mkdir(tmp, { recursive: true });
  const tensors = model.params
    .filter((p) => p.name.includes('.lora_'))
    .map((p) => ({
      name: peftTensorName(p.name),
      dtype: 'f32' as const,
      shape: p.shape,
      data: new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength).slice(),
    }));
  await writeSafetensors(join(tmp, WEIGHTS), tensors);
  await writeFile(join(tmp, CONFIG), JSON.stringify(peftAdapterConfig(model.lora, baseModel), null, 2) + '\n');
  await mkdir(dir, { recursive: true });
  await publishFiles(tmp, dir, CONFIG);
}

/** The LoRA settings of an adapter_config.json, refusing the PEFT options this trainer does not implement. */
function loraConfigOf(cfg: Record<string, unknown>, path: string): LoraConfig {
  if (cfg['peft_type'] !== undefined && cfg['peft_type'] !== 'LORA') {
    throw new UnsupportedError(`${path}: peft_type ${JSON.stringify(cfg['peft_type'])} is not LORA`);
  }
  const r = cfg['r'];
  const alpha = cfg['lora_alpha'] ?? r;
  const targets = cfg['target_modules'];
  if (typeof r !== 'number' || !(r >= 1) || typeof alpha !== 'number') {
    throw new FormatError(`${path}: r and lora_alpha must be numbers`);
  }
  if (!Array.isArray(targets) || targets.length === 0 || !targets.every((t) => TARGETS.includes(t))) {
    throw new UnsupportedError(
      `${path}: target_modules ${JSON.stringify(targets)}: supported are lists of ${TARGETS.join(', ')}`,
    );
  }
  const unsupported: Array<[string, boolean]> = [
    ['fan_in_fan_out', cfg['fan_in_fan_out'] === true],
    ['bias', cfg['bias'] !== undefined && cfg['bias'] !== 'none'],
    ['use_rslora', cfg['use_rslora'] === true],
    ['use_dora', cfg['use_dora'] === true],
    ['layers_to_transform', cfg['layers_to_transform'] !== undefined && cfg['layers_to_transform'] !== null],
    ['rank_pattern', Object.keys((cfg['rank_pattern'] as object | null) ?? {}).length > 0],
    ['alpha_pattern', Object.keys((cfg['alpha_pattern'] as object | null) ?? {}).length > 0],
  ];
  const bad = unsupported.filter(([, b]) => b).map(([k]) => `${k}: ${JSON.stringify(cfg[k])}`);
  if (bad.length) throw new UnsupportedError(`${path}: LoRA options not supported here: ${bad.join(', ')}`);
  return { rank: r, alpha, targets: targets as LoraConfig['targets'] };
}

/**
 * Attaches saved adapters (PEFT's layout, or this project's earlier tensor names) to a model
 * loaded from the same base.
 */
export async function loadLoraAdapters(model: TrainModel, dir: string): Promise<LoraConfig> {
  const cfgPath = join(dir, CONFIG);
  const cfg: unknown = await readJsonFile(cfgPath, 'LoRA adapter config', JSON_FILE_LIMITS.config, InputError);
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) {
    throw new FormatError(`${cfgPath} must hold a JSON object`);
  }
  const lora = loraConfigOf(cfg as Record<string, unknown>, cfgPath);
  model.addLora(lora, 0);
  const src = await openSafetensors(join(dir, WEIGHTS));
  try {
    for (const p of model.params) {
      if (!p.name.includes('.lora_')) continue;
      const name = [peftTensorName(p.name), p.name].find((n) => src.info(n));
      if (!name) throw new FormatError(`${dir}/${WEIGHTS} has no adapter tensor ${peftTensorName(p.name)}`);
      const info = src.info(name)!;
      if (info.shape.join(',') !== p.shape.join(',')) {
        throw new FormatError(
          `${dir}/${WEIGHTS}: ${name} has shape [${info.shape}], the model needs [${p.shape}] (r = ${lora.rank})`,
        );
      }
      p.data.set(tensorToFloat32(info, await src.read(name)));
    }
  } finally {
    await src.close();
  }
  return lora;
}
