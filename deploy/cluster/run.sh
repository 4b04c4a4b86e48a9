#!/usr/bin/env bash
# Runs Loom split by role on loopback: one PostgreSQL, one Redis, two API+web nodes (one rate-limit budget through
# Redis, one sign-in through the key ring in PostgreSQL), two inference nodes (registered in inference_nodes, reached
# by the API nodes over gRPC; inf-1 serves two base models: models/loom-demo and the same checkpoint held in bfloat16
# as loom-demo-bf16, each with its own engine and pool), one jobs node, and the YARP front (src/Front) spreading HTTP
# over the API nodes with health checks. Prints the front's URL; Ctrl-C stops everything.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=deploy/local/pg.sh
. "$ROOT/deploy/local/pg.sh"

DATA=$ROOT/.data/cluster
PGDATA_DIR=$DATA/pg
PG_PORT=${LOOM_PG_PORT:-55433}
REDIS_PORT=${LOOM_REDIS_PORT:-56379}
APP_DIR=$DATA/app
FRONT_DIR=$DATA/front
FRONT_PORT=${LOOM_FRONT_PORT:-5080}
MODEL=$ROOT/models/loom-demo

[ "$(id -u)" = 0 ] || { echo "run.sh needs root (it installs and runs PostgreSQL as the postgres user)" >&2; exit 1; }
command -v dotnet >/dev/null || { echo "the .NET 10 SDK (dotnet) is required" >&2; exit 1; }
[ -f "$MODEL/config.json" ] || { echo "models/loom-demo is missing (see models/README.md)" >&2; exit 1; }

pg_install
command -v redis-server >/dev/null || { echo "==> installing redis-server from Debian"; apt_install redis-server; }
mkdir -p "$DATA"; chmod 755 "$DATA"
umask 077
[ -f "$DATA/pg-password" ] || head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$DATA/pg-password"
[ -f "$DATA/cluster-token" ] || head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$DATA/cluster-token"
PG_PASSWORD=$(cat "$DATA/pg-password")
umask 022

PIDS=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  pg_stop "$PGDATA_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "==> PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT"
pg_start "$PGDATA_DIR" "$PG_PORT"
pg_ensure_role "$PGDATA_DIR" "$PG_PORT" loom "$PG_PASSWORD"
if [ "$(pg_psql "$PGDATA_DIR" "$PG_PORT" -c "SELECT 1 FROM pg_database WHERE datname = 'loom'")" != "1" ]; then
  pg_psql "$PGDATA_DIR" "$PG_PORT" -c "CREATE DATABASE loom OWNER loom"
fi
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --daemonize no --loglevel warning > "$DATA/redis.log" 2>&1 &
PIDS+=($!)

if ! command -v npm >/dev/null; then echo "==> installing Node.js and npm from Debian"; apt_install nodejs npm; fi
echo "==> building Loom (first run takes a minute)"
dotnet publish "$ROOT/src/Web/Web.csproj" -c Release -o "$APP_DIR" --nologo -v quiet >/dev/null
dotnet publish "$ROOT/src/Front/Front.csproj" -c Release -o "$FRONT_DIR" --nologo -v quiet >/dev/null

export ASPNETCORE_ENVIRONMENT=${ASPNETCORE_ENVIRONMENT:-Production}
export ConnectionStrings__Loom="Host=127.0.0.1;Port=$PG_PORT;Database=loom;Username=loom;Password=$PG_PASSWORD"
export Loom__Blobs__Root="$DATA/blobs"
export Api__RateLimits__Redis="127.0.0.1:$REDIS_PORT"
export Cluster__InternalToken; Cluster__InternalToken=$(cat "$DATA/cluster-token")
# The front on 127.0.0.1 forwards the client's address (per-address limits on failed keys and sign-ins).
export Loom__Proxy__KnownProxies__0=127.0.0.1

# node NAME ROLES PORT [extra --Key=Value settings]
node() {
  local name=$1 roles=$2 port=$3; shift 3
  mkdir -p "$DATA/$name"
  (cd "$APP_DIR" && exec env Loom__Roles="$roles" Api__AdapterCacheDirectory="$DATA/$name/adapters" \
    FineTuning__CheckpointDirectory="$DATA/$name/checkpoints" \
    dotnet "$APP_DIR/Loom.Web.dll" --urls "http://127.0.0.1:$port" "$@" > "$DATA/$name/log" 2>&1) &
  PIDS+=($!)
}
ready() {
  local url=$1
  for _ in $(seq 1 240); do curl -sf "$url/readyz" >/dev/null && return 0; sleep 1; done
  echo "$url did not become ready; see the logs under $DATA" >&2; return 1
}

# The first API node migrates the database and seeds the demo tenant; the others start once it is ready.
node api-1 web,api 5081 --Loom:Seed:Demo=true "--Loom:Seed:ApiKeyFile=$DATA/demo-api-key"
ready http://127.0.0.1:5081
node api-2 web,api 5082
node inf-1 inference 5091 --Cluster:NodeId=inf-1 --Cluster:InternalUrl=http://127.0.0.1:7191 "--Inference:ModelDirectory=$MODEL" \
  --Inference:Models:0:Name=loom-demo-bf16 "--Inference:Models:0:Directory=$MODEL" --Inference:Models:0:WeightFormat=BF16 \
  --Inference:Models:0:PoolBytes=$((256 << 20))
node inf-2 inference 5092 --Cluster:NodeId=inf-2 --Cluster:InternalUrl=http://127.0.0.1:7192 "--Inference:ModelDirectory=$MODEL"
node jobs-1 jobs 5095
for port in 5082 5091 5092 5095; do ready "http://127.0.0.1:$port"; done
mkdir -p "$DATA/front"
(cd "$FRONT_DIR" && exec env Front__Nodes__0=http://127.0.0.1:5081 Front__Nodes__1=http://127.0.0.1:5082 \
  dotnet "$FRONT_DIR/Loom.Front.dll" --urls "http://127.0.0.1:$FRONT_PORT" > "$DATA/front/log" 2>&1) &
PIDS+=($!)
for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$FRONT_PORT/front/healthz" >/dev/null && break; sleep 1; done
curl -sf "http://127.0.0.1:$FRONT_PORT/readyz" >/dev/null || { echo "the front did not answer; see $DATA/front/log" >&2; exit 1; }

echo "==> Loom cluster on loopback: http://127.0.0.1:$FRONT_PORT   (the front; API and portal)"
echo "    API + portal: http://127.0.0.1:5081 and http://127.0.0.1:5082 behind it (sign-ins and rate limits hold across both)"
echo "    inference:    inf-1 (gRPC 127.0.0.1:7191) serving loom-demo and loom-demo-bf16, inf-2 (gRPC 127.0.0.1:7192) serving loom-demo"
echo "    jobs:         http://127.0.0.1:5095      logs: $DATA/<node>/log"
echo "    try:          curl -H \"Authorization: Bearer \$(cat $DATA/demo-api-key)\" http://127.0.0.1:$FRONT_PORT/v1/models"
echo "    demo API key file: $DATA/demo-api-key   admin login: $DATA/demo-admin (written on first start)"
echo "    Ctrl-C stops every node."
wait -n "${PIDS[@]}"
echo "a node stopped; stopping the others" >&2
exit 1
