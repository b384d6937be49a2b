// Our block decoders and llama.cpp-style dot products (QuantMatrix) against the logits llama.cpp
// itself computed for each gguf-tiny-q file (fixture README, "Tolerance advice"): a forward pass
// in llama.cpp's arithmetic (test/helpers/llamacpp-mpt.ts) must land within the flip noise of
// llama.cpp for every type, and the teacher-forced greedy tokens must match where llama.cpp's
// top-1/top-2 margin is clear.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Goldens, argmaxRows, fixturePath } from './helpers/goldens.js';
import { LlamaCppMpt, compareLogits } from './helpers/llamacpp-mpt.js';

const DIR = fixturePath('gguf-tiny-q');
const TYPES = ['f32', 'f16', 'q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k', 'q4_k_m'];

/** README bounds against llama.cpp's logits of the same file (seq64 and seq7). */
function bounds(type: string): { maxAbs: number; klMean: number; top1: number } {
  if (type === 'f32') return { maxAbs: 2e-3, klMean: 1e-7, top1: 1 };
  if (type === 'f16') return { maxAbs: 2e-2, klMean: 5e-6, top1: 1 };
  return { maxAbs: 0.6, klMean: 1e-3, top1: 0.9 };
}

describe('llama.cpp arithmetic on every gguf-tiny-q type', () => {
  for (const type of TYPES) {
    it(`tiny-q-${type}.gguf reproduces llama.cpp's logits`, async (t) => {
      const model = await LlamaCppMpt.load(`${DIR}/tiny-q-${type}.gguf`);
      const ref = new Goldens(DIR, `tiny-q-${type}.llamacpp.json`, `tiny-q-${type}.llamacpp.bin`);
      const V = model.config.vocabSize;
      const b = bounds(type);
      for (const seq of ['seq64', 'seq7']) {
        const ids = ref.json.inputs[seq] as number[];
        const r = compareLogits(ref.tensor(`logits/${seq}`).data, model.forward(ids), ids.length, V);
        t.diagnostic(
          `${type} ${seq}: KL mean ${r.klMean.toExponential(2)} max ${r.klMax.toExponential(2)}, top-1 ${r.top1.toFixed(3)}, max abs ${r.maxAbs.toExponential(2)}`,
        );
        assert.ok(r.maxAbs <= b.maxAbs, `${seq} max abs ${r.maxAbs}`);
        assert.ok(r.klMean <= b.klMean, `${seq} KL mean ${r.klMean}`);
        assert.ok(r.top1 >= b.top1, `${seq} top-1 agreement ${r.top1}`);
      }
      // Teacher-forced greedy: the argmax after each prefix of llama.cpp's own continuation.
      const gen = ref.json.generate as {
        sequences: number[];
        new_tokens: number[];
        top1_top2_margin_per_step: number[];
        prompt_ids: number[];
      };
      const seqIds = gen.sequences.slice(0, -1);
      const am = argmaxRows(model.forward(seqIds), seqIds.length, V);
      const p = gen.prompt_ids.length;
      let checked = 0;
      for (let s = 0; s < gen.new_tokens.length; s++) {
        if (gen.top1_top2_margin_per_step[s]! < 0.1) continue;
        assert.equal(
          am[p - 1 + s],
          gen.new_tokens[s],
          `greedy step ${s} (llama.cpp margin ${gen.top1_top2_margin_per_step[s]})`,
        );
        checked++;
      }
      assert.ok(checked >= 10, `only ${checked} steps had a clear margin`);
    });
  }
});
