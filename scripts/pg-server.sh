#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server on 127.0.0.1 for tests and benchmarks.
#
#   scripts/pg-server.sh start DIR [PORT]   initdb DIR (once), start, print the URL
#   scripts/pg-server.sh replica DIR PORT PRIMARY_PORT
#                                           a streaming replica of the server on
#                                           PRIMARY_PORT (pg_basebackup -R), started
#   scripts/pg-server.sh stop DIR           stop the server started in DIR, by pid
#
# The server refuses to run as root, so under root the data folder belongs to
# the `postgres` user and the server runs as that user. Trust authentication
# on loopback only; the database `pareil` has the vector extension created.
set -euo pipefail
pg_bin=/usr/lib/postgresql/15/bin
cmd=${1:?usage: pg-server.sh start|stop DIR [PORT]}
dir=$(realpath -m "${2:?usage: pg-server.sh start|stop DIR [PORT]}")
port=${3:-54329}
as_owner=()
if [ "$(id -u)" = 0 ]; then as_owner=(runuser -u postgres --); fi

case "$cmd" in
start)
  [ -x "$pg_bin/initdb" ] || { echo "pg-server: PostgreSQL 15 not found in $pg_bin" >&2; exit 1; }
  if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    "${as_owner[@]}" "$pg_bin/initdb" -D "$dir" -A trust -U postgres -E UTF8 --no-locale >/dev/null
  fi
  "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$dir" -w -l "$dir/server.log" \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=''" start >/dev/null
  "$pg_bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'pareil'" | grep -q 1 ||
    "$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres pareil
  "$pg_bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d pareil -c "CREATE EXTENSION IF NOT EXISTS vector" >/dev/null
  echo "postgres://postgres@127.0.0.1:$port/pareil"
  ;;
replica)
  primary=${4:?usage: pg-server.sh replica DIR PORT PRIMARY_PORT}
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  chmod 700 "$dir"
  "${as_owner[@]}" "$pg_bin/pg_basebackup" -h 127.0.0.1 -p "$primary" -U postgres -D "$dir" -R -X stream
  "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$dir" -w -l "$dir/server.log" \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=''" start >/dev/null
  echo "postgres://postgres@127.0.0.1:$port"
  ;;
stop)
  pid=$(head -n 1 "$dir/postmaster.pid" 2>/dev/null || true)
  [ -n "$pid" ] || { echo "pg-server: no server running in $dir" >&2; exit 0; }
  kill -INT "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
  echo "pg-server: server $pid did not stop" >&2
  exit 1
  ;;
*) echo "usage: pg-server.sh start|replica|stop DIR [PORT [PRIMARY_PORT]]" >&2; exit 2 ;;
esac
