#!/usr/bin/env bash
# The prepared device check: one call on a lent GPU machine, about 8 minutes, every figure written
# under $OUT (or runs/gpu_check). Runs through .gpu/run.sh (tools/gpu_pack.sh makes it; Deno with
# --cached-only, the Vulkan loader, a refusal of software adapters) when .gpu/ is present, else
# through `npx -y deno@2.9.6` (a rehearsal here: GPU_CHECK_ALLOW_FALLBACK=1 runs it on llvmpipe).
#
# Steps, each under its own time limit so one hang cannot eat the call, logs in $OUT/<step>.log:
#   info     adapter, limits, backend choice (cli.ts info --backend webgpu)
#   probe    readback latency, per-dispatch host cost, compile times (bench/probe.ts --json)
#   matmul   GFLOP/s per matmul variant and autotuned, 256..4096 (bench/webgpu_matmul.ts --json)
#   peer     our workloads on WebGPU: matmul, GAN, DCGAN, MLP, regression, NMT ms/step
#            (bench/peer.ts --backend webgpu --no-torch --out peer.json)
#   profile  per-kernel profile of the GAN and NMT steps (cli.ts profile gan|nmt, JSON)
#   tests    the kernel, gradient and variant tests forced onto WebGPU
#   torch    PyTorch CUDA matmul GFLOP/s at the same sizes, only if python3 has torch with CUDA
# Usage (device): run(command="bash tools/gpu_check.sh", carry=[".gpu"], timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/gpu_check}
mkdir -p "$out"
if [ -x .gpu/run.sh ]; then
  deno=(bash .gpu/run.sh deno)
else
  deno=(npx -y deno@2.9.6)
fi
[ "${GPU_CHECK_ALLOW_FALLBACK:-0}" = 1 ] && export GPU_PACK_ALLOW_FALLBACK=1
export AUTOLOSS_BACKEND=webgpu NO_COLOR=1
summary="$out/summary.txt"
: > "$summary"
step() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  printf '%-8s rc=%-3s %4ss\n' "$name" "$rc" "$((SECONDS - t0))" | tee -a "$summary"
  tail -n 4 "$out/$name.log" | sed 's/^/    /'
}
{ lscpu | grep -E 'Model name|^CPU\(s\)'; nvidia-smi -L 2>/dev/null; } | tee -a "$summary"
step info 90 "${deno[@]}" run -A cli.ts info --backend webgpu
step probe 60 "${deno[@]}" run -A bench/probe.ts --json
step matmul 150 env AUTOLOSS_AUTOTUNE=1 "${deno[@]}" run -A bench/webgpu_matmul.ts \
  --sizes 256,1024,2048,4096 --json
step peer 150 "${deno[@]}" run -A bench/peer.ts --backend webgpu --no-torch --iters 5 \
  --out "$out/peer.json"
step prof_gan 45 "${deno[@]}" run -A cli.ts profile gan --steps 10 --out "$out/profile_gan.json"
step prof_nmt 45 "${deno[@]}" run -A cli.ts profile nmt --steps 3 --out "$out/profile_nmt.json"
step tests 150 "${deno[@]}" test -A --parallel tests/kernels.test.ts tests/grad_check.test.ts \
  tests/webgpu_variants.test.ts tests/fusion.test.ts
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  step torch 90 python3 -c '
import json, time, torch
r = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "matmul_gflops": {}}
for n in (256, 1024, 2048, 4096):
    a, b = torch.randn(n, n, device="cuda"), torch.randn(n, n, device="cuda")
    for _ in range(3): a @ b
    torch.cuda.synchronize(); reps = max(5, int(2e11 // (2 * n**3))); t = time.perf_counter()
    for _ in range(reps): a @ b
    torch.cuda.synchronize(); dt = (time.perf_counter() - t) / reps
    r["matmul_gflops"][n] = round(2 * n**3 / dt / 1e9, 1)
print(json.dumps(r))'
fi
echo "gpu_check: results in $out" | tee -a "$summary"
