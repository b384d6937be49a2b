// `mpt finetune --lora` on a bf16 base: the merged model keeps the base's dtype (unless
// --export-dtype), the adapter is saved as Hugging Face PEFT saves one (tensor names, shapes,
// adapter_config.json keys), W + (alpha/r)·B·A reproduces the merged weights, and the base's
// tokenizer files travel with the merged model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixturePath } from './helpers/goldens.js';
import { runCli } from './helpers/cli.js';
import { openSafetensors, writeSafetensors } from '../src/formats/safetensors.js';
import { bf16ToF32, f32ToBf16, f32ToBf16Bytes, tensorToFloat32 } from '../src/formats/dtypes.js';

const RANK = 4,
  ALPHA = 8;
const MODULES = ['attn.Wqkv', 'attn.out_proj', 'ffn.up_proj', 'ffn.down_proj'];

async function readAll(path: string): Promise<Map<string, { dtype: string; shape: number[]; data: Float32Array }>> {
  const st = await openSafetensors(path);
  try {
    const out = new Map<string, { dtype: string; shape: number[]; data: Float32Array }>();
    for (const info of st.list())
      out.set(info.name, {
        dtype: info.dtype,
        shape: info.shape,
        data: tensorToFloat32(info, await st.read(info.name)),
      });
    return out;
  } finally {
    await st.close();
  }
}

/** tiny-neox-vocab in bf16 with MPT-7B-Chat's tokenizer side files and no tokenizer.json. */
async function bf16Base(dir: string): Promise<string> {
  const src = fixturePath('tiny-neox-vocab');
  const cfg = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'));
  cfg.torch_dtype = 'bfloat16';
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  const tensors = [...(await readAll(join(src, 'model.safetensors')))].map(([name, t]) => ({
    name,
    dtype: 'bf16' as const,
    shape: t.shape,
    data: f32ToBf16Bytes(t.data),
  }));
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  for (const f of ['tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']) {
    copyFileSync(join(fixturePath('mpt-configs'), `mpt-7b-chat.${f}`), join(dir, f));
  }
  return dir;
}

const DATA =
  [
    { prompt: 'Say hi.', response: 'Hi there!' },
    { prompt: 'Name a color.', response: 'Blue.' },
    { prompt: 'Count to three.', response: 'One, two, three.' },
    { prompt: 'What is the opposite of up?', response: 'Down.' },
  ]
    .map((l) => JSON.stringify(l))
    .join('\n') + '\n';

test('mpt finetune --lora keeps the base dtype, saves a PEFT adapter, and W + (alpha/r)·B·A is the merged model', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-lora-peft-'));
  try {
    const base = await bf16Base(mkdtempSync(join(dir, 'base-')));
    const data = join(dir, 'data.jsonl');
    writeFileSync(data, DATA);
    const args = (out: string) => [
      'finetune',
      base,
      data,
      '--out',
      out,
      '--lora',
      '--rank',
      String(RANK),
      '--alpha',
      String(ALPHA),
      '--steps',
      '2',
      '--batch-size',
      '2',
      '--lr',
      '0.05',
      '--warmup',
      '0',
      '--eval-fraction',
      '0',
      '--threads',
      '1',
    ];
    const out = join(dir, 'out');
    const r = await runCli(args(out));
    assert.equal(r.code, 0, r.stderr);

    // The merged model: bf16 like its base (about its size, not twice it), config saying so.
    assert.equal(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).torch_dtype, 'bfloat16');
    const merged = await readAll(join(out, 'model.safetensors'));
    assert.ok([...merged.values()].every((t) => t.dtype === 'bf16'));
    assert.ok(statSync(join(out, 'model.safetensors')).size < 1.1 * statSync(join(base, 'model.safetensors')).size);
    // The base's tokenizer travels: the shipped tokenizer.json it fell back to, and its own side files.
    assert.ok(statSync(join(out, 'tokenizer.json')).size > 1e6);
    assert.ok(
      JSON.parse(readFileSync(join(out, 'tokenizer_config.json'), 'utf8')).chat_template.includes('<|im_start|>'),
    );

    // adapter_config.json: PEFT's keys and values.
    const cfg = JSON.parse(readFileSync(join(out, 'adapter', 'adapter_config.json'), 'utf8'));
    assert.deepEqual(
      {
        peft_type: cfg.peft_type,
        task_type: cfg.task_type,
        r: cfg.r,
        lora_alpha: cfg.lora_alpha,
        bias: cfg.bias,
        fan_in_fan_out: cfg.fan_in_fan_out,
        base: cfg.base_model_name_or_path,
      },
      {
        peft_type: 'LORA',
        task_type: 'CAUSAL_LM',
        r: RANK,
        lora_alpha: ALPHA,
        bias: 'none',
        fan_in_fan_out: false,
        base,
      },
    );
    assert.deepEqual([...cfg.target_modules].sort(), ['Wqkv', 'down_proj', 'out_proj', 'up_proj']);
    assert.equal(typeof cfg.lora_dropout, 'number');

    // adapter_model.safetensors: base_model.model.<module>.lora_A.weight [r, in], lora_B.weight [out, r].
    const adapter = await readAll(join(out, 'adapter', 'adapter_model.safetensors'));
    const baseW = await readAll(join(base, 'model.safetensors'));
    const want: string[] = [];
    for (let l = 0; l < 2; l++)
      for (const m of MODULES)
        for (const ab of ['A', 'B']) want.push(`base_model.model.transformer.blocks.${l}.${m}.lora_${ab}.weight`);
    assert.deepEqual([...adapter.keys()].sort(), want.sort());
    let largestDelta = 0;
    for (let l = 0; l < 2; l++) {
      for (const m of MODULES) {
        const module = `transformer.blocks.${l}.${m}`;
        const A = adapter.get(`base_model.model.${module}.lora_A.weight`)!,
          B = adapter.get(`base_model.model.${module}.lora_B.weight`)!;
        const W = baseW.get(`${module}.weight`)!,
          M = merged.get(`${module}.weight`)!;
        const [o, i] = W.shape as [number, number];
        assert.deepEqual(A.shape, [RANK, i]);
        assert.deepEqual(B.shape, [o, RANK]);
        // W + (alpha/r)·B·A in f64, rounded to bf16 as the export does: the merged weights within one bf16 step.
        for (let r = 0; r < o; r++) {
          for (let c = 0; c < i; c++) {
            let d = 0;
            for (let k = 0; k < RANK; k++) d += B.data[r * RANK + k]! * A.data[k * i + c]!;
            d *= ALPHA / RANK;
            largestDelta = Math.max(largestDelta, Math.abs(d));
            const want = bf16ToF32(f32ToBf16(W.data[r * i + c]! + d)),
              got = M.data[r * i + c]!;
            assert.ok(
              Math.abs(got - want) <= 2 ** -7 * Math.abs(want) + 1e-30,
              `${module}[${r},${c}]: merged ${got}, W + sBA ${want}`,
            );
          }
        }
      }
    }
    assert.ok(largestDelta > 0.01, `the adapter changes the weights (largest |sBA| ${largestDelta})`);

    // --export-dtype f32: the merged weights are W + (alpha/r)·B·A exactly (f32 rounding).
    const out32 = join(dir, 'out32');
    const r32 = await runCli([...args(out32), '--export-dtype', 'f32']);
    assert.equal(r32.code, 0, r32.stderr);
    const m32 = await readAll(join(out32, 'model.safetensors'));
    const a32 = await readAll(join(out32, 'adapter', 'adapter_model.safetensors'));
    assert.ok([...m32.values()].every((t) => t.dtype === 'f32'));
    const module = 'transformer.blocks.1.ffn.down_proj';
    const A = a32.get(`base_model.model.${module}.lora_A.weight`)!,
      B = a32.get(`base_model.model.${module}.lora_B.weight`)!;
    const W = baseW.get(`${module}.weight`)!,
      M = m32.get(`${module}.weight`)!;
    const [o, i] = W.shape as [number, number];
    for (let r = 0; r < o; r++) {
      for (let c = 0; c < i; c++) {
        let d = 0;
        for (let k = 0; k < RANK; k++) d += B.data[r * RANK + k]! * A.data[k * i + c]!;
        const want = W.data[r * i + c]! + (ALPHA / RANK) * d;
        assert.ok(Math.abs(M.data[r * i + c]! - want) <= 1e-6 * Math.max(1, Math.abs(want)), `${module}[${r},${c}]`);
      }
    }
    const bad = await runCli([...args(join(dir, 'out-bad')), '--export-dtype', 'int8']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--export-dtype must be f32, f16, bf16, got int8/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
