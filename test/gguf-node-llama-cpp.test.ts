// Interop with a real peer: files written by our converter are loaded by llama.cpp through
// node-llama-cpp 3.21.1 (prebuilt CPU binaries, no downloads) and must compute what MosaicML's
// model and our reference backend compute. Token ids are fed directly and llama.cpp's
// probabilities read back per position; node-llama-cpp's own GGUF parser also reads our files.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { getLlama, LlamaLogLevel, readGgufFileInfo, type Llama, type LlamaModel, type Token } from 'node-llama-cpp';
import { referenceBackend } from '../src/backends/reference/index.js';
import { openHfFolderTensors } from '../src/formats/hf-folder.js';
import { parseMptConfig } from '../src/model/config.js';
import { openGgufCheckpoint } from '../src/model/gguf-model.js';
import { byteLevelTestTokenizer } from '../src/model/gguf-tokenizer.js';
import type { GgufOutType } from '../src/model/gguf-type-mix.js';
import { writeGgufFromCheckpoint } from '../src/model/gguf-write.js';
import { LLAMA_CONTEXT, llamaLogProbs } from './helpers/llamacpp-peer.js';
import { Goldens, REPO_ROOT, argmaxRows, fixturePath } from './helpers/goldens.js';
import { compareLogits } from './helpers/llamacpp-mpt.js';

const tmp = mkdtempSync(join(tmpdir(), 'mpt-gguf-llama-'));
const Q = fixturePath('gguf-tiny-q');
const NEOX = fixturePath('tiny-neox-vocab');
let llama: Llama;

before(async () => {
  try {
    llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, progressLogs: false });
  } catch (e) {
    throw new Error(
      `node-llama-cpp could not start its prebuilt llama.cpp binary on this machine: ${(e as Error).message}`,
    );
  }
});
after(async () => {
  await llama?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

async function convert(dir: string, type: GgufOutType, tokenizer: 'bytes' | 'neox'): Promise<string> {
  const c = parseMptConfig(JSON.parse(readFileSync(`${dir}/config.json`, 'utf8')));
  const src = await openHfFolderTensors(dir);
  const out = join(tmp, `${dir.split('/').filter(Boolean).pop()}-${type}.gguf`);
  try {
    const tok =
      tokenizer === 'bytes'
        ? byteLevelTestTokenizer(c.vocabSize)
        : join(REPO_ROOT, 'assets/gpt-neox-20b/tokenizer.json');
    await writeGgufFromCheckpoint(c, src, tok, out, type);
  } finally {
    await src.close();
  }
  return out;
}

async function withModel<T>(path: string, f: (m: LlamaModel) => Promise<T>): Promise<T> {
  const model = await llama.loadModel({ modelPath: path });
  try {
    return await f(model);
  } finally {
    await model.dispose();
  }
}

/** llama.cpp's greedy continuation (KV cache, one token per step). */
async function llamaGreedy(model: LlamaModel, prompt: number[], n: number): Promise<number[]> {
  const ctx = await model.createContext(LLAMA_CONTEXT);
  try {
    const seq = ctx.getSequence();
    const greedy = { generateNext: { token: true, options: { temperature: 0 } } };
    let res = await seq.controlledEvaluate(
      prompt.map((t, i) => (i === prompt.length - 1 ? [t as Token, greedy] : (t as Token))),
    );
    const out: number[] = [];
    for (let s = 0; s < n; s++) {
      const tok = res.at(-1)!.next.token!;
      out.push(tok as number);
      if (s + 1 < n) res = await seq.controlledEvaluate([[tok as Token, greedy]]);
    }
    return out;
  } finally {
    await ctx.dispose();
  }
}

async function referenceLogits(path: string, ids: number[]): Promise<Float32Array> {
  const ck = await openGgufCheckpoint(path);
  try {
    const runner = await referenceBackend.load(ck.config, ck.tensors);
    const [out] = await runner.forward([{ cache: runner.createCache({ capacity: ids.length }), tokens: ids }], {
      logits: 'all',
    });
    return out!.logits;
  } finally {
    await ck.tensors.close();
  }
}

describe('llama.cpp (node-llama-cpp) runs the GGUF files we write', () => {
  const golden = new Goldens(Q);

  it('F32: llama.cpp greedy = MosaicML greedy, and its per-position distributions match ours', async (t) => {
    const path = await convert(Q, 'f32', 'bytes');
    const info = await readGgufFileInfo(path);
    assert.equal(info.metadata.general.architecture, 'mpt');
    assert.equal(info.tensorInfo?.length, 14);

    const ids = golden.json.inputs.seq64 as number[];
    const [greedy, logp] = await withModel(
      path,
      async (m) => [await llamaGreedy(m, golden.json.inputs.seq7, 20), await llamaLogProbs(m, ids, 1024)] as const,
    );
    assert.deepEqual(greedy, golden.json.generate.new_tokens);
    const ours = await referenceLogits(path, ids);
    const r = compareLogits(logp, ours, ids.length, 1024);
    t.diagnostic(
      `llama.cpp vs reference backend on our F32 file, seq64: KL mean ${r.klMean.toExponential(2)} max ${r.klMax.toExponential(2)}, top-1 ${r.top1}`,
    );
    // llama.cpp's tanh GELU table vs MosaicML's erf: fixture README measured KL 4.6e-7, max abs 7.7e-3
    assert.ok(r.klMean <= 2e-6 && r.klMax <= 1e-5, `KL ${r.klMean} / ${r.klMax}`);
    assert.equal(r.top1, 1);
  });

  it("Q8_0 and Q4_0: llama.cpp on our files matches the logits llama.cpp computed on llama-quantize's files", async (t) => {
    for (const type of ['q8_0', 'q4_0'] as const) {
      const path = await convert(Q, type, 'bytes');
      const ref = new Goldens(Q, `tiny-q-${type}.llamacpp.json`, `tiny-q-${type}.llamacpp.bin`);
      const ids = ref.json.inputs.seq64 as number[];
      const logp = await withModel(path, (m) => llamaLogProbs(m, ids, 1024));
      const r = compareLogits(ref.tensor('logits/seq64').data, logp, ids.length, 1024);
      t.diagnostic(
        `${type}: node-llama-cpp on our file vs stored llama.cpp logits, seq64: KL mean ${r.klMean.toExponential(2)} max ${r.klMax.toExponential(2)}, top-1 ${r.top1.toFixed(3)}`,
      );
      // identical tensor data; what remains is another llama.cpp build / SIMD path (README: KL <= 6e-4)
      assert.ok(r.klMean <= 1e-3, `${type} KL ${r.klMean}`);
      assert.ok(r.top1 >= 0.9, `${type} top-1 ${r.top1}`);
    }
  });

  it("learned positions, no ALiBi (tiny-learned-pos): llama.cpp on our F32 file computes MosaicML's distributions and tokens", async (t) => {
    const dir = fixturePath('tiny-learned-pos');
    const g = new Goldens(dir);
    const path = await convert(dir, 'f32', 'bytes');
    await withModel(path, async (m) => {
      const ids = g.json.inputs.seq64 as number[];
      const r = compareLogits(g.tensor('logits/seq64').data, await llamaLogProbs(m, ids, 512), ids.length, 512);
      t.diagnostic(
        `llama.cpp vs MosaicML, seq64: KL mean ${r.klMean.toExponential(2)} max ${r.klMax.toExponential(2)}, top-1 ${r.top1}`,
      );
      // measured KL mean 2e-7, max 1.2e-6 (llama.cpp's tanh GELU table)
      assert.ok(r.klMean <= 2e-6 && r.klMax <= 1e-5, `KL ${r.klMean} / ${r.klMax}`);
      assert.equal(r.top1, 1);
      assert.deepEqual(await llamaGreedy(m, g.json.generate.prompt_ids, 20), g.json.generate.new_tokens);
    });
  });

  it("real vocabulary: llama.cpp tokenizes with our embedded GPT-NeoX tokenizer exactly, and generates MosaicML's tokens", async () => {
    const path = await convert(NEOX, 'f32', 'neox');
    const g = new Goldens(NEOX);
    await withModel(path, async (m) => {
      for (const [name, text] of Object.entries(g.json.inputs_text as Record<string, string>)) {
        const ids = Array.from(m.tokenize(text), Number);
        assert.deepEqual(ids, g.json.inputs[name], `tokenize ${JSON.stringify(text)}`);
        assert.equal(m.detokenize(ids as Token[]), text);
      }
      assert.equal(Number(m.tokens.bos), 0);
      assert.equal(Number(m.tokens.eos), 0);
      const greedy = await llamaGreedy(m, g.json.inputs.seq7, 20);
      // Compare up to the first step whose golden top-1/top-2 margin is below 0.05 (step 18: 0.019),
      // where llama.cpp's GELU approximation may legitimately choose the other token.
      const margins = (g.json.generate.top5_logits_per_step as number[][]).map((l) => l[0]! - l[1]!);
      const firstTight = margins.findIndex((x) => x < 0.05);
      const upto = firstTight < 0 ? 20 : firstTight;
      assert.ok(upto >= 10);
      assert.deepEqual(greedy.slice(0, upto), g.json.generate.new_tokens.slice(0, upto));
      // and the argmax of our reference backend on the same file agrees
      const ours = await referenceLogits(path, g.json.generate.sequences.slice(0, 7 + upto - 1));
      const am = argmaxRows(ours, 7 + upto - 1, 50432).slice(6);
      assert.deepEqual(am, g.json.generate.new_tokens.slice(0, upto));
    });
  });
});
