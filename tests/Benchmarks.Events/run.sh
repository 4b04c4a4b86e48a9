#!/usr/bin/env bash
# Job-event benchmark: starts a throwaway PostgreSQL and one Loom web node (Release) on loopback, then runs
# Loom.Benchmarks.Events against them. Usage: tests/Benchmarks.Events/run.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$ROOT/deploy/local/pg.sh"
WORK=$(mktemp -d /tmp/loom-bench-events.XXXXXX); chmod 755 "$WORK"
PORT=${BENCH_PG_PORT:-55478}; URL=http://127.0.0.1:5091
DB="Host=127.0.0.1;Port=$PORT;Database=bench;Username=bench;Password=bench"
APP_PID=""
cleanup() { [ -n "$APP_PID" ] && kill "$APP_PID" 2>/dev/null; wait "$APP_PID" 2>/dev/null; pg_stop "$WORK/pg"; rm -rf "$WORK"; }
trap cleanup EXIT
pg_install
pg_start "$WORK/pg" "$PORT" -c fsync=off
pg_ensure_role "$WORK/pg" "$PORT" bench bench CREATEDB
pg_psql "$WORK/pg" "$PORT" -c "CREATE DATABASE bench OWNER bench"
dotnet publish "$ROOT/src/Web/Web.csproj" -c Release -o "$WORK/app" --nologo -v quiet >/dev/null
dotnet build "$ROOT/tests/Benchmarks.Events" -c Release --nologo -v quiet >/dev/null
ConnectionStrings__Loom="$DB" Loom__Roles=web Loom__Seed__Demo=true Loom__Seed__ApiKeyFile="$WORK/key" \
  Logging__LogLevel__Default=Warning dotnet "$WORK/app/Loom.Web.dll" --urls "$URL" > "$WORK/loom.log" 2>&1 &
APP_PID=$!
for _ in $(seq 1 120); do curl -sf "$URL/readyz" >/dev/null && [ -s "$WORK/key" ] && break; sleep 1; done
curl -sf "$URL/readyz" >/dev/null || { echo "Loom did not start:"; tail -20 "$WORK/loom.log"; exit 1; }
LOOM_URL=$URL LOOM_KEY_FILE="$WORK/key" LOOM_DB="$DB" \
  dotnet "$ROOT/tests/Benchmarks.Events/bin/Release/net10.0/Loom.Benchmarks.Events.dll"
