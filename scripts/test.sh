#!/usr/bin/env bash
# The project's one test command (CI runs it through .ci/run):
#   system packages -> Python venv -> test models -> cargo fmt --check -> clippy -D warnings
#   -> Rust tests -> Python end-to-end suite (official openai client) against the binary the
#   Rust tests built (dev profile; dependencies are optimized, see Cargo.toml), so the run
#   compiles the workspace once rather than twice.
#
#   ./scripts/test.sh                # everything
#   ./scripts/test.sh --python-only  # skip fmt/clippy/Rust tests (still builds the binary)
#
# Idempotent: re-running only re-does what changed. Extra arguments after `--` go to pytest.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

python_only=0
pytest_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --python-only) python_only=1 ;;
    --) shift; pytest_args=("$@"); break ;;
    -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

current_stage=""
run_start=$SECONDS
on_exit() {
  local rc=$?
  if [[ $rc -ne 0 && -n "$current_stage" ]]; then
    echo >&2
    echo "test.sh: FAILED in stage '$current_stage' (exit code $rc) after $((SECONDS - run_start))s" >&2
  fi
}
trap on_exit EXIT

stage_times=()
stage() {
  local name="$1"
  shift
  current_stage="$name"
  echo
  echo "==> $name"
  local start=$SECONDS
  "$@"
  local took=$((SECONDS - start))
  stage_times+=("$(printf '%-28s %5ds' "$name" "$took")")
  echo "<== $name: ${took}s"
  current_stage=""
}

die() { echo "test.sh: $*" >&2; exit 1; }

check_rust_tools() {
  command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup)"
  cargo fmt --version >/dev/null 2>&1 || die "rustfmt missing: rustup component add rustfmt"
  cargo clippy --version >/dev/null 2>&1 || die "clippy missing: rustup component add clippy"
  cargo --version
}

pick_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [[ -n "$candidate" ]] || continue
    if command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)'; then
      echo "$candidate"
      return
    fi
  done
  die "Python >= 3.9 not found (set PYTHON=/path/to/python3)"
}

setup_venv() {
  local requirements="tests/python/requirements.txt" stamp=".venv/.requirements.sha256"
  # Packages installed without their dependencies (sglang: only its KV event publisher is used).
  local nodeps="tests/python/requirements-nodeps.txt"
  local want
  want="$(cat "$requirements" "$nodeps" | sha256sum | cut -d' ' -f1)"
  if [[ -x .venv/bin/python && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
    && .venv/bin/python -c 'import openai, pytest, httpx, pytest_timeout, tritonclient.grpc, msgspec, zmq, schemathesis, jsonschema_rs' 2>/dev/null; then
    echo ".venv up to date"
    return
  fi
  if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import sys' 2>/dev/null; then
    local py
    py="$(pick_python)"
    if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
      [[ $(id -u) -eq 0 ]] || die "$py cannot create a venv: apt-get install python3-venv"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
    fi
    rm -rf .venv
    "$py" -m venv .venv
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$requirements"
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r "$nodeps"
  echo "$want" >"$stamp"
  .venv/bin/python -c 'import openai, httpx, pytest; print("openai", openai.__version__, "httpx", httpx.__version__, "pytest", pytest.__version__)'
}

rust_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast --no-tests=warn
    # nextest does not run doctests.
    cargo test --workspace --doc
  else
    cargo test --workspace --no-fail-fast
  fi
}

python_tests() {
  # pytest exits 5 when it collected nothing: treat that as a failure too (a suite that
  # silently vanished is not a pass).
  SWITCHYARD_BIN="${CARGO_TARGET_DIR:-$repo_root/target}/debug/switchyard" .venv/bin/pytest tests/python -q "${pytest_args[@]}"
}

stage "system packages" scripts/install-system-packages.sh
stage "python venv" setup_venv
stage "test models" scripts/fetch-test-models.sh
stage "rust toolchain" check_rust_tools
if [[ $python_only -eq 0 ]]; then
  stage "cargo fmt --check" cargo fmt --all -- --check
  stage "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
  stage "rust tests" rust_tests
else
  # The Rust tests build the binary (the CLI's integration tests run it); only build it here
  # when they were skipped. (A separate `cargo build -p switchyard` resolves features for that
  # package alone and would rebuild much of the dependency tree.)
  stage "binary" cargo build -p switchyard
fi
stage "python e2e tests" python_tests

echo
echo "test.sh: all stages passed in $((SECONDS - run_start))s"
printf '  %s\n' "${stage_times[@]}"
