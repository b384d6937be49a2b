#!/bin/bash
# Packs this built checkout (dist/, bin/, the shipped model, the runtime dependencies) and this
# machine's Node binary into OUT_DIR/app.tar.xz and OUT_DIR/node.xz, to run the benchmarks on
# a machine that has neither Node nor network access (same CPU architecture and a glibc at least
# as new). There:
#   xz -dc node.xz > /tmp/node && chmod +x /tmp/node && tar xJf app.tar.xz -C /tmp
#   cd /tmp/app && PATH=/tmp:$PATH node dist/bench/run.js serve --rounds 7 --max-tokens 128
set -euo pipefail
out=${1:?usage: bench/pack.sh OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$root/dist/wasm/kernels.wasm" ] || { echo "build first (npm run build)" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
app=$stage/app
mkdir -p "$app/models" "$app/node_modules"
cp -r "$root/package.json" "$root/dist" "$root/bin" "$app/"
cp -r "$root/models/default" "$app/models/"
# what the built code imports at run time: package.json's dependencies (the build tools are devDependencies)
for dep in $(node -e 'console.log(Object.keys(require(process.argv[1]).dependencies).join(" "))' "$root/package.json"); do
  mkdir -p "$app/node_modules/$(dirname "$dep")"
  cp -r "$root/node_modules/$dep" "$app/node_modules/$dep"
done
mkdir -p "$out"
tar cf - -C "$stage" app | xz -T0 -6 > "$out/app.tar.xz"
xz -T0 -9 -c "$(command -v node)" > "$out/node.xz"
ls -l "$out/app.tar.xz" "$out/node.xz"
