#!/usr/bin/env bash
# Prepares .gpu/ (ignored by git): everything a bare GPU machine without network needs to run this
# project's tests and benchmarks on WebGPU: the Deno binary, a Deno cache holding every npm and
# remote dependency of cli.ts, mod.ts, tests/ and bench/, and the Debian packages of the Vulkan
# loader and the Fashion-MNIST data. Hardened from ../shared/tools/gpu-pack.sh: every step fails
# loudly, the cache is filled from all entry points, the run refuses a software (fallback) adapter
# unless told otherwise, and Deno runs with --cached-only so a missing dependency is an error, not
# a download attempt.
#
# Usage (project root):        tools/gpu_pack.sh
# On the device (carry .gpu):  bash .gpu/run.sh deno run -A bench/gpu_check.ts
# Rehearsal without network:   tools/gpu_pack.sh --rehearse   (runs the WebGPU test suite through
#                              .gpu/run.sh inside `unshare -rn`, allowing the llvmpipe adapter)
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
die() { echo "gpu_pack: $*" >&2; exit 1; }

rehearse() {
  [ -x .gpu/run.sh ] || die "no .gpu/run.sh; run tools/gpu_pack.sh first"
  command -v unshare >/dev/null || die "unshare not found (util-linux)"
  echo "gpu_pack: rehearsal: the WebGPU test suite through .gpu/run.sh with no network" >&2
  # -r: map to root in a new user namespace; -n: a network namespace with only loopback.
  unshare -rn env GPU_PACK_ALLOW_FALLBACK=1 AUTOLOSS_BACKEND=webgpu HOME=/tmp/gpu-home \
    bash .gpu/run.sh deno test -A --parallel tests/
}
if [ "${1:-}" = "--rehearse" ]; then rehearse; exit; fi

grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/debs
ver=${DENO_VERSION:-2.9.6}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
npm install --silent --no-audit --no-fund --prefix "$work" "deno@$ver" >/dev/null 2>&1 ||
  die "npm install deno@$ver failed (network?)"
bin="$work/node_modules/@deno/linux-x64-glibc/deno"
[ -x "$bin" ] || die "deno binary not found after npm install"
"$bin" --version | head -1 >&2
echo "gpu_pack: compressing deno $ver ..." >&2
xz -T0 -6 -c "$bin" > .gpu/deno.xz

# Every dependency of every entry point except the TF.js peer benchmarks: TF.js unpacks to 290 MiB
# (about 40 MiB compressed) and the device copies at most 64 MiB, so the GPU run has PyTorch CUDA
# (when the device has it) as its peer instead.
export DENO_DIR="$work/deno_dir"
mapfile -t entries < <(grep -L 'tfjs\|tfjs_peer\|autoloss_impl' cli.ts mod.ts tests/*.ts bench/*.ts examples/*.ts 2>/dev/null)
echo "gpu_pack: caching the dependencies of ${#entries[@]} entry points ..." >&2
"$bin" cache --quiet "${entries[@]}" || die "deno cache failed"
# The CPU backend's worker and the type-check step of `deno test` need nothing more; prove the
# cache is complete by type-checking offline from it.
"$bin" check --quiet --cached-only "${entries[@]}" || die "the cache is incomplete (check --cached-only failed)"
tar -C "$work" -cJf .gpu/deno_dir.tar.xz deno_dir

# Debian packages: the Vulkan loader (wgpu dlopens libvulkan.so.1; without it requestAdapter()
# returns null). The Fashion-MNIST dataset (30 MiB) only with GPU_PACK_FASHION=1: its one test is
# skipped without it, and it does not fit beside Deno otherwise.
(
  cd .gpu/debs
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64'
  pkgs=(libvulkan1)
  [ "${GPU_PACK_FASHION:-0}" = 1 ] && pkgs+=(dataset-fashion-mnist)
  for p in "${pkgs[@]}"; do
    # shellcheck disable=SC2086
    apt-get $o download "$p" >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1; apt-get $o download "$p" >/dev/null; } ||
      { echo "gpu_pack: apt-get download $p failed" >&2; exit 1; }
  done
)
ls .gpu/debs/libvulkan1_*.deb >/dev/null || die "libvulkan1 .deb missing"

cat > .gpu/run.sh <<'RUN'
#!/usr/bin/env bash
# Runs "$@" on the device with Deno (--cached-only), its cache and the Vulkan loader in place.
# Prints the GPU and the WebGPU adapter first; refuses a fallback (software) adapter unless
# GPU_PACK_ALLOW_FALLBACK=1 (the offline rehearsal on a machine without a GPU).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "gpu run: $*" >&2; exit 3; }
for f in "$here"/debs/*.deb; do dpkg -x "$f" / || fail "cannot unpack $f"; done
/sbin/ldconfig 2>/dev/null || ldconfig || true
mkdir -p /tmp/gpu/bin
xz -dc "$here/deno.xz" > /tmp/gpu/deno-bin && chmod +x /tmp/gpu/deno-bin || fail "cannot unpack deno"
rm -rf /tmp/gpu/deno_dir && tar -C /tmp/gpu -xJf "$here/deno_dir.tar.xz" || fail "cannot unpack the deno cache"
# `deno` adds --cached-only to the subcommands that take it: a missing dependency fails at once.
cat > /tmp/gpu/bin/deno <<'WRAP'
#!/usr/bin/env bash
case "${1:-}" in
  run|test|bench|check|cache|eval|compile) sub=$1; shift; exec /tmp/gpu/deno-bin "$sub" --cached-only "$@" ;;
  *) exec /tmp/gpu/deno-bin "$@" ;;
esac
WRAP
chmod +x /tmp/gpu/bin/deno
export PATH=/tmp/gpu/bin:$PATH DENO_DIR=/tmp/gpu/deno_dir XDG_RUNTIME_DIR=/tmp NO_COLOR=1
export DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1
# The NVIDIA driver's Vulkan ICD, where the device image keeps it.
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
  if [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd; break; fi
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
adapter=$(/tmp/gpu/deno-bin eval 'const a = await navigator.gpu?.requestAdapter({ powerPreference: "high-performance" });
const i = a?.info; console.log(i ? `${i.isFallbackAdapter ? "fallback" : "hardware"} ${i.vendor} ${i.architecture} ${i.description}` : "none");' 2>&1 | tail -1)
echo "webgpu adapter: $adapter"
case "$adapter" in
  hardware*) ;;
  fallback*) [ "${GPU_PACK_ALLOW_FALLBACK:-0}" = 1 ] || fail "only a software adapter ($adapter); set GPU_PACK_ALLOW_FALLBACK=1 to run on it anyway" ;;
  *) fail "no WebGPU adapter (VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}; is libvulkan1 unpacked?)" ;;
esac
exec "$@"
RUN
chmod +x .gpu/run.sh
du -sh .gpu >&2
size=$(du -sm .gpu | cut -f1)
[ "$size" -lt 56 ] || die ".gpu is ${size} MiB: the device copies at most 64 MiB with the tree"
echo "gpu_pack: done. Carry [\".gpu\"]; run: bash .gpu/run.sh <command>; rehearse: tools/gpu_pack.sh --rehearse" >&2
