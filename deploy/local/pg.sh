# Shared PostgreSQL helpers for run.sh and test.sh (sourced, not executed).
# Debian's PostgreSQL 15 on loopback, in a data folder of the caller's choosing.

PG_BIN=/usr/lib/postgresql/15/bin

pg_install() {
  if [ ! -x "$PG_BIN/pg_ctl" ]; then
    echo "==> installing PostgreSQL 15 from Debian"
    apt_install postgresql
  fi
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then apt-get update -q >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}

# pg_start DATA_DIR PORT [extra server options]
pg_start() {
  local dir=$1 port=$2; shift 2
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  chmod 700 "$dir"
  # The postgres user needs the search bit on every parent folder.
  local p; p=$(dirname "$dir")
  while [ "$p" != "/" ]; do chmod o+x "$p" 2>/dev/null || true; p=$(dirname "$p"); done
  if [ ! -f "$dir/PG_VERSION" ]; then
    runuser -u postgres -- "$PG_BIN/initdb" -D "$dir" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  # A killed server leaves postmaster.pid behind. pg_ctl start copes with a stale file, but takes a
  # killed postmaster that nobody has reaped yet (a zombie, empty cmdline) for a live one.
  if runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    if "$PG_BIN/pg_isready" -h "$dir" -p "$port" -q -t 10; then
      echo "==> PostgreSQL already running in $dir"
      return 0
    fi
    local pid; pid=$(head -n 1 "$dir/postmaster.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && ! grep -qs . "/proc/$pid/cmdline"; then
      echo "==> removing the stale lock files of a killed server"
      rm -f "$dir/postmaster.pid" "$dir/.s.PGSQL.$port.lock"
    fi
  fi
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir $*" start >/dev/null \
    || { echo "PostgreSQL failed to start; last lines of $dir/server.log:" >&2; tail -n 20 "$dir/server.log" >&2; return 1; }
}

pg_stop() {
  local dir=$1
  if runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null && echo "==> PostgreSQL stopped"
  fi
}

# pg_psql DATA_DIR PORT SQL... (as the postgres superuser over the private socket)
pg_psql() {
  local dir=$1 port=$2; shift 2
  runuser -u postgres -- "$PG_BIN/psql" -h "$dir" -p "$port" -U postgres -v ON_ERROR_STOP=1 -qtA "$@"
}

# pg_ensure_role DATA_DIR PORT ROLE PASSWORD [CREATEDB]
pg_ensure_role() {
  local dir=$1 port=$2 role=$3 password=$4 extra=${5:-}
  if [ "$(pg_psql "$dir" "$port" -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != "1" ]; then
    pg_psql "$dir" "$port" -c "CREATE ROLE \"$role\" LOGIN $extra PASSWORD '$password'"
  else
    pg_psql "$dir" "$port" -c "ALTER ROLE \"$role\" LOGIN $extra PASSWORD '$password'"
  fi
}
