#!/usr/bin/env bash
# Quick start: fetch the default model's tokenizer, build, and run the server.
#
#   ./scripts/quickstart.sh                      # OpenAI API on http://0.0.0.0:8000
#   ./scripts/quickstart.sh --engine echo --http-port 8080
#
# Arguments go to `switchyard serve` (see `target/release/switchyard serve --help`).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

scripts/install-system-packages.sh
scripts/fetch-test-models.sh qwen3
cargo build --release -p switchyard
exec target/release/switchyard serve "$@"
