/** llama.cpp itself (node-llama-cpp's prebuilt binary) as a peer in tests. */
import type { LlamaContextOptions, LlamaModel, Token } from 'node-llama-cpp';

/** As the fixture's llama.cpp logits were made: f32 KV cache, no flash attention. */
export const LLAMA_CONTEXT: LlamaContextOptions = {
  contextSize: 256,
  threads: 1,
  flashAttention: false,
  experimentalKvCacheKeyType: 'F32',
  experimentalKvCacheValueType: 'F32',
};

/** llama.cpp's next-token log-probabilities after every position of `ids` (one batch). */
export async function llamaLogProbs(model: LlamaModel, ids: number[], vocab: number): Promise<Float32Array> {
  const ctx = await model.createContext(LLAMA_CONTEXT);
  try {
    const res = await ctx
      .getSequence()
      .controlledEvaluate(
        ids.map((t) => [t as Token, { generateNext: { probabilities: true, options: { temperature: 0 } } }]),
      );
    const out = new Float32Array(ids.length * vocab).fill(-Infinity);
    res.forEach((r, i) => {
      for (const [tok, p] of r!.next.probabilities!) out[i * vocab + (tok as number)] = Math.log(p);
    });
    return out;
  } finally {
    await ctx.dispose();
  }
}
