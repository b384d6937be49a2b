/** `mpt info MODEL`: config summary, parameter count, storage, and the memory plan for a context. */
import type { KvType } from '../../backends/backend.js';
import { InputError, quoteValue } from '../../errors.js';
import type { TensorInfo } from '../../formats/tensor-source.js';
import type { MptConfig } from '../../model/config.js';
import { defaultModelPath } from '../../model/default-model.js';
import { mptFacts } from '../../model/facts.js';
import { openCheckpoint } from '../../model/load.js';
import { GGUF_OUT_TYPES, ggufTensorPlan, type GgufOutType } from '../../model/gguf-type-mix.js';
import { formatBytes, planMemory } from '../../model/memory-plan.js';
import { parseArgs } from '../args.js';

export const summary = "show a model's config, size and memory plan";
export const help = `usage: mpt info [MODEL] [--ctx N] [--kv-type f32|f16|q8_0] [--type TYPE] [--mem BYTES] [--gpu] [--json]

Prints the config summary, parameter count, storage dtypes and bytes, and the memory plan
(weights + KV cache + activations) for a context of --ctx tokens (default: max_seq_len)
with a --kv-type KV cache (default f32, as generate and serve use).
--type plans for the weights as \`mpt convert --type TYPE\` writes them (e.g. q4_0 for an f16
checkpoint): \${GGUF_OUT_TYPES.join(', ')}.
--mem plans for BYTES of memory instead of what this machine has available.
MODEL is a Hugging Face MPT folder or a GGUF file (default: the shipped model).
--gpu adds what the webgpu backend would hold on this machine's GPU: the adapter, the model's
bytes there (matrices as stored where the kernels read that type, the rest f32), the KV cache
for --ctx (f32 or f16), and whether every tensor fits the adapter's largest buffer binding.`;

export async function run(argv: string[]): Promise<number> {
  const { positionals, options } = parseArgs(
    argv,
    {
      ctx: { type: 'number' },
      'kv-type': { type: 'string' },
      type: { type: 'string' },
      json: { type: 'boolean' },
      mem: { type: 'number' },
      gpu: { type: 'boolean' },
    },
    'info',
  );
  const path = positionals[0] ?? defaultModelPath();
  const ck = await openCheckpoint(path);
  const c = ck.config;
  const list = ck.tensors.list();
  await ck.tensors.close();
  let params = 0;
  let bytes = 0;
  const dtypes: Record<string, number> = {};
  for (const t of list) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    params += n;
    bytes += t.byteLength;
    dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
  }
  const kvType = (options['kv-type'] as string | undefined) ?? 'f32'; // the default of mpt generate / serve
  if (!['f32', 'f16', 'q8_0'].includes(kvType))
    throw new InputError(`--kv-type must be f32, f16 or q8_0, got "${kvType}"`);
  const ctx = (options['ctx'] as number | undefined) ?? c.maxSeqLen;
  if (!Number.isInteger(ctx) || ctx < 1) throw new InputError(`--ctx must be a positive integer, got ${ctx}`);
  let weightBytes = bytes;
  const type = options['type'] as GgufOutType | undefined;
  if (type) {
    if (!GGUF_OUT_TYPES.includes(type))
      throw new InputError(`--type must be one of ${GGUF_OUT_TYPES.join(', ')}, got ${quoteValue(type)}`);
    weightBytes = ggufTensorPlan(list, c, type).reduce((sum, t) => sum + t.bytes, 0);
  }
  const plan = planMemory({
    config: c,
    weightBytes,
    ctx,
    kvType: kvType as KvType,
    availableBytes: options['mem'] as number | undefined,
  });
  const info = {
    path: ck.path,
    format: ck.kind,
    d_model: c.dModel,
    n_heads: c.nHeads,
    kv_n_heads: c.attn.kvNHeads,
    attn_type: c.attn.attnType,
    n_layers: c.nLayers,
    ffn_hidden_size: c.ffn.hiddenSize,
    ffn_type: c.ffn.ffnType,
    vocab_size: c.vocabSize,
    max_seq_len: c.maxSeqLen,
    alibi: c.attn.alibi,
    alibi_bias_max: c.attn.alibiBiasMax,
    clip_qkv: c.attn.clipQkv,
    qk_ln: c.attn.qkLn,
    no_bias: c.noBias,
    norm_type: c.normType,
    logit_scale: c.logitScale,
    softmax_scale: c.attn.softmaxScale,
    parameters: params,
    tensors: list.length,
    dtypes,
    weight_bytes: bytes,
    plan: { ...plan, weightType: type ?? 'as stored' },
  };
  const gpu = options['gpu'] ? await gpuPlan(list, c, ctx, kvType) : undefined;
  if (options['json']) {
    process.stdout.write(JSON.stringify(gpu ? { ...info, gpu } : info, null, 2) + '\n');
    return 0;
  }
  const lines = [
    `model        ${ck.path} (${ck.kind === 'gguf' ? 'GGUF' : 'Hugging Face folder'})`,
    `shape        d_model ${c.dModel}, ${c.nLayers} layers, ${c.nHeads} heads (head_dim ${c.headDim}), ${c.attn.attnType}${c.attn.attnType !== 'multihead_attention' ? ` with ${c.attn.kvNHeads} K/V heads` : ''}`,
    `mlp          ${c.ffn.ffnType}, hidden ${c.ffn.hiddenSize} (expansion ${c.expansionRatio}), ${c.ffn.activation}`,
    `vocab        ${c.vocabSize}${c.tieWordEmbeddings ? ' (tied LM head)' : ''}`,
    `context      max_seq_len ${c.maxSeqLen}${c.attn.alibi ? `, ALiBi (bias max ${c.attn.alibiBiasMax}): extrapolates beyond it` : ''}`,
    `options      clip_qkv ${c.attn.clipQkv ?? 'off'}, qk_ln ${c.attn.qkLn}, biases ${!c.noBias}, norm ${c.normType}, logit_scale ${c.logitScale ?? 'off'}, softmax_scale ${c.attn.softmaxScale ?? '1/sqrt(head_dim)'}`,
    `parameters   ${params.toLocaleString('en-US')} (${(params / 1e6).toFixed(2)} M) in ${list.length} tensors`,
    `storage      ${formatBytes(bytes)}: ${Object.entries(dtypes)
      .map(([k, v]) => `${v}× ${k}`)
      .join(', ')}`,
    '',
    `memory plan  context ${ctx} tokens, KV cache ${kvType}${type ? `, weights as ${type}` : ''}`,
    `  weights      ${formatBytes(plan.weightBytes)}`,
    `  KV cache     ${formatBytes(plan.kvBytes)}`,
    `  activations  ${formatBytes(plan.activationBytes)}`,
    `  runtime      ${formatBytes(plan.overheadBytes)}`,
    `  total        ${formatBytes(plan.totalBytes)} of ${formatBytes(plan.availableBytes)} available: ${plan.fits ? 'fits' : 'DOES NOT FIT'}`,
    `  largest context that fits with ${kvType} KV: ${plan.maxCtxThatFits}`,
  ];
  if (ctx > c.maxSeqLen) lines.push(`  note: ${ctx} > max_seq_len ${c.maxSeqLen}: runs by ALiBi extrapolation`);
  if (gpu) {
    lines.push(
      '',
      `webgpu       ${gpu.adapter}`,
      `  weights      ${formatBytes(gpu.weight_bytes)} (matrices as stored where the kernels read that type, the rest f32)`,
      `  KV cache     ${formatBytes(gpu.kv_bytes)} (${gpu.kv_type}, ${ctx} tokens)`,
      `  largest tensor ${gpu.largest_tensor} ${formatBytes(gpu.largest_tensor_bytes)} of ${formatBytes(gpu.binding_limit)} one buffer binds: ${gpu.fits_bindings ? 'fits' : 'DOES NOT FIT'}`,
    );
  }
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

/** What the webgpu backend would hold on this machine's GPU (mpt info --gpu). */
async function gpuPlan(list: TensorInfo[], c: MptConfig, ctx: number, kvType: string) {
  const { openGpu } = await import('../../backends/webgpu/gpu.js');
  const { bindingLimit, gpuTensorBytes } = await import('../../backends/webgpu/weights.js');
  const g = await openGpu();
  try {
    const limit = bindingLimit(g);
    let weight = 0,
      largest = list[0]!;
    for (const t of list) {
      weight += gpuTensorBytes(t);
      if (gpuTensorBytes(t) > gpuTensorBytes(largest)) largest = t;
    }
    // The webgpu backend keeps f32 or f16 caches: a q8_0 request is shown as f16.
    const kv = kvType === 'f32' ? 'f32' : 'f16';
    const kvBytes = c.nLayers * 2 * ctx * mptFacts(c).kvDim * (kv === 'f32' ? 4 : 2);
    return {
      adapter: g.adapterName,
      binding_limit: limit,
      weight_bytes: weight,
      kv_type: kv,
      kv_bytes: kvBytes,
      largest_tensor: largest.name,
      largest_tensor_bytes: gpuTensorBytes(largest),
      fits_bindings: gpuTensorBytes(largest) <= limit,
    };
  } finally {
    g.device.destroy();
  }
}
