// `mpt convert FILE.gguf OUT_DIR/`: a GGUF file back to a Hugging Face folder. Checked against
// outside references: MosaicML's goldens for a fixture that went HF → GGUF → HF; llama.cpp's own
// q8_0 file dequantized as ggml does; the GPT-NeoX-20B tokenizer.json rebuilt from a GGUF vocabulary
// and run by tokenizers.js (Hugging Face's JavaScript port) against the original file.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Tokenizer } from '@huggingface/tokenizers';
import { run as convertCli } from '../src/cli/commands/convert.js';
import { MptError } from '../src/errors.js';
import { dequantize } from '../src/formats/ggml-quants.js';
import { openHfFolderTensors } from '../src/formats/hf-folder.js';
import { tensorToFloat32, shapeElements } from '../src/formats/dtypes.js';
import { parseMptConfig } from '../src/model/config.js';
import { openGgufCheckpoint } from '../src/model/gguf-model.js';
import { tokenizerFromHfJson, byteLevelTestTokenizer } from '../src/model/gguf-tokenizer.js';
import { writeGgufFromCheckpoint } from '../src/model/gguf-write.js';
import { loadRunner } from '../src/backends/registry.js';
import { Goldens, argmaxRows, fixturePath, maxAbsDiff, REPO_ROOT } from './helpers/goldens.js';

/** The parts of a tokenizer.json this file compares. */
type TokenizerJson = {
  model: Record<string, unknown>;
  added_tokens: Record<string, unknown>[];
  pre_tokenizer: unknown;
  normalizer: unknown;
};

const tmp = mkdtempSync(join(tmpdir(), 'mpt-gguf-to-hf-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const quiet = async (argv: string[]) => {
  const write = process.stderr.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    return await convertCli(argv);
  } finally {
    process.stderr.write = write;
  }
};

describe('mpt convert FILE.gguf OUT_DIR/', () => {
  it("tiny-alibi through GGUF f32 and back gives MosaicML's logits (goldens)", async () => {
    const dir = fixturePath('tiny-alibi');
    const config = parseMptConfig(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
    const src = await openHfFolderTensors(dir);
    const gguf = join(tmp, 'alibi.gguf');
    try {
      await writeGgufFromCheckpoint(config, src, byteLevelTestTokenizer(config.vocabSize), gguf, 'f32');
    } finally {
      await src.close();
    }
    const out = join(tmp, 'alibi-hf');
    assert.equal(await quiet([gguf, out, '--type', 'f32']), 0);
    assert.deepEqual(readdirSync(out).sort(), [
      'config.json',
      'generation_config.json',
      'model.safetensors',
      'special_tokens_map.json',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    const back = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(back['model_type'], 'mpt');
    assert.deepEqual(back['architectures'], ['MPTForCausalLM']);
    assert.deepEqual(parseMptConfig(back).attn, config.attn);

    const g = new Goldens(dir);
    const { runner } = await loadRunner(out, { backend: 'reference' });
    const V = config.vocabSize;
    for (const seq of ['seq7', 'seq64']) {
      const ids = g.json.inputs[seq] as number[];
      const [o] = await runner.forward([{ cache: runner.createCache({ capacity: ids.length }), tokens: ids }], {
        logits: 'all',
      });
      const gold = g.tensor(`logits/${seq}`).data;
      assert.ok(maxAbsDiff(o!.logits, gold) < 5e-4, `${seq}: max |Δ| ${maxAbsDiff(o!.logits, gold)}`);
      assert.deepEqual(argmaxRows(o!.logits, ids.length, V), argmaxRows(gold, ids.length, V));
    }
  });

  it("llama.cpp's q8_0 file comes back as ggml's dequantized values, in f16 as asked", async () => {
    const file = fixturePath('gguf-tiny-q/tiny-q-q8_0.gguf');
    const out = join(tmp, 'q8-hf');
    assert.equal(await quiet([file, out]), 0);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(config['torch_dtype'], 'float16');
    const ck = await openGgufCheckpoint(file);
    const hf = await openHfFolderTensors(out);
    try {
      for (const info of ck.tensors.list()) {
        if (ck.config.tieWordEmbeddings && info.name === 'lm_head.weight') continue;
        const got = hf.info(info.name);
        assert.ok(got, `${info.name} is in model.safetensors`);
        assert.equal(got.dtype, 'f16');
        assert.deepEqual(got.shape, info.shape);
        const stored = await ck.tensors.read(info.name);
        const want = dequantize(info.dtype, stored, shapeElements(info.shape));
        const have = tensorToFloat32(got, await hf.read(info.name));
        // f16 keeps 11 significant bits: each value within half an f16 ulp of ggml's.
        for (let i = 0; i < want.length; i++) {
          const w = want[i]!;
          assert.ok(
            Math.abs(have[i]! - w) <= Math.max(Math.abs(w) * 2 ** -11, 2 ** -25),
            `${info.name}[${i}]: ${have[i]} vs ${w}`,
          );
        }
      }
    } finally {
      await hf.close();
      await ck.tensors.close();
    }
  });

  it('the GPT-NeoX-20B vocabulary in a GGUF becomes a tokenizer.json that tokenizers.js runs like the original', async () => {
    const original = JSON.parse(
      readFileSync(join(REPO_ROOT, 'assets/gpt-neox-20b/tokenizer.json'), 'utf8'),
    ) as TokenizerJson;
    const shipped = join(REPO_ROOT, 'models/default');
    const config = parseMptConfig(JSON.parse(readFileSync(join(shipped, 'config.json'), 'utf8')));
    // The GGUF vocabulary exactly as `mpt convert` embeds it (llama.cpp's converter layout, padded to 50,432).
    const tok = tokenizerFromHfJson(original, config.vocabSize);
    const { hfTokenizerJson } = await import('../src/model/hf-export.js');
    const rebuilt = hfTokenizerJson(tok) as TokenizerJson;
    assert.deepEqual(rebuilt['model']['vocab'], original['model']['vocab']);
    assert.deepEqual(rebuilt['model']['merges'], original['model']['merges']);
    const byId = (a: Record<string, unknown>[]) => [...a].sort((x, y) => Number(x['id']) - Number(y['id']));
    assert.deepEqual(byId(rebuilt['added_tokens']), byId(original['added_tokens']));
    assert.deepEqual(rebuilt['pre_tokenizer'], original['pre_tokenizer']);
    assert.deepEqual(rebuilt['normalizer'], original['normalizer']);

    const a = new Tokenizer(original, {});
    const b = new Tokenizer(rebuilt, {});
    for (const text of [
      'Once upon a time, there was a little girl.',
      'def f(x):\n        return x  # spaces\n',
      'Größe 東京 🤖 <|endoftext|> 12345',
      '   leading and trailing   ',
    ]) {
      assert.deepEqual(b.encode(text).ids, a.encode(text).ids, JSON.stringify(text));
    }
  });

  it('refuses a quantized type for a folder and a folder that already holds files', async () => {
    const file = fixturePath('gguf-tiny-q/tiny-q-q8_0.gguf');
    await assert.rejects(
      quiet([file, join(tmp, 'q-out'), '--type', 'q4_0']),
      (e: Error) => e instanceof MptError && /q4_0/.test(e.message),
    );
    const busy = join(tmp, 'busy');
    mkdirSync(busy);
    writeFileSync(join(busy, 'notes.txt'), 'mine');
    await assert.rejects(
      quiet([file, busy]),
      (e: Error) => e instanceof MptError && /not an empty folder/.test(e.message),
    );
    assert.equal(readFileSync(join(busy, 'notes.txt'), 'utf8'), 'mine');
  });
});
