#!/usr/bin/env bash
# Quality, in one command:
# 1. retrieval of `pareil similar` on ../shared/eval/queries.jsonl (French,
#    English and German queries against the French seeds): recall@1,
#    recall@5 and MRR@10, over a fresh store of seeds/;
# 2. duplicate detection on ../shared/eval/debian-dev (real descriptions
#    with human translations): translations found per kind of text and
#    language pair, precision of semantic findings, headings of different
#    packages joined (scripts/eval_dups.py says how pairs are labelled).
# `scripts/eval.sh queries.jsonl` runs the first part only.
set -euo pipefail
cd "$(dirname "$0")/.."
queries=${1:-../shared/eval/queries.jsonl}
dev=../shared/eval/debian-dev
cargo build --release --locked --quiet
pareil=./target/release/pareil
$pareil --quiet model fetch >/dev/null
db=$(mktemp -d)/eval.db
$pareil --quiet --db "$db" ingest seeds >/dev/null
python3 - "$queries" "$db" "$pareil" <<'PY'
import json, subprocess, sys
queries, db, pareil = sys.argv[1:4]
r1 = r5 = mrr = 0.0
rows = [json.loads(l) for l in open(queries) if l.strip()]
for q in rows:
    out = subprocess.run([pareil, "--db", db, "similar", "--json", "--no-collapse", "-k", "10", q["query"]],
                         check=True, capture_output=True, text=True).stdout
    hits = json.loads(out)["results"]
    def relevant(h):
        name = h["path"].rsplit("/", 1)[-1]
        for ref in q["relevant"]:
            prefix, lines = ref.split(":")
            lo, _, hi = lines.partition("-")
            lo, hi = int(lo), int(hi or lo)
            if name.startswith(prefix) and h["line_start"] <= hi and lo <= h["line_end"]:
                return True
        return False
    ranks = [i + 1 for i, h in enumerate(hits) if relevant(h)]
    first = ranks[0] if ranks else None
    r1 += first == 1
    r5 += first is not None and first <= 5
    mrr += 1 / first if first else 0
    print(f"{q['id']} [{q['lang']}] first relevant at rank {first}  {q['query']}")
n = len(rows)
print(f"\nqueries {n}  recall@1 {r1/n:.3f}  recall@5 {r5/n:.3f}  MRR@10 {mrr/n:.3f}")
PY

[ $# -gt 0 ] || [ ! -d "$dev" ] && exit 0
echo
devdb=$(dirname "$db")/debian-dev.db
$pareil --quiet --db "$devdb" ingest "$dev/corpus" >/dev/null
$pareil --db "$devdb" dups --json >"$devdb.dups.json"
python3 scripts/eval_dups.py "$devdb" "$devdb.dups.json" "$dev"
