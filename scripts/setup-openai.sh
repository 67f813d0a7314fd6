#!/usr/bin/env bash
# Create (or check) the small Python environment with the official `openai`
# client, used by the test that points it at `pareil serve`'s
# OpenAI-compatible `/v1/embeddings` (tests/server.rs). Idempotent: with the
# same pin, a second run only checks the stamp. About 20 s and 70 MB.
#
#   scripts/setup-openai.sh                       # venv in .cache/venv-openai (gitignored)
#   PAREIL_OPENAI_VENV=/path scripts/setup-openai.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PAREIL_OPENAI_VENV:-$REPO/.cache/venv-openai}"
PY="${PYTHON:-python3}"
PIN="openai==3.51.0"
STAMP="$VENV/.pareil-openai-stamp"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PIN" ] && "$VENV/bin/python" -c "import openai" 2>/dev/null; then
  exit 0
fi
echo "setup-openai: installing $PIN into $VENV" >&2
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$PIN"
"$VENV/bin/python" -c "import openai; print('setup-openai: openai', openai.__version__)" >&2
echo "$PIN" > "$STAMP"
