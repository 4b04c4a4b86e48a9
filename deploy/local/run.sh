#!/usr/bin/env bash
# Runs Loom on this machine: all roles, a local PostgreSQL under .data/, demo data on first start.
# Idempotent: run it again and it reuses the database, the demo tenant and the saved demo key.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=deploy/local/pg.sh
. "$ROOT/deploy/local/pg.sh"

DATA=$ROOT/.data
PGDATA_DIR=$DATA/pg
PG_PORT=${LOOM_PG_PORT:-55432}
URL=${LOOM_URL:-http://127.0.0.1:5080}
APP_DIR=$DATA/app

[ "$(id -u)" = 0 ] || { echo "run.sh needs root (it installs and runs PostgreSQL as the postgres user)" >&2; exit 1; }
command -v dotnet >/dev/null || { echo "the .NET 10 SDK (dotnet) is required" >&2; exit 1; }

pg_install
mkdir -p "$DATA"; chmod 755 "$DATA"
umask 077
[ -f "$DATA/pg-password" ] || head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$DATA/pg-password"
PG_PASSWORD=$(cat "$DATA/pg-password")
umask 022

echo "==> starting PostgreSQL on 127.0.0.1:$PG_PORT (data in $PGDATA_DIR)"
pg_start "$PGDATA_DIR" "$PG_PORT"
APP_PID=""
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$APP_PID" ] && kill -0 "$APP_PID" 2>/dev/null; then kill -TERM "$APP_PID" 2>/dev/null || true; wait "$APP_PID" 2>/dev/null || true; fi
  pg_stop "$PGDATA_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pg_ensure_role "$PGDATA_DIR" "$PG_PORT" loom "$PG_PASSWORD"
if [ "$(pg_psql "$PGDATA_DIR" "$PG_PORT" -c "SELECT 1 FROM pg_database WHERE datname = 'loom'")" != "1" ]; then
  pg_psql "$PGDATA_DIR" "$PG_PORT" -c "CREATE DATABASE loom OWNER loom"
fi

# The portal's chart library comes from npm at build time.
if ! command -v npm >/dev/null; then echo "==> installing Node.js and npm from Debian"; apt_install nodejs npm; fi
echo "==> building Loom (first run takes a minute)"
dotnet publish "$ROOT/src/Web/Web.csproj" -c Release -o "$APP_DIR" --nologo -v quiet >/dev/null

export ASPNETCORE_ENVIRONMENT=${ASPNETCORE_ENVIRONMENT:-Production}
export ConnectionStrings__Loom="Host=127.0.0.1;Port=$PG_PORT;Database=loom;Username=loom;Password=$PG_PASSWORD"
export Loom__Roles=${LOOM_ROLES:-web,api,jobs,inference}
export Loom__Seed__Demo=true
export Loom__Seed__ApiKeyFile="$DATA/demo-api-key"
export Loom__Blobs__Root="$DATA/blobs"
ARGS=(--urls "$URL")
if [ -f "$ROOT/models/loom-demo/config.json" ]; then
  # The demo base model (models/README.md); the inference role registers it as "loom-demo" (its folder name).
  ARGS+=("--Inference:ModelDirectory=$ROOT/models/loom-demo")
fi

echo "==> Loom at $URL   (portal: $URL/   API: $URL/v1   health: $URL/healthz)"
echo "    demo API key file: $DATA/demo-api-key   admin login: $DATA/demo-admin (written on first start)"
cd "$APP_DIR"
dotnet "$APP_DIR/Loom.Web.dll" "${ARGS[@]}" &
APP_PID=$!
set +e
wait "$APP_PID"
status=$?
APP_PID=""
exit $status
