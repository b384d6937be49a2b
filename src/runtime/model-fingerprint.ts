/**
 * A model's identity for prompt cache files: cheap to compute (config, tensor list, the small
 * tensors' bytes), different for every set of weights that would give other KV values.
 */
import { createHash } from 'node:crypto';
import type { TensorSource } from '../formats/tensor-source.js';
import { toMosaicConfigJson, type MptConfig } from '../model/config.js';
import { openCheckpoint } from '../model/load.js';

function sortedJson(x: unknown): string {
  if (Array.isArray(x)) return `[${x.map(sortedJson).join(',')}]`;
  if (x && typeof x === 'object') {
    return `{${Object.keys(x)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${sortedJson((x as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(x) ?? 'null';
}

/** Bytes of small tensors read into the fingerprint (norm weights and biases). */
const FINGERPRINT_DATA_BUDGET = 8 * 2 ** 20;

/**
 * A cheap identity of a model's weights: sha256 over the config (as MosaicML writes it), every
 * tensor's name, dtype, shape and size, and the full bytes of the 1-D tensors (norm weights,
 * biases; a few KiB each, and different in every fine-tune) up to 8 MiB, or of the smallest
 * tensor when there are none. Reading them costs milliseconds even for a 7B checkpoint.
 */
export async function modelFingerprint(config: MptConfig, tensors: TensorSource): Promise<string> {
  const h = createHash('sha256');
  h.update('mpt-ts model fingerprint 1\n');
  h.update(sortedJson(toMosaicConfigJson(config)));
  const infos = [...tensors.list()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const t of infos) h.update(`\n${t.name} ${t.dtype} ${t.shape.join('x')} ${t.byteLength}`);
  let small = infos.filter((t) => t.shape.length === 1);
  if (small.length === 0 && infos.length > 0) small = [infos.reduce((a, b) => (b.byteLength < a.byteLength ? b : a))];
  let budget = FINGERPRINT_DATA_BUDGET;
  for (const t of small) {
    if (t.byteLength > budget) continue;
    budget -= t.byteLength;
    h.update(`\n${t.name}:`);
    h.update(await tensors.read(t.name));
  }
  return h.digest('hex');
}

/** The fingerprint of a model folder or GGUF file (opens it, reads the small tensors, closes it). */
export async function fingerprintCheckpoint(path: string): Promise<string> {
  const ck = await openCheckpoint(path);
  try {
    return await modelFingerprint(ck.config, ck.tensors);
  } finally {
    await ck.tensors.close();
  }
}
