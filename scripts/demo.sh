#!/usr/bin/env bash
# One command from a fresh clone: build pareil in release mode, install the
# model (offline-capable), and run the main job on seeds/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PAREIL_DB="${PAREIL_DB:-pareil.db}"
cargo build --release --locked
pareil=./target/release/pareil
$pareil model fetch
$pareil model info
echo
echo "== embedding the seed paragraphs"
find seeds -name '*.txt' | sort | xargs cat | awk 'NF' | sed 's/^ *date [0-9-]* //' > target/seed-lines.txt
start=$(date +%s.%N)
$pareil embed < target/seed-lines.txt > target/seed-embeddings.jsonl
end=$(date +%s.%N)
python3 - "$start" "$end" <<'PY' 2>/dev/null || wc -l target/seed-embeddings.jsonl
import json, sys
rows = [json.loads(l) for l in open("target/seed-embeddings.jsonl")]
secs = float(sys.argv[2]) - float(sys.argv[1])
toks = sum(r["tokens"] for r in rows)
print(f"{len(rows)} passages, {toks} tokens, dim {len(rows[0]['embedding'])}, {secs:.1f} s including model load")
PY
