// Reading the GGUF files llama.cpp's own tools made (test/fixtures/gguf-tiny-q): header, metadata,
// config mapping, tensor types and bytes (sha256 recorded by the fixture), dequantized values
// against the f32 checkpoint, and our reference quantizers against llama-quantize's bytes.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { dequantize, quantize } from '../src/formats/ggml-quants.js';
import { readGguf } from '../src/formats/gguf.js';
import { openSafetensors } from '../src/formats/safetensors.js';
import { parseMptConfig } from '../src/model/config.js';
import { openGgufCheckpoint } from '../src/model/gguf-model.js';
import { canonicalTensorName, ggufTensorName } from '../src/model/gguf-names.js';
import { TokenType } from '../src/model/gguf-tokenizer.js';
import { fixturePath } from './helpers/goldens.js';

const DIR = fixturePath('gguf-tiny-q');
const TYPES = ['f32', 'f16', 'q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k', 'q4_k_m'];
const llamacppJson = (t: string) => JSON.parse(readFileSync(`${DIR}/tiny-q-${t}.llamacpp.json`, 'utf8'));

/**
 * Relative RMS error of the dequantized matrices against the f32 weights: what a correct decoder
 * gives on these N(0, s) weights (measured; the exact check of the decoders is that llama.cpp's
 * logits are reproduced, test/gguf-llamacpp-logits.test.ts). A wrong scale or bit layout gives
 * errors of order 1.
 */
const REL_RMS_BOUND: Record<string, number> = {
  f16: 5e-4,
  q8_0: 0.007,
  q6_k: 0.02,
  q5_1: 0.045,
  q5_0: 0.05,
  q5_k: 0.045,
  q4_1: 0.09,
  q4_0: 0.1,
  q4_k: 0.085,
  q3_k: 0.17,
  q2_k: 0.33,
};

describe('gguf-tiny-q files made by llama.cpp', () => {
  it('parses the header, metadata and tensor infos', async () => {
    const g = await readGguf(`${DIR}/tiny-q-q4_k_m.gguf`);
    try {
      assert.equal(g.version, 3);
      assert.equal(g.alignment, 32);
      assert.equal(g.dataOffset % 32, 0);
      assert.equal(g.tensors.length, 14);
      assert.deepEqual(g.metadata.get('general.architecture'), { type: 'string', value: 'mpt' });
      assert.deepEqual(g.metadata.get('general.file_type'), { type: 'u32', value: 15 });
      assert.deepEqual(g.metadata.get('mpt.attention.max_alibi_bias'), { type: 'f32', value: 8 });
      const tokens = g.metadata.get('tokenizer.ggml.tokens');
      assert.ok(tokens?.type === 'array' && tokens.itemType === 'string' && tokens.value.length === 1024);
      // llama-quantize writes output_norm and token_embd first (fixture README)
      assert.deepEqual(
        g.tensors.slice(0, 2).map((t) => t.name),
        ['output_norm.weight', 'token_embd.weight'],
      );
      const embd = g.tensor('token_embd.weight')!;
      assert.deepEqual(embd.dims, [256, 1024]);
      assert.equal(embd.dtype, 'q6_k');
      assert.equal(embd.byteLength, 215040);
    } finally {
      await g.close();
    }
  });

  it('reads GGUF v2 (same little-endian layout as v3)', async () => {
    const bytes = readFileSync(`${DIR}/tiny-q-q8_0.gguf`);
    bytes.writeUInt32LE(2, 4);
    const dir = mkdtempSync(join(tmpdir(), 'mpt-gguf-v2-'));
    try {
      writeFileSync(join(dir, 'v2.gguf'), bytes);
      const ck = await openGgufCheckpoint(join(dir, 'v2.gguf'));
      try {
        assert.equal(ck.gguf.version, 2);
        assert.equal(ck.config.nLayers, 2);
        assert.equal(ck.tensors.info('transformer.wte.weight')!.dtype, 'q8_0');
      } finally {
        await ck.tensors.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const t of TYPES) {
    it(`tiny-q-${t}.gguf: tensor types and bytes match what llama.cpp recorded`, async () => {
      const ref = llamacppJson(t).gguf;
      const g = await readGguf(`${DIR}/tiny-q-${t}.gguf`);
      try {
        assert.equal(g.version, ref.gguf_version);
        assert.equal(g.metadata.get('general.file_type')?.type, 'u32');
        for (const info of g.tensors) {
          assert.equal(info.dtype.toUpperCase(), ref.tensor_types[info.name], info.name);
          const sha = createHash('sha256')
            .update(await g.readTensor(info))
            .digest('hex');
          assert.equal(sha, ref.tensor_data_sha256[info.name], `${info.name} data`);
        }
        assert.equal(g.tensors.length, Object.keys(ref.tensor_types).length);
      } finally {
        await g.close();
      }
    });
  }

  it('maps the mpt.* keys to the same config as config.json', async () => {
    const want = parseMptConfig(JSON.parse(readFileSync(`${DIR}/config.json`, 'utf8')));
    for (const t of ['f32', 'q4_k_m']) {
      const ck = await openGgufCheckpoint(`${DIR}/tiny-q-${t}.gguf`);
      try {
        const c = ck.config;
        for (const k of [
          'dModel',
          'nHeads',
          'nLayers',
          'maxSeqLen',
          'vocabSize',
          'noBias',
          'headDim',
          'tieWordEmbeddings',
          'learnedPosEmb',
          'layerNormEpsilon',
        ] as const) {
          assert.deepEqual(c[k], want[k], k);
        }
        assert.deepEqual(c.attn, want.attn);
        assert.deepEqual(c.ffn, want.ffn);
        const tok = ck.tokenizer!;
        assert.equal(tok.model, 'gpt2');
        assert.equal(tok.pre, 'mpt');
        assert.equal(tok.tokens.length, 1024);
        assert.equal(tok.tokens[0], '<|endoftext|>');
        assert.equal(tok.tokenTypes[0], TokenType.CONTROL);
        assert.equal(tok.tokenTypes[300], TokenType.UNUSED);
        assert.deepEqual(tok.merges, ['Ġ t']);
        assert.equal(tok.bosId, 0);
        assert.equal(tok.eosId, 0);
        assert.equal(tok.addBos, false);
      } finally {
        await ck.tensors.close();
      }
    }
  });

  it('exposes canonical names with PyTorch shapes and the stored types', async () => {
    const st = await openSafetensors(`${DIR}/model.safetensors`);
    const ck = await openGgufCheckpoint(`${DIR}/tiny-q-q4_k_m.gguf`);
    try {
      const want = new Map(st.list().map((t) => [t.name, t.shape]));
      const got = ck.tensors.list();
      assert.equal(got.length, want.size);
      for (const t of got) assert.deepEqual(t.shape, want.get(t.name), t.name);
      assert.equal(ck.tensors.info('transformer.wte.weight')!.dtype, 'q6_k');
      assert.equal(ck.tensors.info('transformer.blocks.0.attn.Wqkv.weight')!.dtype, 'q5_k');
      assert.equal(ck.tensors.info('transformer.blocks.0.norm_1.weight')!.dtype, 'f32');
    } finally {
      await ck.tensors.close();
      await st.close();
    }
  });

  it('translates tensor names both ways', () => {
    const pairs: [string, string][] = [
      ['token_embd.weight', 'transformer.wte.weight'],
      ['position_embd.weight', 'transformer.wpe.weight'],
      ['output_norm.weight', 'transformer.norm_f.weight'],
      ['output_norm.bias', 'transformer.norm_f.bias'],
      ['output.weight', 'lm_head.weight'],
      ['blk.11.attn_norm.weight', 'transformer.blocks.11.norm_1.weight'],
      ['blk.0.attn_qkv.bias', 'transformer.blocks.0.attn.Wqkv.bias'],
      ['blk.3.attn_output.weight', 'transformer.blocks.3.attn.out_proj.weight'],
      ['blk.3.attn_q_norm.weight', 'transformer.blocks.3.attn.q_ln.weight'],
      ['blk.3.attn_k_norm.weight', 'transformer.blocks.3.attn.k_ln.weight'],
      ['blk.1.ffn_norm.weight', 'transformer.blocks.1.norm_2.weight'],
      ['blk.1.ffn_up.weight', 'transformer.blocks.1.ffn.up_proj.weight'],
      ['blk.1.ffn_down.weight', 'transformer.blocks.1.ffn.down_proj.weight'],
    ];
    for (const [g, c] of pairs) {
      assert.equal(canonicalTensorName(g), c);
      assert.equal(ggufTensorName(c), g);
    }
    assert.equal(canonicalTensorName('blk.0.ffn_gate.weight'), undefined);
    assert.equal(ggufTensorName('transformer.blocks.0.ffn.gate_proj.weight'), undefined);
  });

  it('dequantizes every tensor close to the f32 weights (and F32/F16 exactly)', async () => {
    const st = await openSafetensors(`${DIR}/model.safetensors`);
    try {
      const weights = new Map<string, Float32Array>();
      for (const t of st.list()) weights.set(t.name, new Float32Array((await st.read(t.name)).slice().buffer));
      for (const type of TYPES) {
        const ck = await openGgufCheckpoint(`${DIR}/tiny-q-${type}.gguf`);
        try {
          for (const info of ck.tensors.list()) {
            const w = weights.get(info.name)!;
            const bytes = await ck.tensors.read(info.name);
            const y = dequantize(info.dtype, bytes, w.length);
            if (info.dtype === 'f32') {
              assert.deepEqual(y, w, `${type} ${info.name}`);
              continue;
            }
            if (info.dtype === 'f16') {
              // llama-quantize's F16 is round-to-nearest-even of the f32 weights
              assert.deepEqual(quantize('f16', w), bytes, `${type} ${info.name}`);
              continue;
            }
            let se = 0,
              ss = 0;
            for (let i = 0; i < w.length; i++) {
              se += (y[i]! - w[i]!) ** 2;
              ss += w[i]! ** 2;
            }
            const rel = Math.sqrt(se / ss);
            assert.ok(
              rel <= REL_RMS_BOUND[info.dtype]!,
              `${type} ${info.name} (${info.dtype}): relative RMS error ${rel}`,
            );
          }
        } finally {
          await ck.tensors.close();
        }
      }
    } finally {
      await st.close();
    }
  });

  it('our q8_0, q4_0, q4_1, q5_0 and q5_1 quantizers reproduce llama-quantize byte for byte', async () => {
    const f32 = await readGguf(`${DIR}/tiny-q-f32.gguf`);
    try {
      for (const type of ['q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1'] as const) {
        const ref = llamacppJson(type).gguf.tensor_data_sha256 as Record<string, string>;
        const g = await readGguf(`${DIR}/tiny-q-${type}.gguf`);
        try {
          let matrices = 0;
          for (const info of g.tensors) {
            if (info.dtype !== type) continue;
            matrices++;
            const w = new Float32Array((await f32.readTensor(info.name)).slice().buffer);
            const mine = quantize(type, w);
            assert.equal(createHash('sha256').update(mine).digest('hex'), ref[info.name], `${type} ${info.name}`);
          }
          assert.equal(matrices, 9);
        } finally {
          await g.close();
        }
      }
    } finally {
      await f32.close();
    }
  });
});
