#!/usr/bin/env bash
# Job-event benchmark: starts a throwaway PostgreSQL and one Loom web node (Release) on loopback, then runs
# Loom.Benchmarks.Events against them. Usage: tests/Benchmarks.Events/run.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$ROOT/tests/Benchmarks/bench-host.sh"
dotnet build "$ROOT/tests/Benchmarks.Events" -c Release --nologo -v quiet >/dev/null
bench_host_start events "${BENCH_PG_PORT:-55478}" http://127.0.0.1:5091 Loom__Roles=web Logging__LogLevel__Default=Warning
LOOM_URL=$BENCH_URL LOOM_KEY_FILE=$BENCH_KEY_FILE LOOM_DB=$BENCH_DB \
  dotnet "$ROOT/tests/Benchmarks.Events/bin/Release/net10.0/Loom.Benchmarks.Events.dll"
