#!/usr/bin/env bash
# What the network planes cost: the same load against `switchyard serve` (2 in-process echo
# workers) and against `switchyard frontend` + 2 `switchyard worker` processes (etcd discovery,
# NATS events, gRPC request plane), one after the other on this machine.
#
#   bench/distributed-vs-serve.sh
#
# Needs etcd and nats-server on PATH (Debian: etcd-server, nats-server) and a release build
# (cargo build --release -p switchyard). Each setup is driven by `switchyard bench load` at
# CONCURRENCY [1,16,64] for DURATION [10] seconds per phase, streaming completions of about
# PROMPT_TOKENS [100] prompt tokens and MAX_TOKENS [32] output tokens from the echo engine with
# no delay, so the frontend and the planes are the whole cost. Prints both reports.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SWITCHYARD_BIN:-$REPO/target/release/switchyard}
MODEL=${MODEL_PATH:-$REPO/models/qwen3}
CONCURRENCY=${CONCURRENCY:-1,16,64}
DURATION=${DURATION:-10}
PROMPT_TOKENS=${PROMPT_TOKENS:-100}
MAX_TOKENS=${MAX_TOKENS:-32}
[[ -x $BIN ]] || { echo "build first: cargo build --release -p switchyard" >&2; exit 2; }
[[ -f $MODEL/tokenizer.json ]] || { echo "no model at $MODEL: run scripts/fetch-test-models.sh" >&2; exit 2; }
command -v etcd >/dev/null && command -v nats-server >/dev/null \
    || { echo "needs etcd and nats-server (apt-get install etcd-server nats-server)" >&2; exit 2; }

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_health() {
    for _ in $(seq 1 300); do
        curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server on :$1 never became healthy" >&2; exit 1
}
load() {
    "$BIN" bench load --url "http://127.0.0.1:$1" --concurrency "$CONCURRENCY" \
        --duration "$DURATION" --prompt-tokens "$PROMPT_TOKENS" --max-tokens "$MAX_TOKENS"
}

echo "== serve: frontend + 2 in-process echo workers"
P=$(port)
"$BIN" serve --http-host 127.0.0.1 --http-port "$P" --engine echo --workers 2 \
    --model-path "$MODEL" --model-name echo >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
wait_health "$P"
load "$P"
kill -TERM "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true

echo "== frontend + 2 worker processes (etcd, NATS, gRPC)"
EP=$(port); PEER=$(port); NP=$(port); P=$(port)
etcd --name bench --data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$EP" \
    --advertise-client-urls "http://127.0.0.1:$EP" --listen-peer-urls "http://127.0.0.1:$PEER" \
    --initial-advertise-peer-urls "http://127.0.0.1:$PEER" \
    --initial-cluster "bench=http://127.0.0.1:$PEER" --log-level error >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
nats-server -a 127.0.0.1 -p "$NP" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
sleep 1
CLUSTER=(--discovery "etcd://127.0.0.1:$EP" --event-plane "nats://127.0.0.1:$NP")
for i in 1 2; do
    "$BIN" worker --engine echo --model-path "$MODEL" --model-name echo "${CLUSTER[@]}" \
        >"$WORK/worker$i.log" 2>&1 &
    PIDS+=($!)
done
"$BIN" frontend --http-host 127.0.0.1 --http-port "$P" "${CLUSTER[@]}" >"$WORK/frontend.log" 2>&1 &
PIDS+=($!)
wait_health "$P"
for _ in $(seq 1 100); do
    [[ $(curl -s "http://127.0.0.1:$P/metrics" | awk '/^switchyard_model_workers/ {print $2}') == 2 ]] && break
    sleep 0.1
done
load "$P"
