#!/usr/bin/env bash
# Cross-node fan-out beside single-node fan-out, same box, same run.
#
#   single: one standalone replicant-node (as fanout.sh runs it), publishers and
#           subscribers on it.
#   cross:  scripts/dev-cluster up --release --cores 3 --replicants 3 --base-port B;
#           publishers on r1 (MQTT B+201), subscribers split between r2 (B+202) and r3 (B+203),
#           so every delivery crosses a replicant-to-replicant peer link.
#
# Scenarios (10 publishers -> 10 subscribers on bench/#, 100 B by default):
#   qos0, qos1          max throughput: publishers as fast as the broker takes them
#   lat-qos0, lat-qos1  fixed offered load: LAT_DELIVERED deliveries/s in total
#                       (publish rate LAT_DELIVERED / SUBSCRIBERS, spread over publishers),
#                       every message's latency sampled
# Every broker (standalone or whole cluster) is started fresh for every run. The table shows
# medians; "x/single" is the cross-node delivered rate over the single-node one; the target
# lines compare with the performance targets in loadtest/README.md (cross >= 60% of single,
# p99 < 5 ms at 20 000/s).
# After the table, the broker counters scraped from /metrics at the end of each run.
#
# Usage: loadtest/bench/cross_node.sh [RUNS]        (RUNS defaults to 3)
# Environment (all optional):
#   DURATION=10 WARMUP=2       measurement window and warmup, seconds
#   PUBLISHERS=10 SUBSCRIBERS=10 SIZE=100 INFLIGHT=32 THREADS=1 MQTT_VERSION=4
#   LAT_DELIVERED=20000        deliveries/s offered in the lat-* scenarios
#   SCENARIOS="qos0 qos1 lat-qos0 lat-qos1"
#   TOPOLOGIES="single cross"
#   SKIP_BUILD=1               do not run cargo build (use target/release as it is)
#   OUT=DIR                    reports, broker logs and metrics (default: a temp dir)
#   TOTAL_TIMEOUT=SECONDS      bound of the whole run after the build (default: computed)
#
# The binaries are copied to $OUT/bin once, and dev-cluster is run from a shadow root
# ($OUT/shadow, whose scripts/dev-cluster is a link to the real one and whose target/release
# holds those copies) with a no-op `cargo` first on PATH: `dev-cluster up` runs `cargo build`
# on every call, and a rebuild by someone else between runs must not change the broker
# under test. Ports are chosen once at start, below the ephemeral range. A trap stops the
# cluster (dev-cluster down) and the standalone broker on exit, error, Ctrl-C or timeout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SELF="$ROOT/loadtest/bench/$(basename "${BASH_SOURCE[0]}")"
RUNS="${1:-${RUNS:-3}}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
PUBLISHERS="${PUBLISHERS:-10}"
SUBSCRIBERS="${SUBSCRIBERS:-10}"
SIZE="${SIZE:-100}"
INFLIGHT="${INFLIGHT:-32}"
THREADS="${THREADS:-1}"
MQTT_VERSION="${MQTT_VERSION:-4}"
LAT_DELIVERED="${LAT_DELIVERED:-20000}"
SCENARIOS="${SCENARIOS:-qos0 qos1 lat-qos0 lat-qos1}"
TOPOLOGIES="${TOPOLOGIES:-single cross}"
CORES=3
REPLICANTS=3
TARGET_RATIO=0.60
TARGET_P99_US=5000
RUN_BOUND=$((DURATION + WARMUP + 60))

log() { printf '== %s\n' "$*" >&2; }

# --- build once, then re-run this script under a global timeout -------------------------
if [[ -z "${CROSS_NODE_BOUNDED:-}" ]]; then
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        log "building loadtest, replicant-node and core-node (release)"
        timeout --foreground 3600 cargo build --release --manifest-path "$ROOT/Cargo.toml" \
            -p loadtest -p replicant-node -p core-node
    fi
    n_scen=$(wc -w <<<"$SCENARIOS")
    n_topo=$(wc -w <<<"$TOPOLOGIES")
    # Per run: the loadtest bound plus up to 60 s to start and 10 s to stop a cluster.
    TOTAL_TIMEOUT="${TOTAL_TIMEOUT:-$((120 + RUNS * n_scen * n_topo * (RUN_BOUND + 70)))}"
    export CROSS_NODE_BOUNDED=1 TOTAL_TIMEOUT
    log "whole run bounded by ${TOTAL_TIMEOUT} s"
    exec timeout --kill-after=20 "$TOTAL_TIMEOUT" bash "$SELF" "$@"
fi

OUT="${OUT:-$(mktemp -d -t meshmq-crossnode.XXXXXX)}"
mkdir -p "$OUT"
BIN="$OUT/bin"
SHADOW="$OUT/shadow"

# --- cleanup ------------------------------------------------------------------------------
BROKER_PID=""
CLUSTER_DIR=""
stop_standalone() {
    if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    BROKER_PID=""
    rm -rf "$OUT"/single-*-data""
}
stop_cluster() {
    if [[ -n "$CLUSTER_DIR" ]]; then
        timeout --foreground 30 "$SHADOW/scripts/dev-cluster" down --dir "$CLUSTER_DIR" \
            >/dev/null 2>&1 || log "dev-cluster down failed for $CLUSTER_DIR"
        rm -rf "$CLUSTER_DIR/data"
    fi
    CLUSTER_DIR=""
}
cleanup() {
    stop_standalone
    stop_cluster
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# --- frozen binaries and the shadow root for dev-cluster ----------------------------------
for b in loadtest replicant-node core-node; do
    [[ -x "$ROOT/target/release/$b" ]] || { log "missing $ROOT/target/release/$b"; exit 1; }
done
mkdir -p "$BIN" "$SHADOW/scripts" "$SHADOW/target/release" "$SHADOW/nocargo"
for b in loadtest replicant-node core-node; do
    cp "$ROOT/target/release/$b" "$BIN/$b"
done
ln -sf "$BIN/replicant-node" "$SHADOW/target/release/replicant-node"
ln -sf "$BIN/core-node" "$SHADOW/target/release/core-node"
ln -sf "$ROOT/scripts/dev-cluster" "$SHADOW/scripts/dev-cluster"
printf '#!/bin/sh\nexit 0\n' >"$SHADOW/nocargo/cargo"
chmod +x "$SHADOW/nocargo/cargo"
LOADTEST="$BIN/loadtest"
MESHMQ="$BIN/replicant-node"

# --- ports, chosen once -------------------------------------------------------------------
tcp_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
udp_busy() { # port: bound by any socket (IPv4 or IPv6)?
    local hex
    hex=$(printf '%04X' "$1")
    awk -v h=":$hex" 'NR > 1 && substr($2, length($2) - 4) == h { found = 1 } END { exit !found }' \
        /proc/net/udp /proc/net/udp6 2>/dev/null
}
port_busy() { tcp_busy "$1" || udp_busy "$1"; }

EPHEMERAL_LOW="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
PORT_LOW=10000
PORT_SPAN=$((EPHEMERAL_LOW - PORT_LOW - 600))
((PORT_SPAN > 1000)) || { log "ephemeral range starts too low ($EPHEMERAL_LOW)"; exit 1; }

cluster_ports() { # base -> every port dev-cluster uses
    local b=$1 i
    for i in $(seq 1 "$CORES"); do echo $((b + i)) $((b + 100 + i)); done
    for i in $(seq 1 "$REPLICANTS"); do
        echo $((b + 200 + i)) $((b + 300 + i)) $((b + 400 + i)) $((b + 500 + i))
    done
}
pick_base() {
    local b p ok
    for _ in $(seq 1 200); do
        b=$((PORT_LOW + (RANDOM * 32768 + RANDOM) % PORT_SPAN))
        ok=1
        for p in $(cluster_ports "$b"); do
            if port_busy "$p"; then ok=0; break; fi
        done
        ((ok)) && { echo "$b"; return 0; }
    done
    log "no free port range found"; return 1
}
BASE=$(pick_base)
free_port() { # a free port outside the cluster's range
    local p
    for _ in $(seq 1 200); do
        p=$((PORT_LOW + (RANDOM * 32768 + RANDOM) % PORT_SPAN))
        ((p > BASE && p <= BASE + 600)) && continue
        port_busy "$p" || { echo "$p"; return 0; }
    done
    log "no free port found"; return 1
}
S_MQTT=$(free_port)
S_WS=$(free_port)
S_HTTP=$(free_port)
[[ "$S_MQTT" != "$S_WS" && "$S_WS" != "$S_HTTP" && "$S_MQTT" != "$S_HTTP" ]] \
    || { log "port draw collided, run again"; exit 1; }
log "single node: MQTT $S_MQTT, HTTP $S_HTTP; cluster base port $BASE; output in $OUT"

# --- brokers ------------------------------------------------------------------------------
wait_listening() { # port pid
    local deadline=$((SECONDS + 15))
    while ((SECONDS < deadline)); do
        kill -0 "$2" 2>/dev/null || return 1
        tcp_busy "$1" && return 0
        sleep 0.05
    done
    return 1
}

start_standalone() { # tag -> BROKER_PID
    local tag=$1
    mkdir -p "$OUT/$tag-data"
    RUST_LOG=warn "$MESHMQ" --mqtt-bind "127.0.0.1:$S_MQTT" --ws-bind "127.0.0.1:$S_WS" \
        --http-bind "127.0.0.1:$S_HTTP" --data-dir "$OUT/$tag-data" >"$OUT/$tag.log" 2>&1 &
    BROKER_PID=$!
    wait_listening "$S_MQTT" "$BROKER_PID" || { log "standalone did not start (see $OUT/$tag.log)"; return 1; }
}

metric_sum() { # url name -> sum of every series of that counter (0 if absent)
    curl -fsS --max-time 5 "$1" 2>/dev/null \
        | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%.0f\n", s }'
}

wait_peer_links() { # every replicant has a link up to every other one (or 20 s pass)
    local deadline=$((SECONDS + 20)) j up
    while ((SECONDS < deadline)); do
        up=1
        for j in $(seq 1 "$REPLICANTS"); do
            (( $(metric_sum "http://127.0.0.1:$((BASE + 400 + j))/metrics" meshmq_peer_links_up) \
                >= REPLICANTS - 1 )) || up=0
        done
        ((up)) && return 0
        sleep 0.2
    done
    log "peer links not all up after 20 s (forwarding starts anyway)"
}

start_cluster() { # tag -> CLUSTER_DIR
    local tag=$1
    CLUSTER_DIR="$OUT/$tag-cluster"
    if ! RUST_LOG=warn timeout --foreground 90 bash -c \
        'PATH="$1/nocargo:$PATH" "$1/scripts/dev-cluster" "${@:2}"' _ "$SHADOW" \
        up --release --cores "$CORES" --replicants "$REPLICANTS" --base-port "$BASE" \
        --dir "$CLUSTER_DIR" >"$OUT/$tag-endpoints.txt" 2>"$OUT/$tag-up.log"; then
        log "dev-cluster up failed (see $OUT/$tag-up.log and $CLUSTER_DIR/logs)"
        stop_cluster
        return 1
    fi
    wait_peer_links
}

scrape() { # tag url... : /metrics of each node into $OUT/$tag-N.metrics
    local tag=$1 n=0 url
    shift
    for url in "$@"; do
        n=$((n + 1))
        curl -fsS --max-time 5 "$url" >"$OUT/$tag-$n.metrics" 2>/dev/null || true
    done
}

# --- runs ---------------------------------------------------------------------------------
for scenario in $SCENARIOS; do
    case "$scenario" in qos0 | qos1 | lat-qos0 | lat-qos1) ;; *) log "unknown scenario $scenario"; exit 2 ;; esac
done
for topo in $TOPOLOGIES; do
    case "$topo" in single | cross) ;; *) log "unknown topology $topo"; exit 2 ;; esac
done
scenario_flags() { # scenario -> loadtest flags
    local rate=$((LAT_DELIVERED / SUBSCRIBERS))
    case "$1" in
        qos0) echo "--qos 0" ;;
        qos1) echo "--qos 1" ;;
        lat-qos0) echo "--qos 0 --rate $rate" ;;
        lat-qos1) echo "--qos 1 --rate $rate" ;;
        *) log "unknown scenario $1"; return 1 ;;
    esac
}

run_loadtest() { # topology scenario tag pids endpoint-flags...
    local topo=$1 scenario=$2 tag=$3 pids=$4 flags
    shift 4
    flags=$(scenario_flags "$scenario")
    # shellcheck disable=SC2086 # flags are words
    timeout --foreground --kill-after=5 "$RUN_BOUND" "$LOADTEST" fanout "$@" \
        --publishers "$PUBLISHERS" --subscribers "$SUBSCRIBERS" \
        --topic 'bench/%i' --filter 'bench/#' $flags --size "$SIZE" \
        --inflight "$INFLIGHT" --duration "$DURATION" --warmup "$WARMUP" \
        --mqtt-version "$MQTT_VERSION" --threads "$THREADS" --broker-pid "$pids" \
        --broker-name "$topo" --scenario "$scenario" --json "$OUT/$tag.json" \
        >"$OUT/$tag.txt" 2>&1 || log "$tag failed (exit $?, see $OUT/$tag.txt)"
}

run_single() { # scenario run
    local tag="single-$1-$2"
    start_standalone "$tag" || { stop_standalone; return 0; }
    log "single $1 run $2"
    run_loadtest single "$1" "$tag" "$BROKER_PID" --host 127.0.0.1 --port "$S_MQTT"
    scrape "$tag" "http://127.0.0.1:$S_HTTP/metrics"
    stop_standalone
}

run_cross() { # scenario run
    local tag="cross-$1-$2" pids j urls=()
    start_cluster "$tag" || return 0
    pids=$(paste -sd, "$CLUSTER_DIR/pids")
    log "cross $1 run $2 (cluster pids $pids)"
    run_loadtest cross "$1" "$tag" "$pids" --pub-hosts "127.0.0.1:$((BASE + 201))" \
        --sub-hosts "127.0.0.1:$((BASE + 202)),127.0.0.1:$((BASE + 203))"
    for j in $(seq 1 "$REPLICANTS"); do urls+=("http://127.0.0.1:$((BASE + 400 + j))/metrics"); done
    scrape "$tag" "${urls[@]}"
    stop_cluster
}

for run in $(seq 1 "$RUNS"); do
    for scenario in $SCENARIOS; do
        for topo in $TOPOLOGIES; do
            "run_$topo" "$scenario" "$run"
        done
    done
done

# --- the table ----------------------------------------------------------------------------
shopt -s nullglob
reports=("$OUT"/*.json)
((${#reports[@]} > 0)) || { log "no run produced a report"; exit 1; }

echo
echo "cross-node fan-out: ${PUBLISHERS} pub -> ${SUBSCRIBERS} sub on bench/#, ${SIZE} B," \
    "${DURATION} s window, MQTT v${MQTT_VERSION}, median of ${RUNS} run(s)"
echo "box: nproc $(nproc), kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "single = standalone replicant-node; cross = ${CORES} cores + ${REPLICANTS} replicants," \
    "publishers on r1, subscribers on r2+r3; lat-* offer ${LAT_DELIVERED} deliveries/s;" \
    "CPU % and RSS summed over the broker's processes"
table=$("$LOADTEST" summarize --baseline single "${reports[@]}")
echo "$table"
echo
echo "$table" | awk -v ratio="$TARGET_RATIO" -v p99="$TARGET_P99_US" '
    NR > 1 && $2 == "cross" && $1 !~ /^lat/ {
        ok = ($12 != "n/a" && $12 + 0 >= ratio) ? "MET" : "NOT MET"
        printf "target %-9s cross/single delivered = %s (target >= %.2f): %s\n", $1, $12, ratio, ok
    }
    NR > 1 && $1 ~ /^lat/ {
        ok = ($8 != "n/a" && $8 + 0 < p99) ? "MET" : "NOT MET"
        printf "target %-9s %-6s p99 = %s us at %s delivered/s (target < %d us): %s\n", $1, $2, $8, $4, p99, ok
    }'

# --- broker counters ----------------------------------------------------------------------
counter() { # file name [label-filter] -> summed value
    [[ -f "$1" ]] || { echo "n/a"; return; }
    awk -v n="$2" -v f="${3:-}" '
        ($1 == n || index($1, n "{") == 1) && (f == "" || index($1, f) > 0) { s += $NF }
        END { printf "%.0f\n", s }' "$1"
}
reasons() { # file name -> "reason=value ..." of the non-zero series
    [[ -f "$1" ]] || { echo "n/a"; return; }
    awk -v n="$2" 'index($1, n "{") == 1 && $NF + 0 > 0 {
            r = $1; sub(/.*reason="/, "", r); sub(/".*/, "", r); out = out (out == "" ? "" : " ") r "=" $NF
        } END { print (out == "" ? "-" : out) }' "$1"
}
echo
echo "broker counters at the end of each run (whole run: warmup, window, drain); drops by reason"
printf '%-19s %11s %11s %8s %7s %11s %11s  %s\n' run "r1 received" "peer sent" batches msg/bat \
    "r2+r3 from" "r2+r3 deliv" "drops: r1 peer links | r2 | r3"
sum2() { # two counters -> their sum, n/a if either is
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a") print "n/a"; else printf "%.0f\n", a + b }'
}
for f in "$OUT"/cross-*-1.metrics; do
    tag=$(basename "$f" -1.metrics)
    r1="$OUT/$tag-1.metrics" r2="$OUT/$tag-2.metrics" r3="$OUT/$tag-3.metrics"
    sent=$(counter "$r1" meshmq_peer_messages_sent_total)
    batches=$(counter "$r1" meshmq_peer_batches_sent_total)
    per=$(awk -v s="$sent" -v b="$batches" 'BEGIN { if (b > 0) printf "%.1f", s / b; else print "n/a" }')
    from=$(sum2 "$(counter "$r2" meshmq_messages_from_peers_total)" "$(counter "$r3" meshmq_messages_from_peers_total)")
    deliv=$(sum2 "$(counter "$r2" meshmq_messages_delivered_total)" "$(counter "$r3" meshmq_messages_delivered_total)")
    printf '%-19s %11s %11s %8s %7s %11s %11s  %s | %s | %s\n' "$tag" \
        "$(counter "$r1" meshmq_messages_received_total)" "$sent" "$batches" "$per" "$from" "$deliv" \
        "$(reasons "$r1" meshmq_peer_messages_dropped_total)" \
        "$(reasons "$r2" meshmq_messages_dropped_total)" "$(reasons "$r3" meshmq_messages_dropped_total)"
done
for f in "$OUT"/single-*-1.metrics; do
    tag=$(basename "$f" -1.metrics)
    printf '%-19s %11s %11s %8s %7s %11s %11s  %s\n' "$tag" \
        "$(counter "$f" meshmq_messages_received_total)" - - - - \
        "$(counter "$f" meshmq_messages_delivered_total)" "$(reasons "$f" meshmq_messages_dropped_total)"
done
echo "reports, logs and metrics in $OUT"
