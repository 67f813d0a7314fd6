#!/usr/bin/env bash
# Installs what the PostgreSQL store needs on a Debian bookworm machine:
# PostgreSQL 15's server build headers and the pgvector extension, built from
# Debian trixie's *source* package (bookworm packages no pgvector). The
# system's apt sources are left untouched: trixie's source index lives in a
# private apt configuration under .cache/pgvector-apt, checked against
# Debian's signed Release file like any apt download.
#
# Idempotent: does nothing when the extension is already installed. Needs
# root (apt-get, make install into PostgreSQL's folders).
set -euo pipefail
cd "$(dirname "$0")/.."
pg_bin=/usr/lib/postgresql/15/bin
ext_dir=/usr/share/postgresql/15/extension
if [ -f "$ext_dir/vector.control" ]; then
  echo "pgvector: already installed ($(grep default_version "$ext_dir/vector.control"))"
  exit 0
fi
[ -x "$pg_bin/initdb" ] || { echo "setup-postgres: PostgreSQL 15 server binaries not found in $pg_bin" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "setup-postgres: run as root (apt-get install, make install)" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q postgresql-server-dev-15 dpkg-dev >/dev/null

work=$PWD/.cache/pgvector-apt
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
echo "deb-src http://deb.debian.org/debian trixie main" >"$work/sources.list"
apt_private=(-o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::lists=$work/lists" -o "Dir::Cache=$work/cache")
apt-get "${apt_private[@]}" update -q >/dev/null
(cd "$work/src" && rm -rf pgvector-* && apt-get "${apt_private[@]}" source -q pgvector >/dev/null)
src=$(find "$work/src" -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)
[ -n "$src" ] || { echo "setup-postgres: apt-get source pgvector gave no source tree" >&2; exit 1; }
make -s -C "$src" -j2 PG_CONFIG=$pg_bin/pg_config >/dev/null
make -s -C "$src" install PG_CONFIG=$pg_bin/pg_config >/dev/null
echo "pgvector: installed $(grep default_version "$ext_dir/vector.control")"
