#!/usr/bin/env bash
# The GPU checks, run on the device machine from the repository root with artifacts/gpu carried
# (run tool: carry ["artifacts/gpu"], command "bash deploy/gpu/run-checks.sh", timeout_s 520).
# Most important first, each under its own time limit (450 s in all), so a short device budget still yields the first
# figures: golden logits on cuda, device sampling against the host sampler, decode on cuda, the S-LoRA trace on cuda,
# then the same figures on the CPU backend. Everything printed also lands in $OUT/gpu-checks.txt.
# "run-checks.sh gpu" runs the cuda steps alone (340 s in all), for a rerun after a change to the GPU kernels;
# "run-checks.sh figures" the golden check, decode and a 128-request S-LoRA trace on cuda (330 s), for a short budget.
set -uo pipefail
log="${OUT:-/tmp}/gpu-checks.txt"
bin="${TMPDIR:-/tmp}/loom-gpu/Loom.Gpu.Runner"
mkdir -p "$(dirname "$bin")"
if command -v xz >/dev/null; then xz -dc artifacts/gpu/Loom.Gpu.Runner.xz > "$bin"
else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' artifacts/gpu/Loom.Gpu.Runner.xz "$bin"; fi
chmod +x "$bin"
export DOTNET_BUNDLE_EXTRACT_BASE_DIR="${TMPDIR:-/tmp}/loom-gpu-bundle"
# ILGPU opens the driver as "cuda" (libcuda.so); a driver-only install may have just libcuda.so.1.
if ! ldconfig -p | grep -q 'libcuda\.so '; then
  so1=$(ldconfig -p | awk '/libcuda\.so\.1 /{print $NF; exit}')
  [ -z "$so1" ] && so1=$(ls /usr/local/nvidia/lib64/libcuda.so.1 /usr/lib/x86_64-linux-gnu/libcuda.so.1 2>/dev/null | head -1)
  if [ -n "$so1" ]; then mkdir -p /tmp/loom-cudalib; ln -sf "$so1" /tmp/loom-cudalib/libcuda.so; export LD_LIBRARY_PATH="/tmp/loom-cudalib:${LD_LIBRARY_PATH:-}"; fi
fi
step() { local limit=$1; shift; echo "== $* (limit ${limit}s)" | tee -a "$log"; timeout "$limit" "$bin" "$@" 2>&1 | tee -a "$log"; echo "exit ${PIPESTATUS[0]}" | tee -a "$log"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; free -g | head -2; ldconfig -p | grep libcuda; } 2>&1 | tee -a "$log"
if [ "${1:-}" = figures ]; then
  step 30  golden tests/golden/models --backend cuda
  step 60  decode --backend cuda
  step 240 serving --backend cuda --requests 128
  exit 0
fi
step 40  golden tests/golden/models --backend cuda
step 45  sampling --backend cuda
step 90  decode --backend cuda
step 165 serving --backend cuda
[ "${1:-}" = gpu ] && exit 0
step 40  decode --backend cpu --quick
step 70  serving --backend cpu --quick
