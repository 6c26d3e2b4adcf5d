#!/usr/bin/env bash
# What authentication and authorization cost (issue 13): one standalone meshmq per case,
# started fresh on free loopback ports, the same load generator, medians of RUNS runs and the
# ratio of each case to the same run's unauthenticated / unauthorized figure.
#
#   storm   CONNS clients connect at RATE/s (`loadtest conn`, 2 workers) and are held HOLD s.
#           Cases: none (anonymous), sha256 (built-in database, salted SHA-256, EMQX's
#           default) and pbkdf2 (built-in database, PBKDF2-SHA256 1 000 iterations); every
#           client logs in as the one user `bench`, created through the users API.
#           Figures: connects/s, connect-to-CONNACK p99, broker CPU ms per 1 000 connects.
#   fanout  `loadtest fanout` PUBLISHERS -> SUBSCRIBERS on bench/#, QoS 0, SIZE B, DURATION s.
#           Cases: none, and rules20: `no_match = "deny"` with 20 file rules whose only
#           match for the benchmark's topics is the last one, the authorization cache on
#           (the default). Figures: delivered/s, broker CPU µs per delivered message.
#
# The goal (issue 13): sha256 and rules20 at >= 0.9 of their baseline. pbkdf2 is shown for
# scale: its hashes run on the bounded hashing pool (half the cores), so its connect rate is
# the pool's hash rate once the offered rate passes it.
#
# Usage: loadtest/bench/auth.sh [RUNS]          (RUNS defaults to 3)
# Environment (all optional):
#   CONNS=10000 RATE=10000 HOLD=3               the storm
#   PUBLISHERS=10 SUBSCRIBERS=10 SIZE=100 DURATION=10 WARMUP=2   the fan-out
#   SCENARIOS="storm fanout"  SKIP_BUILD=1  OUT=DIR
# Every run is bounded by `timeout`; a trap stops the broker on exit or Ctrl-C.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUNS="${1:-${RUNS:-3}}"
CONNS="${CONNS:-10000}"
RATE="${RATE:-10000}"
HOLD="${HOLD:-3}"
PUBLISHERS="${PUBLISHERS:-10}"
SUBSCRIBERS="${SUBSCRIBERS:-10}"
SIZE="${SIZE:-100}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
SCENARIOS="${SCENARIOS:-storm fanout}"
OUT="${OUT:-$(mktemp -d -t meshmq-auth-bench.XXXXXX)}"
LOADTEST="$ROOT/target/release/loadtest"
MESHMQ="$ROOT/target/release/replicant-node"
USERS_PATH="/api/v5/authentication/password_based:built_in_database/users"
mkdir -p "$OUT"

log() { printf '== %s\n' "$*" >&2; }
for tool in curl jq; do
    command -v "$tool" >/dev/null || { log "$tool is needed"; exit 1; }
done

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

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building loadtest and replicant-node (release)"
    cargo build --release --manifest-path "$ROOT/Cargo.toml" -p loadtest -p replicant-node
fi
[[ -x "$LOADTEST" && -x "$MESHMQ" ]] || { log "missing release binaries"; exit 1; }

# --- ports, broker, CPU ---------------------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
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

# Broker CPU time so far (user + system), in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ="$(getconf CLK_TCK)"

# The [[authentication]] / [authorization] of a case (empty for none).
case_config() { # case file
    case "$1" in
        none) : >"$2" ;;
        sha256) cat >"$2" <<'EOF'
[[authentication]]
mechanism = "password_based"
backend = "built_in_database"
password_hash_algorithm = { name = "sha256", salt_position = "suffix" }
EOF
            ;;
        pbkdf2) cat >"$2" <<'EOF'
[[authentication]]
mechanism = "password_based"
backend = "built_in_database"
password_hash_algorithm = { name = "pbkdf2", mac_fun = "sha256", iterations = 1000 }
EOF
            ;;
        rules20)
            {
                echo '[authorization]'
                echo 'no_match = "deny"'
                echo
                echo '[[authorization.sources]]'
                echo 'type = "file"'
                echo 'rules = ['
                # 19 rules that never match the benchmark's clients or topics ...
                for i in $(seq 1 19); do
                    case $((i % 4)) in
                        0) echo "  { permission = \"allow\", who = { username = \"svc$i\" }, action = \"all\", topics = [\"svc/$i/#\"] }," ;;
                        1) echo "  { permission = \"deny\", who = { clientid_re = \"^sensor-$i-\" }, action = \"publish\", topics = [\"bench/#\"] }," ;;
                        2) echo "  { permission = \"allow\", who = \"all\", action = { action = \"subscribe\", qos = [0] }, topics = [\"fleet/$i/+/status\"] }," ;;
                        3) echo "  { permission = \"deny\", who = { ipaddr = \"10.$i.0.0/16\" }, action = \"all\", topics = [\"#\"] }," ;;
                    esac
                done
                # ... and the one that lets them publish and subscribe.
                echo '  { permission = "allow", who = "all", action = "all", topics = ["bench/#"] },'
                echo ']'
            } >"$2"
            ;;
    esac
}

start_broker() { # case tag -> BROKER_PID, MQTT_PORT, HTTP_PORT
    local conf="$OUT/$2.toml" data="$OUT/$2-data"
    case_config "$1" "$conf"
    MQTT_PORT="$(free_port)"
    HTTP_PORT="$(free_port)"
    mkdir -p "$data"
    RUST_LOG=warn "$MESHMQ" --config "$conf" --mqtt-bind "127.0.0.1:$MQTT_PORT" \
        --ws-bind "127.0.0.1:$(free_port)" --http-bind "127.0.0.1:$HTTP_PORT" \
        --data-dir "$data" >"$OUT/$2.log" 2>&1 &
    BROKER_PID=$!
    local deadline=$((SECONDS + 20))
    until port_busy "$MQTT_PORT" && port_busy "$HTTP_PORT"; do
        kill -0 "$BROKER_PID" 2>/dev/null && ((SECONDS < deadline)) \
            || { log "broker did not start (see $OUT/$2.log)"; cleanup; return 1; }
        sleep 0.1
    done
    if [[ "$1" == sha256 || "$1" == pbkdf2 ]]; then
        curl -fsS --max-time 10 -X POST -H 'Content-Type: application/json' \
            -d '{"user_id": "bench", "password": "bench-secret"}' \
            "http://127.0.0.1:$HTTP_PORT$USERS_PATH" >/dev/null \
            || { log "could not create the user"; cleanup; return 1; }
    fi
}

# --- scenarios ------------------------------------------------------------------------------
storm_run() { # case run
    local tag="storm-$1-$2" creds=() t0 t1
    start_broker "$1" "$tag" || return 0
    [[ "$1" == none ]] || creds=(-u bench -P bench-secret)
    t0="$(cpu_ticks "$BROKER_PID")"
    timeout --kill-after=5 $((HOLD + 120)) "$LOADTEST" conn -h "127.0.0.1:$MQTT_PORT" \
        -c "$CONNS" --rate "$RATE" --workers 2 -k 300 "${creds[@]}" \
        --duration "$HOLD" --json "$OUT/$tag.json" >"$OUT/$tag.txt" 2>&1 \
        || log "$tag: loadtest exit $? (see $OUT/$tag.txt)"
    t1="$(cpu_ticks "$BROKER_PID")"
    cleanup
    [[ -s "$OUT/$tag.json" ]] || return 0
    jq -c --arg case "$1" --argjson cpu "$(((t1 - t0) * 1000 / HZ))" --argjson n "$CONNS" '{
        case: $case, connected: .figures.connected, failed: .figures.connect_failed,
        rate: .connects_per_sec, p99_ms: (.connect_latency_us.p99 / 1000),
        cpu_ms_per_1k: (if .figures.connected > 0 then $cpu * 1000 / .figures.connected else null end)
    }' "$OUT/$tag.json" >>"$OUT/storm.jsonl"
}

fanout_run() { # case run
    local tag="fanout-$1-$2"
    start_broker "$1" "$tag" || return 0
    timeout --kill-after=5 $((DURATION + WARMUP + 60)) "$LOADTEST" fanout \
        --host 127.0.0.1 --port "$MQTT_PORT" --publishers "$PUBLISHERS" \
        --subscribers "$SUBSCRIBERS" --topic 'bench/%i' --filter 'bench/#' --qos 0 \
        --size "$SIZE" --duration "$DURATION" --warmup "$WARMUP" --threads 1 \
        --broker-pid "$BROKER_PID" --broker-name "meshmq-$1" --scenario "fanout-$1" \
        --json "$OUT/$tag.json" >"$OUT/$tag.txt" 2>&1 \
        || log "$tag: loadtest exit $? (see $OUT/$tag.txt)"
    cleanup
    [[ -s "$OUT/$tag.json" ]] || return 0
    jq -c --arg case "$1" '{
        case: $case, delivered: .delivered_per_sec, ratio: .delivered_ratio,
        cpu_us_per_msg: (if .delivered_per_sec > 0 and .broker_cpu_percent != null
            then .broker_cpu_percent / 100 / .delivered_per_sec * 1000000 else null end)
    }' "$OUT/$tag.json" >>"$OUT/fanout.jsonl"
}

for run in $(seq 1 "$RUNS"); do
    for s in $SCENARIOS; do
        case "$s" in
            storm) for c in none sha256 pbkdf2; do log "storm $c run $run"; storm_run "$c" "$run"; done ;;
            fanout) for c in none rules20; do log "fanout $c run $run"; fanout_run "$c" "$run"; done ;;
            *) log "unknown scenario $s" ;;
        esac
    done
done

# --- the table ------------------------------------------------------------------------------
# Medians per case of each field; then each case's median over the `none` median.
summary() { # file fields... (the first field is the ratio's)
    local f="$1"; shift
    [[ -s "$f" ]] || return 0
    jq -rs --argjson fields "$(printf '%s\n' "$@" | jq -R . | jq -s .)" '
        def median: sort | if length == 0 then null
            elif length % 2 == 1 then .[length / 2 | floor]
            else (.[length / 2 - 1] + .[length / 2]) / 2 end;
        def r2: if . == null then "n/a" else (. * 100 | round / 100 | tostring) end;
        group_by(.case) | map({case: .[0].case, n: length,
            m: (. as $rows | $fields | map(. as $k | [$rows[][$k] | select(. != null)] | median))})
        | (map(select(.case == "none")) | .[0].m[0]) as $base
        | (["case", "runs"] + $fields + ["ratio vs none (" + $fields[0] + ")"] | join("\t")),
          (.[] | [.case, (.n | tostring)] + (.m | map(r2))
              + [if $base and .m[0] then (.m[0] / $base | r2) else "n/a" end] | join("\t"))
    ' "$f" | column -t -s $'\t'
}

echo
echo "connect storm: $CONNS clients at $RATE/s, 2 loadtest workers, median of $RUNS run(s)"
summary "$OUT/storm.jsonl" rate p99_ms cpu_ms_per_1k connected failed
echo
echo "fan-out: $PUBLISHERS pub -> $SUBSCRIBERS sub on bench/#, QoS 0, $SIZE B, ${DURATION} s," \
    "median of $RUNS run(s)"
summary "$OUT/fanout.jsonl" delivered cpu_us_per_msg ratio
echo
echo "reports and broker logs: $OUT"
