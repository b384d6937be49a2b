#!/bin/bash
# The x64 code V8 generates for one wasm kernel function, to look for spills, bounds checks and
# shuffles: builds the relaxed-SIMD kernels with function names (asc --debug, otherwise the same
# flags as scripts/build-wasm.mjs), compiles every function with TurboFan (as the backend does:
# --no-liftoff) and prints the named function's code.
#
#   bash bench/wasm-code.sh tile1_q4 [OUT.txt]      (a name as in the AssemblyScript source)
#
# Functions are named src/backends/wasm/assembly/FILE/NAME; inlined helpers (@inline) have no code
# of their own. docs/cpu-profile.md reads the q4_0 tiles this way.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=${1:?usage: wasm-code.sh FUNCTION [OUT.txt]}
out=${2:-/tmp/wasm-code-$name.txt}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
node "$root/node_modules/assemblyscript/bin/asc.js" "$root/src/backends/wasm/assembly/index.ts" -O3 --noAssert \
  --runtime stub --enable simd --importMemory --initialMemory 1 --use abort= --noExportMemory \
  --enable threads --sharedMemory --maximumMemory 65536 --enable relaxed-simd --use DOT_ADD_TILES=0 --debug -o "$tmp/k.wasm"
cat > "$tmp/compile.mjs" <<JS
import { readFileSync } from 'node:fs';
const m = new WebAssembly.Module(readFileSync('$tmp/k.wasm'));
new WebAssembly.Instance(m, { env: { memory: new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true }) } });
JS
node --experimental-wasm-relaxed-simd --no-liftoff --no-wasm-lazy-compilation --print-wasm-code "$tmp/compile.mjs" > "$tmp/all.txt" 2>&1
# One function: from its "name:" line to the next function's.
awk -v want="/$name\$" '/^name: /{ on = ($2 ~ want) } on' "$tmp/all.txt" > "$out"
[ -s "$out" ] || { echo "no function named $name (names: grep '^name:' on the dump)" >&2; exit 1; }
echo "$out: $(grep -c '^0x' "$out") instructions"
