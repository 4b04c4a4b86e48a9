#!/usr/bin/env bash
# The GPU checks, run on the device machine from the repository root with artifacts/gpu carried
# (run tool: carry ["artifacts/gpu"], command "bash deploy/gpu/run-checks.sh", timeout_s 590).
# Most important first, each under its own time limit, so a short device budget still yields the first figures:
# golden logits on cuda, device sampling against the host sampler, decode on cuda, the S-LoRA trace on cuda,
# then the same figures on the CPU backend.
# Everything printed also lands in $OUT/gpu-checks.txt.
set -uo pipefail
bin=artifacts/gpu/Loom.Gpu.Runner
log="${OUT:-/tmp}/gpu-checks.txt"
export DOTNET_BUNDLE_EXTRACT_BASE_DIR="${TMPDIR:-/tmp}/loom-gpu-bundle"
step() { local limit=$1; shift; echo "== $* (limit ${limit}s)" | tee -a "$log"; timeout "$limit" "$bin" "$@" 2>&1 | tee -a "$log"; echo "exit ${PIPESTATUS[0]}" | tee -a "$log"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; free -g | head -2; } 2>&1 | tee -a "$log"
step 90  golden tests/golden/models --backend cuda
step 60  sampling --backend cuda
step 120 decode --backend cuda
step 200 serving --backend cuda
step 60  decode --backend cpu --quick
step 100 serving --backend cpu --quick
