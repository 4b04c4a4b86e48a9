#!/usr/bin/env bash
# Fine-tuning end to end: starts a throwaway PostgreSQL and one Loom process (api, jobs and inference roles, Release,
# default fine-tuning settings) on loopback serving models/loom-demo, then runs `Loom.Benchmarks finetuning e2e` against
# it: upload, fine-tune, chat with the result. Usage: tests/Benchmarks/FineTuning/run-e2e.sh [model dir]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
. "$ROOT/tests/Benchmarks/bench-host.sh"
MODEL=$(cd "${1:-$ROOT/models/loom-demo}" && pwd)
dotnet build "$ROOT/tests/Benchmarks" -c Release --nologo -v quiet >/dev/null
bench_host_start ft "${BENCH_PG_PORT:-55478}" http://127.0.0.1:5091 \
  Loom__Roles=api,jobs,inference Api__RateLimits__RequestsPerMinute=100000 Api__RateLimits__TokensPerMinute=100000000 \
  -- "--Inference:ModelDirectory=$MODEL"
LOOM_URL=$BENCH_URL LOOM_KEY_FILE=$BENCH_KEY_FILE LOOM_MODEL_DIR="$MODEL" \
  dotnet "$ROOT/tests/Benchmarks/bin/Release/net10.0/Loom.Benchmarks.dll" finetuning e2e || { echo "--- Loom's log:"; bench_host_log 30; exit 1; }
