// Entry point of the kernel module: every exported kernel, nothing else.
export { gemm_f32, transpose_f32 } from './gemm-f32';
export { gemm_f16, gemm_bf16 } from './gemm-half';
export { gemm_q4_0, gemm_q8_0, gemm_q4_0x4, gemm_q8_0x4, gemv_q4_0x4, repack_x4, dequant_row_x4, act_q8_bytes } from './gemm-q';
export { x4_raw_scales, x4_scales_check, x4_scales_to_raw } from './x4-scale';
export { gemm_q4_0x4_prompt, gemm_q8_0x4_prompt } from './gemm-q-prompt';
export { quantize_act_q8, quantize_act_q8_row, quantize_act_q8_span, quantize_act_q8_row_span } from './quant-act';
export { gemm_k, quantize_act_q8k, quantize_act_q8k_span } from './gemm-k';
export { gemm_q4_kx4, gemm_q4_kx4_prompt, repack_q4_kx4, dequant_row_q4_kx4 } from './gemm-k-x4';
export { gemm_q6_kx4, repack_q6_kx4, dequant_row_q6_kx4 } from './gemm-q6k-x4';
export { gemm_q4_k_prompt, gemm_q5_k_prompt, gemm_q6_k_prompt } from './gemm-k-prompt';
export { init_tables } from './tables';
export { layernorm, rmsnorm } from './norm';
export { epilogue, glu, clip, add_to, copy_bytes, dequant_row } from './elementwise';
export { attention, attention_kv, store_kv, store_kv_row, store_kv_segs, load_kv_row, round_kv } from './attention';
export { quantize_q8_0, quantize_q4_0, clamp_q8_0, fill_random_bytes, fill_random_weights, fill_f32, read_probe } from './quant-weights';
export { f16_to_f32_array, bf16_to_f32_array, f32_to_f16_array, f32_to_bf16_array } from './half';
export { sampling_max, sampling_weights, sampling_draw, sampling_kth, sampling_gather, sampling_argmax } from './sampling';
export { quantize_q4_k, quantize_q5_k, quantize_q6_k, kquant_scratch_bytes } from './quant-k';
