#!/usr/bin/env bash
# Fine-tuning end to end: starts a throwaway PostgreSQL and one Loom process (api, jobs and inference roles, Release,
# default fine-tuning settings) on loopback serving models/loom-demo, then runs `Loom.Benchmarks finetuning e2e` against
# it: upload, fine-tune, chat with the result. Usage: tests/Benchmarks/FineTuning/run-e2e.sh [model dir]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
. "$ROOT/deploy/local/pg.sh"
MODEL=$(cd "${1:-$ROOT/models/loom-demo}" && pwd)
WORK=$(mktemp -d /tmp/loom-bench-ft.XXXXXX); chmod 755 "$WORK"
PORT=${BENCH_PG_PORT:-55478}; URL=http://127.0.0.1:5091
APP_PID=""
cleanup() { [ -n "$APP_PID" ] && kill "$APP_PID" 2>/dev/null; wait "$APP_PID" 2>/dev/null; pg_stop "$WORK/pg"; rm -rf "$WORK"; }
trap cleanup EXIT
pg_install
pg_start "$WORK/pg" "$PORT" -c fsync=off
pg_ensure_role "$WORK/pg" "$PORT" bench bench CREATEDB
pg_psql "$WORK/pg" "$PORT" -c "CREATE DATABASE bench OWNER bench"
dotnet publish "$ROOT/src/Web/Web.csproj" -c Release -o "$WORK/app" --nologo -v quiet >/dev/null
dotnet build "$ROOT/tests/Benchmarks" -c Release --nologo -v quiet >/dev/null
ConnectionStrings__Loom="Host=127.0.0.1;Port=$PORT;Database=bench;Username=bench;Password=bench" \
Loom__Roles=api,jobs,inference Loom__Seed__Demo=true Loom__Seed__ApiKeyFile="$WORK/key" \
Loom__Blobs__Root="$WORK/blobs" FineTuning__CheckpointDirectory="$WORK/checkpoints" \
Api__RateLimits__RequestsPerMinute=100000 Api__RateLimits__TokensPerMinute=100000000 \
  dotnet "$WORK/app/Loom.Web.dll" --urls "$URL" "--Inference:ModelDirectory=$MODEL" > "$WORK/loom.log" 2>&1 &
APP_PID=$!
for _ in $(seq 1 180); do curl -sf "$URL/readyz" >/dev/null && [ -s "$WORK/key" ] && break; sleep 1; done
curl -sf "$URL/readyz" >/dev/null || { echo "Loom did not start:"; tail -20 "$WORK/loom.log"; exit 1; }
LOOM_URL=$URL LOOM_KEY_FILE="$WORK/key" LOOM_MODEL_DIR="$MODEL" \
  dotnet "$ROOT/tests/Benchmarks/bin/Release/net10.0/Loom.Benchmarks.dll" finetuning e2e || { echo "--- Loom's log:"; tail -30 "$WORK/loom.log"; exit 1; }
