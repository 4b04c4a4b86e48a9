#!/usr/bin/env bash
# Takes the portal's screenshots (docs/screenshots/*.png, shown in the README): runs the E2E suite's ScreenshotTour,
# which starts Loom on a fresh database with demo data, fills every page and saves one picture per page.
# Uses the PostgreSQL in LOOM_TEST_PG when set; otherwise, as root, starts a throwaway one like deploy/local/test.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${LOOM_SCREENSHOTS:-$ROOT/docs/screenshots}

if [ -z "${LOOM_TEST_PG:-}" ]; then
  [ "$(id -u)" = 0 ] || { echo "set LOOM_TEST_PG, or run as root to start a throwaway PostgreSQL" >&2; exit 1; }
  # shellcheck source=deploy/local/pg.sh
  . "$ROOT/deploy/local/pg.sh"
  pg_install
  PG_DIR=$(mktemp -d /tmp/loom-shots-pg.XXXXXX)
  chmod 755 "$PG_DIR"
  PG_PORT=${LOOM_SHOTS_PG_PORT:-55541}
  trap 'pg_stop "$PG_DIR/data" || true; rm -rf "$PG_DIR"' EXIT
  pg_start "$PG_DIR/data" "$PG_PORT" -c fsync=off -c synchronous_commit=off
  pg_ensure_role "$PG_DIR/data" "$PG_PORT" loom_test loom_test CREATEDB
  export LOOM_TEST_PG="Host=127.0.0.1;Port=$PG_PORT;Username=loom_test;Password=loom_test;Database=postgres"
fi

mkdir -p "$OUT"
dotnet build "$ROOT/tests/Web.E2E" -c Debug --nologo -v quiet -clp:ErrorsOnly
LOOM_SCREENSHOTS=$OUT dotnet test "$ROOT/tests/Web.E2E" -c Debug --no-build --nologo --filter "FullyQualifiedName~ScreenshotTour"
echo "screenshots in $OUT:"
ls "$OUT"
