# Sourced by the benchmarks' run scripts (ROOT set to the repository root): a throwaway PostgreSQL and one published
# Loom process (Release) on loopback, its blobs and checkpoints in a work folder; all stopped and removed when the
# script exits.
#   bench_host_start NAME PG_PORT URL [SETTING=VALUE ...] [-- LOOM ARGUMENTS ...]
# leaves BENCH_URL, BENCH_DB (the connection string), BENCH_KEY_FILE (the seeded demo key) and BENCH_WORK set;
# bench_host_log prints the end of Loom's log.
# shellcheck source=deploy/local/pg.sh
. "$ROOT/deploy/local/pg.sh"

BENCH_PID=""

bench_host_stop() {
  if [ -n "$BENCH_PID" ]; then kill "$BENCH_PID" 2>/dev/null || true; wait "$BENCH_PID" 2>/dev/null || true; fi
  if [ -n "${BENCH_WORK:-}" ]; then pg_stop "$BENCH_WORK/pg" || true; rm -rf "$BENCH_WORK"; fi
}

bench_host_log() { tail -n "${1:-30}" "$BENCH_WORK/loom.log"; }

bench_host_start() {
  local name=$1 port=$2 url=$3; shift 3
  BENCH_WORK=$(mktemp -d "/tmp/loom-bench-$name.XXXXXX"); chmod 755 "$BENCH_WORK"
  BENCH_DB="Host=127.0.0.1;Port=$port;Database=bench;Username=bench;Password=bench"
  BENCH_URL=$url
  BENCH_KEY_FILE="$BENCH_WORK/key"
  trap bench_host_stop EXIT
  pg_install
  pg_start "$BENCH_WORK/pg" "$port" -c fsync=off
  pg_ensure_role "$BENCH_WORK/pg" "$port" bench bench CREATEDB
  pg_psql "$BENCH_WORK/pg" "$port" -c "CREATE DATABASE bench OWNER bench"
  dotnet publish "$ROOT/src/Web/Web.csproj" -c Release -o "$BENCH_WORK/app" --nologo -v quiet >/dev/null
  local settings=("ConnectionStrings__Loom=$BENCH_DB" Loom__Seed__Demo=true "Loom__Seed__ApiKeyFile=$BENCH_KEY_FILE"
    "Loom__Blobs__Root=$BENCH_WORK/blobs" "FineTuning__CheckpointDirectory=$BENCH_WORK/checkpoints")
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do settings+=("$1"); shift; done
  if [ "${1:-}" = "--" ]; then shift; fi
  env "${settings[@]}" dotnet "$BENCH_WORK/app/Loom.Web.dll" --urls "$url" "$@" > "$BENCH_WORK/loom.log" 2>&1 &
  BENCH_PID=$!
  for _ in $(seq 1 "${BENCH_START_LIMIT:-180}"); do
    curl -sf "$url/readyz" >/dev/null && [ -s "$BENCH_KEY_FILE" ] && return 0
    sleep 1
  done
  echo "Loom did not start:"; bench_host_log 20; return 1
}
