#!/usr/bin/env bash
# (From the project's shared scripts; used by .ci/run so the WebGPU tests run on a CPU Vulkan driver.)
# Installs a WebGPU-capable software Vulkan driver (Mesa lavapipe from Debian bookworm-backports)
# into $DEST without touching the system's apt sources or Mesa. Prints the env to use.
set -euo pipefail
DEST=${1:-$PWD/.lavapipe}
MESA_PKG=${MESA_PKG:-mesa-vulkan-drivers/bookworm-backports}   # or pin: mesa-vulkan-drivers=25.0.7-2~bpo12+1
# same Debian mirror as the system's main archive (first URIs: line of the deb822 file, or the first deb line)
MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$MIRROR" ] || MIRROR=$(awk '$1=="deb"{for(i=2;i<=NF;i++) if ($i ~ /^(http|https|file):/) {print $i; exit}}' /etc/apt/sources.list)
mkdir -p "$DEST/apt/lists/partial" "$DEST/apt/cache/archives/partial" "$DEST/debs" "$DEST/root"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm-backports main" > "$DEST/apt/sources.list"
O=(-o Dir::Etc::SourceList="$DEST/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
   -o Dir::State::Lists="$DEST/apt/lists" -o Dir::Cache="$DEST/apt/cache" -o Debug::NoLocking=1)
# runtime deps of lavapipe (libLLVM-15, xcb, wayland-client, ...) come with bookworm's own mesa-vulkan-drivers
dpkg -s libvulkan1 mesa-vulkan-drivers >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libvulkan1 mesa-vulkan-drivers >/dev/null
apt-get "${O[@]}" -qq update
(cd "$DEST/debs" && apt-get "${O[@]}" -qq download "$MESA_PKG" libdrm2/bookworm-backports 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
for d in "$DEST"/debs/*.deb; do dpkg-deb -x "$d" "$DEST/root"; done
# the multiarch folder the driver unpacked into (x86_64-linux-gnu, aarch64-linux-gnu, ...)
LVP=$(find "$DEST/root" -name libvulkan_lvp.so | head -n 1)
[ -n "$LVP" ] || { echo "lavapipe (libvulkan_lvp.so) not found in $MESA_PKG" >&2; exit 1; }
LIB=$(dirname "$LVP")
printf '{"file_format_version":"1.0.1","ICD":{"library_path":"%s/libvulkan_lvp.so","api_version":"1.4.305"}}\n' "$LIB" > "$DEST/lvp_icd.json"
cat > "$DEST/env.sh" <<ENV
export VK_ICD_FILENAMES="$DEST/lvp_icd.json"
export VK_DRIVER_FILES="$DEST/lvp_icd.json"
export LD_LIBRARY_PATH="$LIB\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export NODEVICE_SELECT=1
ENV
echo "source $DEST/env.sh"
