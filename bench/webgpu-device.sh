#!/bin/bash
# The WebGPU backend on this machine's GPU, in one command: builds the project if dist/ is missing,
# then prints one JSON object with
#   - prompt (pp512) and decode (tg128) tokens/s of `mpt bench --backend webgpu` for the shipped
#     model, random-weight 1B in bf16 and q4_0, and random-weight 7B in q4_0;
#   - dispatches per decode step (one sequence, and four together) of the shipped model and of 1B.
#
#   bench/webgpu-device.sh [--quick] [--shipped]
#     --quick    pp128 / tg32, one repetition, no 7B
#     --shipped  the shipped model only (software drivers such as lavapipe: 1B takes CPU-hours there)
#
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
  if out=$("$@" 2>"$err" | tail -n 1) && [ -n "$out" ]; then echo "$out"
  else
    node -e 'console.log(JSON.stringify({ args: process.argv.slice(2, -1), error: process.argv.at(-1) }))' -- \
      "$@" "$(grep -v '^Warning' "$err" | tail -n 3)"
  fi
  rm -f "$err"
}
bench() { run node bin/mpt.js bench "$@" --backend webgpu --pp "$pp" --tg "$tg" --reps "$reps" --json; }
{
  echo '{"bench":['
  bench models/default
  if [ "$random" = 1 ]; then
    echo ','; bench --shape 1b --type bf16
    echo ','; bench --shape 1b --type q4_0
    if [ "$big" = 1 ]; then echo ','; bench --shape 7b --type q4_0; fi
  fi
  echo '],"dispatches":['
  run node dist/bench/webgpu-dispatches.js models/default --prompt "$pp"
  if [ "$random" = 1 ]; then
    echo ','; run node dist/bench/webgpu-dispatches.js --shape 1b --type q4_0 --prompt "$pp"
  fi
  echo ']}'
} | node -e 'let s = ""; process.stdin.on("data", (d) => (s += d))
  .on("end", () => console.log(JSON.stringify(JSON.parse(s), null, 1)))'
