#!/usr/bin/env bash
# Side-by-side fan-out benchmark: meshmq (replicant-node) against mosquitto (and rumqttd
# when it is installed), same scenarios, same load generator, one table at the end.
#
# Usage: loadtest/bench/fanout.sh [RUNS]        (RUNS defaults to 1; the table shows medians)
# Environment (all optional):
#   DURATION=10 WARMUP=2       measurement window and warmup, seconds
#   PUBLISHERS=10 SUBSCRIBERS=10 SIZE=100 INFLIGHT=32 THREADS=1 MQTT_VERSION=4
#   SCENARIOS="qos0 qos1"      which scenarios to run
#   BROKERS="meshmq mosquitto rumqttd"   which brokers to try (missing ones are skipped)
#   SKIP_BUILD=1               do not run cargo build
#   OUT=DIR                    where JSON reports and broker logs go (default: a temp dir)
#
# Every broker is started fresh for every run on free loopback ports (no leftovers from the
# previous run), sampled for RSS and CPU through --broker-pid, and stopped at the end by a
# trap, even on Ctrl-C. Every run is bounded by `timeout`, so the script stops by itself.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUNS="${1:-${RUNS:-1}}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
PUBLISHERS="${PUBLISHERS:-10}"
SUBSCRIBERS="${SUBSCRIBERS:-10}"
SIZE="${SIZE:-100}"
INFLIGHT="${INFLIGHT:-32}"
THREADS="${THREADS:-1}"
MQTT_VERSION="${MQTT_VERSION:-4}"
SCENARIOS="${SCENARIOS:-qos0 qos1}"
BROKERS="${BROKERS:-meshmq mosquitto rumqttd}"
OUT="${OUT:-$(mktemp -d -t meshmq-fanout.XXXXXX)}"
LOADTEST="$ROOT/target/release/loadtest"
MESHMQ="$ROOT/target/release/replicant-node"
mkdir -p "$OUT"

log() { printf '== %s\n' "$*" >&2; }

BROKER_PID=""
cleanup() {
    if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    BROKER_PID=""
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# --- build and install --------------------------------------------------------------------
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building loadtest (release)"
    cargo build --release --manifest-path "$ROOT/Cargo.toml" -p loadtest
    log "building replicant-node (release)"
    if ! cargo build --release --manifest-path "$ROOT/Cargo.toml" -p replicant-node; then
        log "replicant-node does not build: meshmq is skipped"
    fi
fi
[[ -x "$LOADTEST" ]] || { log "missing $LOADTEST"; exit 1; }

if ! command -v mosquitto >/dev/null 2>&1 && [[ " $BROKERS " == *" mosquitto "* ]]; then
    SUDO=""
    [[ "$(id -u)" == 0 ]] || SUDO="sudo"
    log "installing mosquitto"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto \
        || log "could not install mosquitto: it is skipped"
fi
MOSQUITTO="$(command -v mosquitto || true)"
[[ -n "$MOSQUITTO" ]] || [[ ! -x /usr/sbin/mosquitto ]] || MOSQUITTO=/usr/sbin/mosquitto
RUMQTTD="$(command -v rumqttd || true)"

# --- ports and brokers --------------------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Ports are drawn below the kernel's ephemeral range, so no outgoing connection (ours or
# anyone's) can be holding one that a connect probe cannot see.
EPHEMERAL_LOW="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
PORT_LOW=10000
PORT_SPAN=$((EPHEMERAL_LOW - PORT_LOW))
((PORT_SPAN > 1000)) || { PORT_LOW=61000; PORT_SPAN=4000; }
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((PORT_LOW + (RANDOM * 32768 + RANDOM) % PORT_SPAN))
        port_busy "$p" || { echo "$p"; return 0; }
    done
    log "no free port found"; return 1
}

wait_listening() { # port pid
    local deadline=$((SECONDS + 15))
    while ((SECONDS < deadline)); do
        kill -0 "$2" 2>/dev/null || return 1
        port_busy "$1" && return 0
        sleep 0.05
    done
    return 1
}

available() {
    case "$1" in
        meshmq) [[ -x "$MESHMQ" ]] ;;
        mosquitto) [[ -n "$MOSQUITTO" ]] ;;
        rumqttd) [[ -n "$RUMQTTD" ]] ;;
        *) return 1 ;;
    esac
}

rumqttd_config() { # port file
    cat >"$2" <<EOF
id = 0
[router]
id = 0
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$1"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 20480
max_inflight_count = 100
dynamic_filters = true
EOF
}

start_broker() { # name port tag -> sets BROKER_PID
    local name="$1" port="$2" tag="$3"
    case "$name" in
        meshmq)
            local data="$OUT/meshmq-data-$tag"
            mkdir -p "$data"
            RUST_LOG=warn "$MESHMQ" --mqtt-bind "127.0.0.1:$port" \
                --ws-bind "127.0.0.1:$(free_port)" --http-bind "127.0.0.1:$(free_port)" \
                --data-dir "$data" >"$OUT/$tag.log" 2>&1 &
            ;;
        mosquitto) "$MOSQUITTO" -p "$port" >"$OUT/$tag.log" 2>&1 & ;;
        rumqttd)
            rumqttd_config "$port" "$OUT/$tag.toml"
            "$RUMQTTD" --config "$OUT/$tag.toml" >"$OUT/$tag.log" 2>&1 &
            ;;
    esac
    BROKER_PID=$!
    if ! wait_listening "$port" "$BROKER_PID"; then
        log "$name did not start listening on $port (see $OUT/$tag.log)"
        cleanup
        return 1
    fi
}

# --- runs ---------------------------------------------------------------------------------
run_one() { # broker scenario run
    local broker="$1" scenario="$2" run="$3" qos port tag
    case "$scenario" in
        qos0) qos=0 ;;
        qos1) qos=1 ;;
        *) log "unknown scenario $scenario"; return 1 ;;
    esac
    tag="$broker-$scenario-$run"
    local started=0
    for _ in 1 2 3; do
        port="$(free_port)"
        if start_broker "$broker" "$port" "$tag"; then started=1; break; fi
    done
    ((started)) || { log "$broker: giving up on $tag"; return 0; }
    log "$broker $scenario run $run (port $port)"
    timeout --kill-after=5 "$((DURATION + WARMUP + 60))" "$LOADTEST" fanout \
        --host 127.0.0.1 --port "$port" --publishers "$PUBLISHERS" --subscribers "$SUBSCRIBERS" \
        --topic 'bench/%i' --filter 'bench/#' --qos "$qos" --size "$SIZE" \
        --inflight "$INFLIGHT" --duration "$DURATION" --warmup "$WARMUP" \
        --mqtt-version "$MQTT_VERSION" --threads "$THREADS" --broker-pid "$BROKER_PID" \
        --broker-name "$broker" --scenario "$scenario" --json "$OUT/$tag.json" \
        || log "$tag failed (exit $?)"
    cleanup
}

for run in $(seq 1 "$RUNS"); do
    for scenario in $SCENARIOS; do
        for broker in $BROKERS; do
            if available "$broker"; then
                run_one "$broker" "$scenario" "$run"
            elif [[ "$run" == 1 && "$scenario" == "${SCENARIOS%% *}" ]]; then
                log "$broker not available: skipped"
            fi
        done
    done
done

shopt -s nullglob
reports=("$OUT"/*.json)
if ((${#reports[@]} == 0)); then
    log "no run produced a report"
    exit 1
fi
echo
echo "fan-out ${PUBLISHERS} pub -> ${SUBSCRIBERS} sub on bench/#, ${SIZE} B, ${DURATION} s window," \
    "MQTT v${MQTT_VERSION}, loadtest threads ${THREADS}, median of ${RUNS} run(s); reports in $OUT"
"$LOADTEST" summarize --baseline mosquitto "${reports[@]}"
