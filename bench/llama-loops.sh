#!/bin/bash
# Native llama.cpp's hottest kernel on this CPU and its loops, for the instruction-level comparison
# in docs/cpu-profile.md: runs llama-bench under `perf record -e cpu-clock` (software sampling: this
# VM has no PMU counters), prints the functions with the most samples as CPU seconds, annotates the
# hottest one and summarises its loops with bench/loop-mix.ts (after a build).
#
#   bash bench/llama-loops.sh MODEL.gguf pp|tg [OUT_DIR]
#
# pp: `-p 64 -n 0`, tg: `-p 0 -n 32`; one thread, 3 repetitions, no warm-up run (so a function's
# seconds divided by 3 is one run's). LLAMA_BENCH overrides the binary.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:?usage: llama-loops.sh MODEL.gguf pp|tg [OUT_DIR]}
mode=${2:?usage: llama-loops.sh MODEL.gguf pp|tg [OUT_DIR]}
out=${3:-/tmp/llama-loops}
bench=${LLAMA_BENCH:-$HOME/.cache/llama.cpp-native/src/build/bin/llama-bench}
case $mode in
  pp) args=(-p 64 -n 0) ;;
  tg) args=(-p 0 -n 32) ;;
  *) echo "mode must be pp or tg" >&2; exit 2 ;;
esac
mkdir -p "$out"
data="$out/$(basename "$model" .gguf)-$mode.data"
perf record -q -e cpu-clock -F 4000 -o "$data" -- "$bench" -m "$model" -t 1 -r 3 --no-warmup "${args[@]}" 2>&1 | grep -E '^\| '
# Top functions by samples (4,000 a CPU second).
perf report -i "$data" --stdio --sort sym -F overhead,sample,sym 2>/dev/null | grep -v '^#' | grep -v '^$' |
  sort -k2 -n -r | head -5 | awk '{ s = $2 / 4000; $1 = ""; $2 = ""; printf "%8.3f s %s\n", s, $0 }'
# The hottest user-space function (skip the kernel's [k] entries and the load-time repack).
sym=$(perf report -i "$data" --stdio --sort sym -F sample,sym 2>/dev/null | grep -v '^#' | grep '\[\.\]' |
  grep -v repack_ | sort -k1 -n -r | head -1 | sed 's/^ *[0-9]* *\[\.\] //')
ann="$out/$(basename "$model" .gguf)-$mode.ann"
perf annotate -i "$data" --stdio -s "$sym" 2>/dev/null > "$ann"
echo "hottest: $sym -> $ann"
node "$root/dist/bench/run.js" loop-mix "$ann" --top 3
