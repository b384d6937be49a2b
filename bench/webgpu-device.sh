#!/bin/bash
# The WebGPU backend on this machine's GPU, in one command (meant to finish within 8 minutes on an
# H100-class GPU): builds the project if dist/ is missing, then prints one JSON object with
#   - prompt (pp512) and decode (tg128) tokens/s of `mpt bench --backend webgpu` for the shipped
#     model and random-weight 1B and 7B shapes in q4_0, q8_0 and bf16, each beside its decode
#     roofline: the GPU's memory bandwidth over the weight bytes a decode step reads by design;
#   - dispatches per decode step (one sequence, and four together) of the shipped model and of 1B;
#   - the f16-math option's KL against f32 (bench/webgpu-f16-kl.ts) on the shipped model and 1B bf16.
#
#   bench/webgpu-device.sh [--quick] [--shipped]
#     --quick    pp128 / tg32, one repetition, no 7B
#     --shipped  the shipped model only (software drivers such as lavapipe: 1B takes CPU-hours there)
#
# The bandwidth comes from nvidia-smi's GPU name (a table below) or GPU_BANDWIDTH_GBS (GB/s).
# Each run is cut at RUN_TIMEOUT seconds (default 150) and reported as an error then.
# Needs Node 20 and the `webgpu` npm package (Dawn), and a Vulkan loader (libvulkan1, with glvnd's
# libEGL/libGLX on NVIDIA). On NVIDIA machines whose driver is mounted under /usr/local/nvidia (as in
# containers) it points Vulkan at it. Without Node on the machine, see bench/pack.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
pp=512 tg=128 reps=3 big=1 random=1
for a in "$@"; do
  case $a in
    --quick) pp=128 tg=32 reps=1 big=0 ;;
    --shipped) random=0 ;;
    *) echo "usage: bench/webgpu-device.sh [--quick] [--shipped]" >&2; exit 2 ;;
  esac
done

icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; fi
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
if [ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] && [ -f "$egl" ]; then export __EGL_VENDOR_LIBRARY_FILENAMES=$egl; fi
has_vulkan() {
  ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1' && return 0
  local d; for d in ${LD_LIBRARY_PATH//:/ }; do [ -e "$d/libvulkan.so.1" ] && return 0; done; return 1
}
if ! has_vulkan; then
  echo "webgpu-device: no Vulkan loader (libvulkan.so.1) on this machine: install libvulkan1" >&2
  exit 1
fi
[ -f dist/src/cli/main.js ] || node scripts/build.mjs >&2
[ -f dist/bench/webgpu-dispatches.js ] || node node_modules/typescript/bin/tsc -p tsconfig.json >&2

# One JSON value a run; a run that fails (a tensor larger than this GPU binds, say) gives its error.
run() {
  local out err=$(mktemp)
  if out=$(timeout "${RUN_TIMEOUT:-150}" "$@" 2>"$err" | tail -n 1) && [ -n "$out" ]; then echo "$out"
  else
    node -e 'console.log(JSON.stringify({ args: process.argv.slice(2, -1), error: process.argv.at(-1) }))' -- \
      "$@" "$(grep -v '^Warning' "$err" | tail -n 3)"
  fi
  rm -f "$err"
}
bench() { run node bin/mpt.js bench "$@" --backend webgpu --pp "$pp" --tg "$tg" --reps "$reps" --json; }
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || true)
{
  echo '{"gpu":'; node -e 'console.log(JSON.stringify(process.argv[1]))' "$gpu_name"
  echo ',"bench":['
  bench models/default
  if [ "$random" = 1 ]; then
    for shape in 1b 7b; do
      [ "$shape" = 7b ] && [ "$big" = 0 ] && continue
      for type in q4_0 q8_0 bf16; do echo ','; bench --shape "$shape" --type "$type"; done
    done
  fi
  echo '],"dispatches":['
  run node dist/bench/webgpu-dispatches.js models/default --prompt "$pp"
  if [ "$random" = 1 ]; then
    echo ','; run node dist/bench/webgpu-dispatches.js --shape 1b --type q4_0 --prompt "$pp"
  fi
  echo '],"f16_math_kl":['
  run node dist/bench/webgpu-f16-kl.js models/default --tokens 128
  if [ "$random" = 1 ]; then echo ','; run node dist/bench/webgpu-f16-kl.js --shape 1b --type bf16 --tokens 128; fi
  echo ']}'
} | GPU_BANDWIDTH_GBS="${GPU_BANDWIDTH_GBS:-}" node -e '
// Decode roofline: bandwidth / weight bytes a step reads (12 d^2 a layer plus the d x vocab LM head,
// in the stored type: bf16 2 bytes a weight, q8_0 34 per 32, q4_0 18 per 32; the shipped model: its file).
const GBS = { "H200": 4800, "H100 NVL": 3900, "H100 80GB HBM3": 3350, "H100 PCIe": 2000, "A100-SXM4-80GB": 2039,
  "A100 80GB PCIe": 1935, "A100-SXM4-40GB": 1555, "A100-PCIE-40GB": 1555, "L40S": 864, "RTX 4090": 1008,
  "RTX 3090": 936, "A10": 600, "L4": 300 };
const SHAPES = { "1b": [2048, 24], "7b": [4096, 32] }, PER = { bf16: 2, q8_0: 34 / 32, q4_0: 18 / 32 };
let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
  const o = JSON.parse(s);
  const key = Object.keys(GBS).find((k) => o.gpu.includes(k));
  const gbs = Number(process.env.GPU_BANDWIDTH_GBS) || (key ? GBS[key] : null);
  o.bandwidth_gb_per_s = gbs;
  for (const b of o.bench) {
    const r = b.results?.[0]; if (!r) continue;
    let bytes = null;
    const shape = SHAPES[r.shape], per = PER[r.type];
    if (shape && per) bytes = (12 * shape[0] ** 2 * shape[1] + shape[0] * 50432) * per;
    else if (/models\/default/.test(r.model ?? "")) bytes = require("fs").statSync("models/default/model.safetensors").size;
    b.weight_bytes_per_token = bytes;
    if (bytes && gbs) {
      b.roofline_tg_tokens_per_second = (gbs * 1e9) / bytes;
      const tg = b.results.find((x) => x.test.startsWith("tg"));
      if (tg) b.tg_fraction_of_roofline = tg.tokens_per_second / b.roofline_tg_tokens_per_second;
    }
  }
  console.log(JSON.stringify(o, null, 1));
});'
