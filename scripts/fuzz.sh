#!/usr/bin/env bash
# Runs the libFuzzer targets in fuzz/ (see fuzz/README.md), one after another.
#
#   scripts/fuzz.sh                     # every target, 60 s each
#   scripts/fuzz.sh postprocess 300     # one target, 300 s
#   scripts/fuzz.sh all 300             # every target, 300 s each
#
# Installs cargo-fuzz if missing and fetches the test models. Works on a stable toolchain
# (RUSTC_BOOTSTRAP=1 unlocks the -Z flags cargo-fuzz passes). Each run starts from the committed
# seeds (fuzz/seeds/<target>, read only) plus what earlier runs found (fuzz/corpus/<target>,
# git-ignored); crashes land in fuzz/artifacts/<target>/.
# Environment: FUZZ_SANITIZER (default none: these are panic hunts in safe Rust; `address` also
# checks the dependencies' unsafe code, slower). One process per target: the machine is shared.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

TARGETS=(openai_request chat_template postprocess sse_client kserve_request tool_parsers kv_events structured)
target="${1:-all}"
seconds="${2:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"

die() { echo "fuzz.sh: $*" >&2; exit 1; }

[[ "$seconds" =~ ^[0-9]+$ ]] || die "seconds must be a whole number, got '$seconds'"
if [[ "$target" == all ]]; then
  selected=("${TARGETS[@]}")
else
  [[ " ${TARGETS[*]} " == *" $target "* ]] || die "unknown target '$target' (one of: ${TARGETS[*]}, all)"
  selected=("$target")
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz"
  cargo install cargo-fuzz
fi
scripts/fetch-test-models.sh qwen3 gemma3

cd fuzz
for t in "${selected[@]}"; do
  mkdir -p "corpus/$t"
  echo "==> $t for ${seconds}s (sanitizer: $sanitizer)"
  # -a: debug assertions, so integer overflow panics as it does in tests.
  RUSTC_BOOTSTRAP=1 cargo fuzz run -s "$sanitizer" -a "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=5 -print_final_stats=1
done
