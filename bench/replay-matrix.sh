#!/usr/bin/env bash
# The routing figures of the conversation trace: `switchyard bench replay` of the whole Mooncake
# conversation trace against 8 mocker workers for every router mode (round-robin, random, kv with
# KV events, kv approximate) at each cache size, one run after another, then one table.
#
#   bench/replay-matrix.sh [extra `bench replay` flags...]
#
# Environment (defaults in brackets):
#   SWITCHYARD_BIN [target/release/switchyard]   build it with `cargo build --release`
#   TRACE [data/mooncake/conversation_trace.jsonl]  MAX_REQUESTS [all]
#   SPEEDUP [4]      engines' simulated clock runs this much faster than the trace's
#   LOAD_SCALE [4]   request rate x this on top of SPEEDUP (4: near the engines' saturation)
#   CACHES ["16384 262144"]  KV blocks per worker, blocks of BLOCK_SIZE [64] tokens
#   MODES ["round-robin random kv kv-approx"]
#   OUT [bench-results/replay-<date>]  one JSON report per run is kept there
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=${SWITCHYARD_BIN:-target/release/switchyard}
trace=${TRACE:-data/mooncake/conversation_trace.jsonl}
speedup=${SPEEDUP:-4}
load_scale=${LOAD_SCALE:-4}
block_size=${BLOCK_SIZE:-64}
out=${OUT:-bench-results/replay-$(date +%Y%m%d-%H%M%S)}
[[ -x $bin ]] || { echo "replay-matrix: $bin missing: cargo build --release" >&2; exit 1; }
mkdir -p "$out"
limit=()
[[ -n ${MAX_REQUESTS:-} ]] && limit=(--max-requests "$MAX_REQUESTS")

for cache in ${CACHES:-16384 262144}; do
  for mode in ${MODES:-round-robin random kv kv-approx}; do
    flags=(--router-mode "${mode%-approx}")
    [[ $mode == *-approx ]] && flags+=(--no-kv-events)
    echo "== cache $cache, $mode" >&2
    "$bin" bench replay --trace "$trace" --workers 8 "${flags[@]}" --block-size "$block_size" \
      --num-gpu-blocks "$cache" --speedup "$speedup" --load-scale "$load_scale" \
      "${limit[@]}" --json "$@" >"$out/$cache-$mode.json"
  done
done

python3 - "$out" <<'PY'
import json, pathlib, sys
rows = []
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    r = json.loads(f.read_text())
    cache, mode = f.stem.split("-", 1)
    t = r["trace_time"]
    rows.append((int(cache), mode, r))
order = {"round-robin": 0, "random": 1, "kv": 2, "kv-approx": 3}
rows.sort(key=lambda x: (x[0], order.get(x[1], 9)))
print(f"speedup {rows[0][2]['speedup']}, load scale {rows[0][2]['load_scale']}; latencies in trace time (ms)")
print(f"{'cache':>7} {'mode':>11} {'reqs':>6} {'err':>4} {'hit':>6} {'TTFT p50':>9} {'p90':>8} {'p99':>8} "
      f"{'ITL p50':>8} {'p99':>6} {'e2e p50':>8} {'machine':>8} {'bound':>8} {'share min-max':>14}")
for cache, mode, r in rows:
    t = r["trace_time"]
    share = r["worker_share"] or [0]
    busy = r["cpu"]["machine_busy_percent"]
    f = lambda v: "-" if v is None else f"{v:.0f}"
    print(f"{cache:>7} {mode:>11} {r['requests']:>6} {r['errors']:>4} {r['cache_hit_rate'] or 0:>6.3f} "
          f"{f(t['ttft_ms']['p50']):>9} {f(t['ttft_ms']['p90']):>8} {f(t['ttft_ms']['p99']):>8} "
          f"{f(t['itl_ms']['p50']):>8} {f(t['itl_ms']['p99']):>6} {f(t['e2e_ms']['p50']):>8} "
          f"{f(busy):>7}% {('cpu' if r['machine_bound'] else 'engines'):>8} "
          f"{min(share)*100:>5.1f}-{max(share)*100:.1f}%")
PY
