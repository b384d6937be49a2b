// Writing GGUF: our converter against files llama.cpp's own tools wrote (gguf-py's F32 file byte
// for byte, llama-quantize's tensor data), round trips of tensors and of every metadata value
// type, the GPT-NeoX vocabulary as llama.cpp's converter lays it out, atomic writes, and the CLI.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { run as convertCli } from '../src/cli/commands/convert.js';
import { MptError, UnsupportedError } from '../src/errors.js';
import { openHfFolderTensors } from '../src/formats/hf-folder.js';
import { gguf, readGguf, writeGguf, type GgufValue } from '../src/formats/gguf.js';
import { parseMptConfig } from '../src/model/config.js';
import { openGgufCheckpoint } from '../src/model/gguf-model.js';
import { byteLevelTestTokenizer, TokenType, tokenizerFromHfJson } from '../src/model/gguf-tokenizer.js';
import { writeGgufFromCheckpoint } from '../src/model/gguf-write.js';
import { loadRunner } from '../src/backends/registry.js';
import { checkGoldens } from './helpers/backend-conformance.js';
import { FIXTURES, Goldens, REPO_ROOT, fixturePath } from './helpers/goldens.js';

const DIR = fixturePath('gguf-tiny-q');
const tmp = mkdtempSync(join(tmpdir(), 'mpt-gguf-write-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const config = () => parseMptConfig(JSON.parse(readFileSync(`${DIR}/config.json`, 'utf8')));

describe('writeGgufFromCheckpoint', () => {
  it("writes the gguf-tiny-q F32 file byte for byte as llama.cpp's gguf-py did", async () => {
    const src = await openHfFolderTensors(DIR);
    const out = join(tmp, 'f32.gguf');
    try {
      await writeGgufFromCheckpoint(config(), src, byteLevelTestTokenizer(1024), out, 'f32', { name: 'gguf-tiny-q' });
    } finally {
      await src.close();
    }
    assert.ok(readFileSync(out).equals(readFileSync(`${DIR}/tiny-q-f32.gguf`)));
  });

  it('round trip: HF safetensors -> GGUF f32 -> read back gives bitwise equal tensors', async () => {
    const src = await openHfFolderTensors(DIR);
    const out = join(tmp, 'rt.gguf');
    try {
      await writeGgufFromCheckpoint(config(), src, byteLevelTestTokenizer(1024), out, 'f32');
      const ck = await openGgufCheckpoint(out);
      try {
        assert.equal(ck.tensors.list().length, src.list().length);
        for (const info of src.list()) {
          const got = ck.tensors.info(info.name)!;
          assert.deepEqual(got.shape, info.shape);
          assert.deepEqual(await ck.tensors.read(info.name), await src.read(info.name), info.name);
        }
        assert.deepEqual(ck.config.attn, config().attn);
      } finally {
        await ck.tensors.close();
      }
    } finally {
      await src.close();
    }
  });

  for (const type of ['f16', 'q8_0', 'q4_0'] as const) {
    it(`--type ${type}: tensor data identical to llama-quantize's (1-D tensors stay F32)`, async () => {
      const src = await openHfFolderTensors(DIR);
      const out = join(tmp, `${type}.gguf`);
      try {
        await writeGgufFromCheckpoint(config(), src, byteLevelTestTokenizer(1024), out, type);
      } finally {
        await src.close();
      }
      const mine = await readGguf(out);
      const ref = await readGguf(`${DIR}/tiny-q-${type}.gguf`);
      try {
        assert.deepEqual(mine.metadata.get('general.file_type'), ref.metadata.get('general.file_type'));
        for (const t of ref.tensors) {
          const m = mine.tensor(t.name)!;
          assert.equal(m.dtype, t.dtype, t.name);
          assert.deepEqual(m.dims, t.dims);
          assert.deepEqual(await mine.readTensor(m), await ref.readTensor(t), t.name);
        }
      } finally {
        await mine.close();
        await ref.close();
      }
    });
  }

  it('re-encodes a GGUF checkpoint (q8_0 -> q4_0 through f32)', async () => {
    const src = await openGgufCheckpoint(`${DIR}/tiny-q-q8_0.gguf`);
    const out = join(tmp, 'requant.gguf');
    try {
      await writeGgufFromCheckpoint(src.config, src.tensors, src.tokenizer!, out, 'q4_0');
    } finally {
      await src.tensors.close();
    }
    const g = await readGguf(out);
    try {
      assert.equal(g.tensor('blk.0.ffn_up.weight')!.dtype, 'q4_0');
      assert.equal(g.tensor('blk.0.ffn_norm.weight')!.dtype, 'f32');
    } finally {
      await g.close();
    }
  });

  it("embeds the GPT-NeoX-20B tokenizer as llama.cpp's converter does (vocab padded to 50432)", async () => {
    const tj = JSON.parse(readFileSync(join(REPO_ROOT, 'assets/gpt-neox-20b/tokenizer.json'), 'utf8'));
    const tok = tokenizerFromHfJson(tj, 50432);
    assert.equal(tok.tokens.length, 50432);
    assert.equal(tok.pre, 'mpt');
    assert.equal(tok.tokens[0], '<|endoftext|>');
    assert.equal(tok.tokenTypes[0], TokenType.CONTROL);
    assert.equal(tok.tokens[1], '<|padding|>');
    assert.equal(tok.tokenTypes[1], TokenType.CONTROL);
    assert.equal(tok.tokens[50254], ' '.repeat(24));
    assert.equal(tok.tokenTypes[50254], TokenType.USER_DEFINED);
    assert.equal(tok.tokens[50276], '  ');
    assert.equal(tok.tokens[50277], '[PAD50277]');
    assert.equal(tok.tokenTypes[50431], TokenType.UNUSED);
    assert.equal(tok.tokens[12092], 'Hello');
    assert.equal(tok.tokenTypes[12092], TokenType.NORMAL);
    assert.equal(tok.merges.length, 50009);
    assert.equal(tok.merges[0], 'Ġ Ġ');
    assert.equal(tok.bosId, 0);
    assert.equal(tok.eosId, 0);
    assert.equal(tok.padId, 1);

    const dir = fixturePath('tiny-neox-vocab');
    const src = await openHfFolderTensors(dir);
    const out = join(tmp, 'neox.gguf');
    try {
      const c = parseMptConfig(JSON.parse(readFileSync(`${dir}/config.json`, 'utf8')));
      await writeGgufFromCheckpoint(c, src, join(REPO_ROOT, 'assets/gpt-neox-20b/tokenizer.json'), out, 'q8_0');
    } finally {
      await src.close();
    }
    const ck = await openGgufCheckpoint(out);
    try {
      assert.deepEqual(ck.tokenizer!.tokens, tok.tokens);
      assert.deepEqual(ck.tokenizer!.tokenTypes, tok.tokenTypes);
      assert.deepEqual(ck.tokenizer!.merges, tok.merges);
      assert.equal(ck.config.vocabSize, 50432);
      // d_model 16 rows cannot be q8_0 blocks of 32: those matrices fall back to F16
      assert.equal(ck.tensors.info('transformer.wte.weight')!.dtype, 'f16');
      const keys = [...ck.metadata.keys()];
      for (const k of [
        'general.architecture',
        'mpt.context_length',
        'mpt.embedding_length',
        'mpt.block_count',
        'mpt.feed_forward_length',
        'mpt.attention.head_count',
        'mpt.attention.layer_norm_epsilon',
        'mpt.attention.max_alibi_bias',
        'tokenizer.ggml.model',
        'tokenizer.ggml.pre',
        'tokenizer.ggml.tokens',
        'tokenizer.ggml.token_type',
        'tokenizer.ggml.merges',
        'tokenizer.ggml.bos_token_id',
        'tokenizer.ggml.eos_token_id',
        'tokenizer.ggml.padding_token_id',
      ]) {
        assert.ok(keys.includes(k), k);
      }
    } finally {
      await ck.tensors.close();
    }
  });

  it("refuses configs llama.cpp's MPT graph cannot compute", async () => {
    const raw = JSON.parse(readFileSync(`${FIXTURES}/tiny-bias/config.json`, 'utf8'));
    const c = parseMptConfig(raw); // logit_scale 0.5, softmax_scale 0.3
    const src = await openHfFolderTensors(fixturePath('tiny-bias'));
    try {
      await assert.rejects(
        writeGgufFromCheckpoint(c, src, byteLevelTestTokenizer(c.vocabSize), join(tmp, 'x.gguf'), 'f32'),
        UnsupportedError,
      );
    } finally {
      await src.close();
    }
  });

  it("refuses RMSNorm (tiny-rmsnorm): llama.cpp's MPT graph has LayerNorm only", async () => {
    const dir = fixturePath('tiny-rmsnorm');
    const c = parseMptConfig(JSON.parse(readFileSync(`${dir}/config.json`, 'utf8')));
    const src = await openHfFolderTensors(dir);
    const out = join(tmp, 'rmsnorm.gguf');
    try {
      await assert.rejects(
        writeGgufFromCheckpoint(c, src, byteLevelTestTokenizer(c.vocabSize), out, 'f32'),
        (e: Error) => e instanceof UnsupportedError && /RMSNorm/.test(e.message),
      );
      assert.ok(!existsSync(out));
    } finally {
      await src.close();
    }
  });

  it("learned positions (tiny-learned-pos): the F32 GGUF file computes MosaicML's goldens, left padding included", async () => {
    // position_embd.weight and max_alibi_bias 0 must come back as learned_pos_emb true, alibi false.
    const dir = fixturePath('tiny-learned-pos');
    const c = parseMptConfig(JSON.parse(readFileSync(`${dir}/config.json`, 'utf8')));
    const src = await openHfFolderTensors(dir);
    const out = join(tmp, 'learned-pos.gguf');
    try {
      await writeGgufFromCheckpoint(c, src, byteLevelTestTokenizer(c.vocabSize), out, 'f32');
    } finally {
      await src.close();
    }
    const { runner } = await loadRunner(out, { backend: 'reference' });
    try {
      assert.equal(runner.config.learnedPosEmb, true);
      assert.equal(runner.config.attn.alibi, false);
      await checkGoldens(runner, new Goldens(dir));
    } finally {
      await runner.dispose();
    }
  });
});

describe('writeGguf / readGguf', () => {
  it('round-trips every metadata value type, nested arrays and a custom alignment', async () => {
    const meta = new Map<string, GgufValue>([
      ['a.u8', gguf.u8(255)],
      ['a.i8', gguf.i8(-128)],
      ['a.u16', gguf.u16(65535)],
      ['a.i16', gguf.i16(-32768)],
      ['a.u32', gguf.u32(4294967295)],
      ['a.i32', gguf.i32(-2147483648)],
      ['a.f32', gguf.f32(1.5)],
      ['a.f64', gguf.f64(Math.PI)],
      ['a.u64', gguf.u64(2n ** 64n - 1n)],
      ['a.i64', gguf.i64(-(2n ** 63n))],
      ['a.bool', gguf.bool(true)],
      ['a.str', gguf.str('héllo ✓')],
      ['a.strs', gguf.strings(['', 'x', 'Ġt'])],
      ['a.i32s', gguf.i32s([1, -2, 3])],
      ['a.f32s', gguf.f32s([0.25, -1])],
      ['a.bools', { type: 'array', itemType: 'bool', value: [true, false] }],
      ['a.u64s', { type: 'array', itemType: 'u64', value: new BigUint64Array([1n, 2n ** 60n]) }],
      ['a.nested', { type: 'array', itemType: 'array', value: [gguf.strings(['p', 'q']), gguf.i32s([7])] }],
      ['a.empty', gguf.strings([])],
    ]);
    const out = join(tmp, 'meta.gguf');
    const data = new Uint8Array(byteLen(3 * 64));
    for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
    await writeGguf(
      out,
      meta,
      [
        { name: 'w', dims: [64, 3], dtype: 'q8_0', data: async () => data },
        { name: 'v', dims: [5], dtype: 'f32', data: new Uint8Array(20).fill(7) },
      ],
      { alignment: 64 },
    );
    const g = await readGguf(out);
    try {
      assert.equal(g.alignment, 64);
      assert.equal(g.dataOffset % 64, 0);
      for (const [k, v] of meta) assert.deepEqual(g.metadata.get(k), v, k);
      assert.deepEqual(g.metadata.get('general.alignment'), gguf.u32(64));
      assert.deepEqual(await g.readTensor('w'), data);
      assert.equal(g.tensor('v')!.offset % 64, 0);
      assert.deepEqual(await g.readTensor('v'), new Uint8Array(20).fill(7));
    } finally {
      await g.close();
    }
  });

  it('writes atomically: a failing tensor leaves neither the file nor a temporary behind', async () => {
    const out = join(tmp, 'atomic', 'x.gguf');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(tmp, 'atomic'));
    await assert.rejects(
      writeGguf(out, new Map(), [{ name: 'w', dims: [4], dtype: 'f32', data: async () => new Uint8Array(12) }]),
      MptError,
    );
    assert.equal(existsSync(out), false);
    assert.deepEqual(readdirSync(join(tmp, 'atomic')), []);
  });
});

describe('mpt convert', () => {
  it('converts a folder with --type q4_0 and --tokenizer bytes, and refuses bad options', async () => {
    const out = join(tmp, 'cli.gguf');
    const write = process.stderr.write.bind(process.stderr);
    let err = '';
    process.stderr.write = ((s: string) => {
      err += s;
      return true;
    }) as typeof process.stderr.write;
    try {
      assert.equal(await convertCli([DIR, out, '--type', 'q4_0', '--tokenizer', 'bytes']), 0);
    } finally {
      process.stderr.write = write;
    }
    assert.match(err, /100%/);
    assert.match(err, /wrote .*cli\.gguf: q4_0/);
    const g = await readGguf(out);
    try {
      assert.equal(g.tensor('blk.1.attn_qkv.weight')!.dtype, 'q4_0');
    } finally {
      await g.close();
    }
    await assert.rejects(convertCli([DIR, join(tmp, 'y.gguf'), '--type', 'q3_k']), /--type must be one of/);
    // no tokenizer.json and a 1024-token vocabulary: the user must say which tokenizer
    await assert.rejects(convertCli([DIR, join(tmp, 'y.gguf')]), /--tokenizer/);
  });
});

function byteLen(n: number): number {
  return (n / 32) * 34;
}
