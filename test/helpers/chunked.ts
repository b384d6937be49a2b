/** Feeds token ids through a runner in chunks, one cache, collecting every position's logits. */
import type { KvType, ModelRunner } from '../../src/backends/backend.js';

export async function runChunks(
  r: ModelRunner,
  ids: number[],
  chunks: number[],
  vocab: number,
  kvType?: KvType,
): Promise<Float32Array> {
  const total = chunks.reduce((a, b) => a + b, 0);
  const cache = r.createCache(kvType ? { capacity: total, kvType } : { capacity: total });
  const out = new Float32Array(total * vocab);
  let at = 0;
  for (const n of chunks) {
    const [o] = await r.forward([{ cache, tokens: ids.slice(at, at + n) }], { logits: 'all' });
    out.set(o!.logits, at * vocab);
    at += n;
  }
  cache.dispose();
  return out;
}
