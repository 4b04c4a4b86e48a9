#!/usr/bin/env bash
# HTTP overhead benchmark: starts a throwaway PostgreSQL and Loom (api + inference roles, Release) on
# loopback, then runs Loom.Benchmarks.Http against it. Usage: tests/Benchmarks.Http/run.sh [model dir]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$ROOT/tests/Benchmarks/bench-host.sh"
MODEL=$(cd "${1:-$ROOT/models/loom-demo}" && pwd)
dotnet build "$ROOT/tests/Benchmarks.Http" -c Release --nologo -v quiet >/dev/null
bench_host_start http "${BENCH_PG_PORT:-55477}" http://127.0.0.1:5090 \
  Loom__Roles=api,inference Api__RateLimits__RequestsPerMinute=100000 Api__RateLimits__TokensPerMinute=100000000 \
  -- "--Inference:ModelDirectory=$MODEL"
LOOM_URL=$BENCH_URL LOOM_KEY_FILE=$BENCH_KEY_FILE LOOM_MODEL_DIR="$MODEL" \
  dotnet "$ROOT/tests/Benchmarks.Http/bin/Release/net10.0/Loom.Benchmarks.Http.dll"
