#!/usr/bin/env bash
# Frontend throughput side by side: NVIDIA Dynamo 1.6.1 (frontend + mocker) against
# `switchyard serve --engine mocker`, both at --speedup-ratio 0 so the frontend is the work.
#
#   bench/compare-dynamo.sh <Qwen3 tokenizer folder>
#
# The systems run one at a time, alternating (dynamo, switchyard, dynamo, switchyard, ...), each
# driven by `wrk -t2 -cN -d10s` with bench/wrk/chat_stream.lua (streamed chat, unique ~100-word
# prompts, max_tokens 32, ignore_eos). For every run it prints req/s, latency percentiles and the
# CPU each process used (server processes and wrk, in % of one core), so the bottleneck is visible,
# and the server's CPU milliseconds per request (on a shared machine the figure least disturbed
# by other load); at the end the means per system and the ratios switchyard / dynamo.
#
# Environment (defaults in brackets):
#   DYN_VENV [/tmp/dyn]            venv with ai-dynamo 1.6.1, made with:
#       python3 -m venv /tmp/dyn && /tmp/dyn/bin/pip install "ai-dynamo-runtime==1.6.1" \
#         "aiohttp<4.0,>=3.14.3" "certifi>=2026.10.19" "kubernetes<33.0.0,>=32.0.1" \
#         "msgspec>=0.19.0" "prometheus-client<1.0,>=0.23.1" "pyzmq>=26.0.0" \
#         "redis<9.0.0,>=6.2.0" tqdm "transformers>=4.56.0" "typing-extensions>=4.10.0" \
#         "zstandard<1.0,>=0.23.0"
#       /tmp/dyn/bin/pip install --no-deps "ai-dynamo==1.6.1"   # one of its deps is unfetchable
#   SWITCHYARD_BIN [target/release/switchyard]
#   SYSTEMS ["dynamo switchyard"]  which systems to run, in this order each round
#   ROUNDS [2]  CONNECTIONS ["256 64"]  DURATION [10s]  WRK_THREADS [2]
#   MODEL_NAME [Qwen/Qwen3-0.6B]  DYN_PORT [18600]  SY_PORT [18700]
#   ZMQ_XSUB_PORT [5555]  ZMQ_XPUB_PORT [5556]
#   LOADGEN [unset]  a `bench load` command (e.g. "target/release/switchyard bench load" or
#                    "target/release/examples/load"); when set, each system is also driven by it
#                    at LOADGEN_CONCURRENCY [64] right after wrk, to compare generator speed.
#   KEEP_WORK [unset]  keep the temp folder (logs, model copy, results.tsv)
#   RESULTS_OUT [unset]  copy results.tsv (one row per run) to this path
set -euo pipefail

if [[ $# -ne 1 || ! -f "$1/tokenizer.json" ]]; then
    echo "usage: $0 <folder with tokenizer.json and tokenizer_config.json (Qwen3)>" >&2
    exit 2
fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
MODEL_SRC=$(cd "$1" && pwd)
DYN_VENV=${DYN_VENV:-/tmp/dyn}
SWITCHYARD_BIN=${SWITCHYARD_BIN:-$REPO/target/release/switchyard}
SYSTEMS=${SYSTEMS:-"dynamo switchyard"}
ROUNDS=${ROUNDS:-2}
CONNECTIONS=${CONNECTIONS:-"256 64"}
DURATION=${DURATION:-10s}
WRK_THREADS=${WRK_THREADS:-2}
MODEL_NAME=${MODEL_NAME:-Qwen/Qwen3-0.6B}
DYN_PORT=${DYN_PORT:-18600}
SY_PORT=${SY_PORT:-18700}
ZMQ_XSUB_PORT=${ZMQ_XSUB_PORT:-5555}
ZMQ_XPUB_PORT=${ZMQ_XPUB_PORT:-5556}
LOADGEN=${LOADGEN:-}
LOADGEN_CONCURRENCY=${LOADGEN_CONCURRENCY:-64}
WRK_SCRIPT=$REPO/bench/wrk/chat_stream.lua
CLK_TCK=$(getconf CLK_TCK)

die() { echo "error: $*" >&2; exit 1; }
command -v wrk >/dev/null || die "wrk not found (apt-get install -y wrk)"
command -v curl >/dev/null || die "curl not found"
for system in $SYSTEMS; do
    case $system in
        dynamo) [[ -x $DYN_VENV/bin/python ]] || die "no Dynamo venv at $DYN_VENV (DYN_VENV)" ;;
        switchyard) [[ -x $SWITCHYARD_BIN ]] || die "no switchyard binary at $SWITCHYARD_BIN (SWITCHYARD_BIN)" ;;
        *) die "unknown system '$system' in SYSTEMS" ;;
    esac
done

WORK=$(mktemp -d /tmp/compare-dynamo.XXXXXX)
SERVER_PIDS=()
FORWARDER_PID=

stop_servers() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${SERVER_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SERVER_PIDS=()
}

cleanup() {
    stop_servers
    if [[ -n $FORWARDER_PID ]]; then
        kill -TERM "$FORWARDER_PID" 2>/dev/null || true
        wait "$FORWARDER_PID" 2>/dev/null || true
    fi
    if [[ -n ${KEEP_WORK:-} ]]; then
        echo "work folder kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The mocker only registers a model whose folder has config.json with `architectures`; a
# tokenizer-only folder gets a minimal Qwen3-0.6B config in a temp copy.
MODEL_DIR=$WORK/model
mkdir -p "$MODEL_DIR"
cp -r "$MODEL_SRC"/. "$MODEL_DIR"/
if ! grep -qs '"architectures"' "$MODEL_DIR/config.json"; then
    cat >"$MODEL_DIR/config.json" <<'JSON'
{
  "architectures": ["Qwen3ForCausalLM"],
  "model_type": "qwen3",
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "vocab_size": 151936,
  "hidden_size": 1024,
  "intermediate_size": 3072,
  "num_hidden_layers": 28,
  "num_attention_heads": 16,
  "num_key_value_heads": 8,
  "head_dim": 128,
  "max_position_embeddings": 40960,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16"
}
JSON
fi

# Sum of utime+stime ticks of a process and its direct children.
cpu_ticks() {
    local total=0 pid stat fields
    for pid in "$@" $(for p in "$@"; do pgrep -P "$p" || true; done); do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        read -r -a fields <<<"${stat##*) }"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

# Waits until /v1/models lists WANT_MODEL (any model when empty) and sets SERVED_MODEL.
# Busy ticks of the whole machine (all cores), to show what other processes took meanwhile.
machine_busy_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# CPU ticks of each server process (children included), space separated; for Dynamo also the
# zmq forwarder, which is part of its stack.
server_ticks() {
    local pid out=""
    for pid in "${SERVER_PIDS[@]}" ${CPU_EXTRA_PID:-}; do
        out+=" $(cpu_ticks "$pid")"
    done
    echo "${out# }"
}

# "a% b%" per server process and the total ticks, from two server_ticks lines and a wall time.
server_cpu_shares() { # before after wall_s
    awk -v b="$1" -v a="$2" -v w="$3" -v hz="$CLK_TCK" 'BEGIN {
        n = split(b, before, " "); split(a, after, " "); total = 0; out = ""
        for (i = 1; i <= n; i++) {
            d = after[i] - before[i]; total += d
            out = out (i > 1 ? " + " : "") sprintf("%.0f%%", d / hz / w * 100)
        }
        printf "%s\t%d", out, total }'
}

# VmHWM of each server process, for the log line after a system's runs.
server_peak_rss() {
    local pid out=""
    for pid in "${SERVER_PIDS[@]}" ${CPU_EXTRA_PID:-}; do
        out+=" $(awk '/^VmHWM:/ { printf "%.0fMiB", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null)"
    done
    echo "${out# }"
}

wait_for_model() { # url, pid list...
    local url=$1 listing; shift
    for _ in $(seq 600); do
        listing=$(curl -sf --max-time 2 "$url/v1/models" 2>/dev/null || true)
        if [[ -n $WANT_MODEL ]] && grep -qF "\"$WANT_MODEL\"" <<<"$listing"; then
            SERVED_MODEL=$WANT_MODEL
            return 0
        fi
        SERVED_MODEL=$(grep -o '"id" *: *"[^"]*"' <<<"$listing" | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')
        if [[ -z $WANT_MODEL && -n $SERVED_MODEL ]]; then
            return 0
        fi
        local pid
        for pid in "$@"; do
            kill -0 "$pid" 2>/dev/null || return 1
        done
        sleep 0.5
    done
    return 1
}

# One streamed request must finish with [DONE] and no error before load is worth measuring.
sanity_check() { # url
    local out
    out=$(curl -sN --max-time 30 "$1/v1/chat/completions" -H 'Content-Type: application/json' \
        -d "{\"model\":\"$SERVED_MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"0 sanity check\"}],\"max_tokens\":4,\"ignore_eos\":true,\"stream\":true}") || true
    if ! grep -q 'data: \[DONE\]' <<<"$out" || grep -q '"error"' <<<"$out"; then
        echo "sanity request failed; response was:" >&2
        echo "$out" | head -20 >&2
        return 1
    fi
}

start_forwarder() {
    # Dynamo's zmq publishers would bind 0.0.0.0; a local XSUB/XPUB forwarder keeps the event
    # plane on loopback.
    "$DYN_VENV/bin/python" -c '
import sys, zmq
ctx = zmq.Context()
xsub = ctx.socket(zmq.XSUB); xsub.bind("tcp://127.0.0.1:" + sys.argv[1])
xpub = ctx.socket(zmq.XPUB); xpub.bind("tcp://127.0.0.1:" + sys.argv[2])
zmq.proxy(xsub, xpub)
' "$ZMQ_XSUB_PORT" "$ZMQ_XPUB_PORT" >"$WORK/zmq-forwarder.log" 2>&1 &
    FORWARDER_PID=$!
    sleep 0.5
    kill -0 "$FORWARDER_PID" 2>/dev/null || die "zmq forwarder did not start: $(cat "$WORK/zmq-forwarder.log")"
}

start_dynamo() { # round
    rm -rf "$WORK/dyn-kv" && mkdir -p "$WORK/dyn-kv"
    local env=(
        DYN_DISCOVERY_BACKEND=file "DYN_FILE_KV=$WORK/dyn-kv" DYN_REQUEST_PLANE=tcp DYN_EVENT_PLANE=zmq
        "DYN_ZMQ_BROKER_URL=xsub=tcp://127.0.0.1:$ZMQ_XSUB_PORT , xpub=tcp://127.0.0.1:$ZMQ_XPUB_PORT"
        DYN_TCP_RPC_HOST=127.0.0.1 DYN_TCP_RESPONSE_STREAM_HOST=127.0.0.1 DYN_EVENT_PLANE_HOST=127.0.0.1
        DYN_SYSTEM_HOST=127.0.0.1 DYN_HTTP_HOST=127.0.0.1 HF_HUB_OFFLINE=1
    )
    env "${env[@]}" "$DYN_VENV/bin/python" -m dynamo.frontend --http-port "$DYN_PORT" \
        --router-mode round-robin >"$WORK/dynamo-frontend-$1.log" 2>&1 &
    SERVER_PIDS+=($!)
    env "${env[@]}" "$DYN_VENV/bin/python" -m dynamo.mocker --model-path "$MODEL_DIR" \
        --model-name "$MODEL_NAME" --speedup-ratio 0 >"$WORK/dynamo-mocker-$1.log" 2>&1 &
    SERVER_PIDS+=($!)
    SERVER_NAMES="frontend+mocker+forwarder"
    CPU_EXTRA_PID=$FORWARDER_PID
    WANT_MODEL=$MODEL_NAME
    URL=http://127.0.0.1:$DYN_PORT
}

start_switchyard() { # round
    local name=()
    # Serve under Dynamo's model name when the binary can; otherwise use whatever it lists.
    WANT_MODEL=
    if "$SWITCHYARD_BIN" serve --help 2>/dev/null | grep -q -- '--model-name'; then
        name=(--model-name "$MODEL_NAME")
        WANT_MODEL=$MODEL_NAME
    fi
    "$SWITCHYARD_BIN" serve --engine mocker --speedup-ratio 0 --workers 1 --model-path "$MODEL_DIR" \
        "${name[@]}" --http-host 127.0.0.1 --http-port "$SY_PORT" >"$WORK/switchyard-$1.log" 2>&1 &
    SERVER_PIDS+=($!)
    SERVER_NAMES="switchyard"
    CPU_EXTRA_PID=
    URL=http://127.0.0.1:$SY_PORT
}

to_ms() { # wrk duration like 512.34us / 12.5ms / 1.02s / 1.5m
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.1f", n }'
}

RESULTS=$WORK/results.tsv
printf 'round\tsystem\tgenerator\tconns\treq_s\tp50_ms\tp90_ms\tp99_ms\terrors\tserver_cpu\tgen_cpu\tserver_cpu_ms_per_req\n' >"$RESULTS"

run_wrk() { # round system conns
    local out=$WORK/wrk-$1-$2-$3.txt timing=$WORK/wrk-$1-$2-$3.time before after busy_before busy_after
    before=$(server_ticks)
    busy_before=$(machine_busy_ticks)
    local start_ns end_ns
    start_ns=$(date +%s%N)
    TIMEFORMAT='%U %S'
    { time wrk -t"$WRK_THREADS" -c"$3" -d"$DURATION" --timeout 30s --latency -s "$WRK_SCRIPT" \
        "$URL/v1/chat/completions" -- "$SERVED_MODEL" >"$out" 2>&1; } 2>"$timing"
    end_ns=$(date +%s%N)
    after=$(server_ticks)
    busy_after=$(machine_busy_ticks)
    local wall_s rps p50 p90 p99 errors server_cpu server_total gen_cpu other_cpu shares cpu_per_req
    wall_s=$(awk -v a="$start_ns" -v b="$end_ns" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
    p90=$(to_ms "$(awk '$1 == "90%" { print $2 }' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    errors=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$out")
    shares=$(server_cpu_shares "$before" "$after" "$wall_s")
    server_cpu=${shares%$'\t'*}
    server_total=${shares##*$'\t'}
    gen_cpu=$(awk -v w="$wall_s" '{ printf "%.0f%%", ($1 + $2) / w * 100 }' "$timing")
    other_cpu=$(awk -v w="$wall_s" -v hz="$CLK_TCK" -v busy="$((busy_after - busy_before))" \
        -v server="$server_total" '{ printf "%.0f%%", (busy / hz - server / hz - $1 - $2) / w * 100 }' "$timing")
    # Server CPU per completed request: the figure least disturbed by other load on the machine.
    cpu_per_req=$(awk -v t="$server_total" -v hz="$CLK_TCK" '/ requests in / { n = $1 }
        END { if (n > 0) printf "%.2f", t / hz * 1000 / n; else print "-" }' "$out")
    if [[ -z $rps ]]; then
        echo "wrk failed:" >&2
        cat "$out" >&2
        return 1
    fi
    printf '%s\t%s\twrk\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$rps" "$p50" "$p90" "$p99" \
        "$errors" "$server_cpu" "$gen_cpu" "$cpu_per_req" >>"$RESULTS"
    printf '  %-10s wrk  c=%-4s %8.1f req/s  p50 %7s ms  p90 %7s ms  p99 %7s ms  errors %s  cpu: %s %s (%s ms/request), wrk %s, other processes %s\n' \
        "$2" "$3" "$rps" "$p50" "$p90" "$p99" "$errors" "$SERVER_NAMES" "$server_cpu" "$cpu_per_req" "$gen_cpu" "$other_cpu"
    sleep 1
}

run_loadgen() { # round system
    local out=$WORK/loadgen-$1-$2.json before after start_ns end_ns shares
    before=$(server_ticks)
    start_ns=$(date +%s%N)
    # Same request shape as the wrk script: chat, ~111-token message, 32 tokens, ignore_eos.
    $LOADGEN --url "$URL" --endpoint chat --model "$SERVED_MODEL" --concurrency "$LOADGEN_CONCURRENCY" \
        --duration "${DURATION%s}" --prompt-tokens 111 --max-tokens 32 --json >"$out"
    end_ns=$(date +%s%N)
    after=$(server_ticks)
    shares=$(server_cpu_shares "$before" "$after" "$(awk -v a="$start_ns" -v b="$end_ns" 'BEGIN { print (b - a) / 1e9 }')")
    python3 - "$out" "$1" "$2" "${shares%$'\t'*}" "$RESULTS" <<'PY'
import json, sys
path, rnd, system, server_cpu, results = sys.argv[1:]
report = json.load(open(path))
phase = report["phases"][0]
cpu = phase["generator_cpu"]
gen_cpu = f"{cpu['percent_of_one_core']:.0f}%"
lat = phase["e2e"]
fmt = lambda v: "-" if v is None else f"{v:.1f}"
row = [rnd, system, "loadgen", phase["concurrency"], f"{phase['requests_per_s']:.1f}",
       fmt(lat["p50_ms"]), fmt(lat["p90_ms"]), fmt(lat["p99_ms"]), phase["errors"], server_cpu, gen_cpu, "-"]
open(results, "a").write("\t".join(map(str, row)) + "\n")
print(f"  {system:<10} load c={phase['concurrency']:<4} {phase['requests_per_s']:8.1f} req/s  "
      f"p50 {fmt(lat['p50_ms']):>7} ms  p90 {fmt(lat['p90_ms']):>7} ms  p99 {fmt(lat['p99_ms']):>7} ms  "
      f"errors {phase['errors']}  ttft p50 {fmt(phase['ttft']['p50_ms'])} ms  "
      f"prompt tokens {fmt(phase['mean_prompt_tokens'])}  cpu: server {server_cpu}, generator {gen_cpu}"
      + (f"\n    first error: {phase['first_error']}" if phase["first_error"] else ""))
PY
    sleep 1
}

echo "work folder: $WORK   model: $MODEL_NAME   rounds: $ROUNDS   connections: $CONNECTIONS   $(nproc) cores"
if [[ $SYSTEMS == *dynamo* ]]; then
    start_forwarder
fi
for round in $(seq "$ROUNDS"); do
    for system in $SYSTEMS; do
        echo "round $round: $system"
        "start_$system" "$round"
        if ! wait_for_model "$URL" "${SERVER_PIDS[@]}"; then
            echo "$system never listed ${WANT_MODEL:-a model} at $URL/v1/models; log tails:" >&2
            tail -n 20 "$WORK"/*-"$round".log >&2
            exit 1
        fi
        sanity_check "$URL" || exit 1
        for conns in $CONNECTIONS; do
            run_wrk "$round" "$system" "$conns"
        done
        if [[ -n $LOADGEN ]]; then
            run_loadgen "$round" "$system"
        fi
        echo "  $system peak RSS ($SERVER_NAMES): $(server_peak_rss)"
        stop_servers
    done
done

echo
echo "summary (mean over rounds):"
awk -F'\t' -v order="$SYSTEMS" 'NR > 1 {
        key = $3 "\t" $4; keys[key] = 1
        n[key, $2]++; rps[key, $2] += $5; p50[key, $2] += $6; p99[key, $2] += $8; cpu[key, $2] += $12
    }
    END {
        for (key in keys) {
            split(key, k, "\t")
            line = sprintf("  %-8s c=%-4s", k[1], k[2])
            count = split(order, names, " ")
            for (i = 1; i <= count; i++) if (n[key, s = names[i]])
                line = line sprintf("  %s %.1f req/s (p50 %.0f ms, p99 %.0f ms%s)", s,
                    rps[key, s] / n[key, s], p50[key, s] / n[key, s], p99[key, s] / n[key, s],
                    k[1] == "wrk" ? sprintf(", %.2f CPU ms/req", cpu[key, s] / n[key, s]) : "")
            if (n[key, "dynamo"] && n[key, "switchyard"] && rps[key, "dynamo"] > 0)
                line = line sprintf("  ratio switchyard/dynamo %.2fx req/s%s",
                    (rps[key, "switchyard"] / n[key, "switchyard"]) / (rps[key, "dynamo"] / n[key, "dynamo"]),
                    k[1] == "wrk" && cpu[key, "switchyard"] > 0 ? sprintf(", %.2fx less CPU per request",
                        (cpu[key, "dynamo"] / n[key, "dynamo"]) / (cpu[key, "switchyard"] / n[key, "switchyard"])) : "")
            print line
        }
    }' "$RESULTS" | sort
if [[ -n $LOADGEN ]]; then
    awk -F'\t' 'NR > 1 && $4 == '"$LOADGEN_CONCURRENCY"' { r[$2 "\t" $3] += $5; n[$2 "\t" $3]++ }
        END { for (s in r) { split(s, k, "\t"); if (k[2] == "loadgen" && n[k[1] "\twrk"])
            printf "  generator check on %s at c=%s: bench load %.1f req/s vs wrk %.1f req/s (%.2fx)\n",
                k[1], '"$LOADGEN_CONCURRENCY"', r[s] / n[s], r[k[1] "\twrk"] / n[k[1] "\twrk"],
                (r[s] / n[s]) / (r[k[1] "\twrk"] / n[k[1] "\twrk"]) } }' "$RESULTS"
fi
if [[ -n ${RESULTS_OUT:-} ]]; then
    cp "$RESULTS" "$RESULTS_OUT"
fi
