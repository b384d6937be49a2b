/**
 * The names llama.cpp's `mpt` architecture gives the tensors, mapped to this engine's canonical
 * (MosaicML state-dict) names and back.
 */
const GLOBAL_NAMES: Record<string, string> = {
  token_embd: 'transformer.wte',
  position_embd: 'transformer.wpe',
  output_norm: 'transformer.norm_f',
  output: 'lm_head',
};
const BLOCK_NAMES: Record<string, string> = {
  attn_norm: 'norm_1',
  attn_qkv: 'attn.Wqkv',
  attn_q_norm: 'attn.q_ln',
  attn_k_norm: 'attn.k_ln',
  attn_output: 'attn.out_proj',
  ffn_norm: 'norm_2',
  ffn_up: 'ffn.up_proj',
  ffn_down: 'ffn.down_proj',
};
const CANONICAL_GLOBAL = Object.fromEntries(Object.entries(GLOBAL_NAMES).map(([k, v]) => [v, k]));
const CANONICAL_BLOCK = Object.fromEntries(Object.entries(BLOCK_NAMES).map(([k, v]) => [v, k]));

/** llama.cpp tensor name → MosaicML name, or undefined for names MPT does not have. */
export function canonicalTensorName(ggufName: string): string | undefined {
  const m = /^(?:blk\.(\d+)\.)?([a-z_]+)\.(weight|bias)$/.exec(ggufName);
  if (!m) return undefined;
  const [, layer, base, kind] = m;
  if (layer === undefined) {
    const g = GLOBAL_NAMES[base!];
    return g === undefined ? undefined : `${g}.${kind}`;
  }
  const b = BLOCK_NAMES[base!];
  return b === undefined ? undefined : `transformer.blocks.${Number(layer)}.${b}.${kind}`;
}

/** MosaicML name → llama.cpp tensor name, or undefined when llama.cpp's MPT has no such tensor. */
export function ggufTensorName(canonical: string): string | undefined {
  const m = /^(?:transformer\.blocks\.(\d+)\.)?(.+)\.(weight|bias)$/.exec(canonical);
  if (!m) return undefined;
  const [, layer, base, kind] = m;
  if (layer === undefined) {
    const g = CANONICAL_GLOBAL[base!];
    return g === undefined ? undefined : `${g}.${kind}`;
  }
  const b = CANONICAL_BLOCK[base!];
  return b === undefined ? undefined : `blk.${Number(layer)}.${b}.${kind}`;
}
