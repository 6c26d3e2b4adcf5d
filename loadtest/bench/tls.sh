#!/usr/bin/env bash
# MQTT over TLS, meshmq side by side with mosquitto (issue 14): both brokers serve the SAME
# certificate files in the same run, the same load generator drives both, and every figure
# is the median of ROUNDS rounds (each round starts every broker afresh per scenario).
#
#   hs-ecdsa, hs-rsa  full TLS handshakes with an ECDSA P-256 / RSA 2048 server certificate:
#             `loadtest storm -c HS_CONNS --rate HS_RATE --cycles HS_CYCLES --tls` (rustls's
#             session cache off, so every connect is a full handshake + MQTT CONNECT), 2
#             worker processes. Two figures, medians over the connect phases: "conn/s" =
#             connected / phase time (at most HS_RATE), and "per broker CPU s" = connects /
#             broker CPU seconds in the phase (`--broker-pid`): the broker's handshake
#             capacity per core. On this box (2 shared cores) the load generator does the dearer half of
#             an ECDSA handshake, so conn/s tends to show the load generator, and the CPU
#             figure is the broker's own; the goal line uses it. HS_RATE=0 connects all at
#             once (-i 0): then listen-queue overflows (mosquitto listens with a backlog of
#             100) cost 1 s SYN retransmits and dominate the figure.
#   resume    resumed handshakes (ECDSA): the same storm with `--tls-resume` (loadtest's own
#             session store per broker address); figures of the reconnect phases, and
#             "resumed share" = resumed handshakes / reconnects (1.00: every reconnect
#             resumed; 0: the broker did not resume).
#   idle-tls  RSS per idle TLS connection: IDLE_CONNS clients connect (`conn --tls`, 2
#             workers) and stay; (broker VmRSS with them - VmRSS before) / connections
#             established (server side, `ss`) at the sample. ECDSA certificate.
#   idle-tcp  the same over plain TCP (meshmq's regression guard: it was ~4.1 KiB).
#   fanout    QoS 0 fan-out over TLS: `loadtest fanout --tls` FAN_PUBS -> FAN_SUBS on bench/#,
#             SIZE B, DURATION s: messages/s delivered; broker CPU per delivered message and
#             the load generator's CPU (at ~100% of its core the load generator is the limit
#             and the broker's CPU per message is the telling figure).
# Goals (issue 14): handshakes/s >= mosquitto's (the rate kept up with at the same offered
# load; when both keep up, the load generator is the limit and the broker CPU per handshake
# decides), idle TLS connection <= 16 KiB.
#
# Usage: loadtest/bench/tls.sh [ROUNDS]          (ROUNDS defaults to 3)
# Environment (all optional):
#   SCENARIOS="hs-ecdsa hs-rsa resume idle-tls idle-tcp fanout"  BROKERS="meshmq mosquitto"
#   HS_CONNS=3000 HS_RATE=1500 HS_CYCLES=3 HS_HOLD=1 HS_WORKERS=2
#   IDLE_CONNS=10000 IDLE_RATE=1000 IDLE_HOLD=30   (TLS connects cost the load generator too)
#   FAN_PUBS=10 FAN_SUBS=10 SIZE=100 DURATION=10 WARMUP=2
#   SOURCE_ADDRS=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4   local addresses of storm/idle clients
#   MESHMQ_AS_MOSQUITTO=1   the "meshmq" column runs a second mosquitto: checks this script
#                           where meshmq does not serve TLS yet (ratios then ~1)
#   SKIP_BUILD=1  OUT=DIR  RESULTS=FILE (append a dated section with the printed figures)
# Needs openssl, jq and ss. mosquitto (/usr/sbin/mosquitto, Debian package `mosquitto`) is
# required: without it the script says so and exits 0 (nothing to compare with). Every run
# is bounded by `timeout`; loopback only; a trap stops every broker it started.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROUNDS="${1:-${ROUNDS:-3}}"
SCENARIOS="${SCENARIOS:-hs-ecdsa hs-rsa resume idle-tls idle-tcp fanout}"
BROKERS="${BROKERS:-meshmq mosquitto}"
HS_CONNS="${HS_CONNS:-3000}"
HS_RATE="${HS_RATE:-1500}"
HS_CYCLES="${HS_CYCLES:-3}"
HS_HOLD="${HS_HOLD:-1}"
HS_WORKERS="${HS_WORKERS:-2}"
IDLE_CONNS="${IDLE_CONNS:-10000}"
IDLE_RATE="${IDLE_RATE:-1000}"
IDLE_HOLD="${IDLE_HOLD:-30}"
FAN_PUBS="${FAN_PUBS:-10}"
FAN_SUBS="${FAN_SUBS:-10}"
SIZE="${SIZE:-100}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
SOURCE_ADDRS="${SOURCE_ADDRS:-127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4}"
OUT="${OUT:-$(mktemp -d -t meshmq-tls-bench.XXXXXX)}"
LOADTEST="$ROOT/target/release/loadtest"
MESHMQ="$ROOT/target/release/replicant-node"
mkdir -p "$OUT"
: >"$OUT/values.tsv"

log() { printf '== %s\n' "$*" >&2; }
for tool in openssl jq ss; do
    command -v "$tool" >/dev/null || { log "$tool is needed"; exit 1; }
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { log "ROUNDS must be a positive number"; exit 2; }
MOSQUITTO="$(command -v mosquitto || true)"
[[ -n "$MOSQUITTO" || ! -x /usr/sbin/mosquitto ]] || MOSQUITTO=/usr/sbin/mosquitto
if [[ -z "$MOSQUITTO" ]]; then
    log "mosquitto not found (apt-get install mosquitto): this benchmark compares with it; skipped"
    exit 0
fi
MOSQ_VERSION="$("$MOSQUITTO" -h 2>&1 | head -1 || true)"

BROKER_PID=""
BG_PIDS=()
cleanup() {
    local p
    for p in "${BG_PIDS[@]}" "$BROKER_PID"; do
        [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null && kill "$p" 2>/dev/null || true
    done
    for p in "${BG_PIDS[@]}" "$BROKER_PID"; do
        [[ -n "$p" ]] && wait "$p" 2>/dev/null || true
    done
    BROKER_PID=""
    BG_PIDS=()
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building loadtest and replicant-node (release)"
    cargo build --release --manifest-path "$ROOT/Cargo.toml" -p loadtest -p replicant-node
fi
[[ -x "$LOADTEST" ]] || { log "missing $LOADTEST"; exit 1; }
[[ -x "$MESHMQ" || "${MESHMQ_AS_MOSQUITTO:-0}" == 1 ]] || { log "missing $MESHMQ"; exit 1; }

# --- certificates: one CA, an ECDSA P-256 and an RSA 2048 server certificate -----------------
CERTS="$OUT/certs"
mkdir -p "$CERTS"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=meshmq bench CA" -keyout "$CERTS/ca.key" -out "$CERTS/ca.pem" 2>/dev/null
for kind in ecdsa rsa; do
    case "$kind" in
        ecdsa) keyopt=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
        rsa) keyopt=(-newkey rsa:2048) ;;
    esac
    openssl req -new "${keyopt[@]}" -nodes -subj "/CN=localhost" \
        -keyout "$CERTS/$kind.key" -out "$CERTS/$kind.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
        >"$CERTS/$kind.ext"
    openssl x509 -req -in "$CERTS/$kind.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" \
        -CAcreateserial -days 2 -extfile "$CERTS/$kind.ext" -out "$CERTS/$kind.pem" 2>/dev/null
done
CA="$CERTS/ca.pem"

# --- ports, brokers ---------------------------------------------------------------------------
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
wait_listening() { # port pid
    local deadline=$((SECONDS + 20))
    until port_busy "$1"; do
        kill -0 "$2" 2>/dev/null && ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
established() { ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l; }

start_mosquitto() { # cert tag -> BROKER_PID TLS_PORT TCP_PORT
    TLS_PORT="$(free_port)"; TCP_PORT="$(free_port)"
    cat >"$OUT/$2.conf" <<EOF
user $(id -un)
per_listener_settings false
allow_anonymous true
max_connections -1
persistence false
listener $TCP_PORT 127.0.0.1
listener $TLS_PORT 127.0.0.1
cafile $CA
certfile $CERTS/$1.pem
keyfile $CERTS/$1.key
EOF
    "$MOSQUITTO" -c "$OUT/$2.conf" >"$OUT/$2.log" 2>&1 &
    BROKER_PID=$!
    wait_listening "$TLS_PORT" "$BROKER_PID" && wait_listening "$TCP_PORT" "$BROKER_PID"
}

start_meshmq() { # cert tag -> BROKER_PID TLS_PORT TCP_PORT
    if [[ "${MESHMQ_AS_MOSQUITTO:-0}" == 1 ]]; then start_mosquitto "$@"; return; fi
    TLS_PORT="$(free_port)"; TCP_PORT="$(free_port)"
    cat >"$OUT/$2.toml" <<EOF
[listeners.ssl.default]
bind = "127.0.0.1:$TLS_PORT"
[listeners.ssl.default.ssl_options]
certfile = "$CERTS/$1.pem"
keyfile = "$CERTS/$1.key"
EOF
    mkdir -p "$OUT/$2-data"
    RUST_LOG=warn "$MESHMQ" --config "$OUT/$2.toml" --mqtt-bind "127.0.0.1:$TCP_PORT" \
        --ws-bind "127.0.0.1:$(free_port)" --http-bind "127.0.0.1:$(free_port)" \
        --data-dir "$OUT/$2-data" >"$OUT/$2.log" 2>&1 &
    BROKER_PID=$!
    wait_listening "$TCP_PORT" "$BROKER_PID" || return 1
    [[ "${NEED_TLS:-1}" == 1 ]] || return 0
    wait_listening "$TLS_PORT" "$BROKER_PID" || {
        log "meshmq serves no TLS on $TLS_PORT (this build has no ssl listener? see $OUT/$2.log)"
        return 1
    }
}

start_broker() { # broker cert tag
    if ! "start_$1" "$2" "$3"; then
        log "$1 did not start (see $OUT/$3.log)"; cleanup; return 1
    fi
    sleep 1 # let it settle before RSS and CPU baselines
}

put() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$OUT/values.tsv"; } # scen broker metric value

# --- scenarios --------------------------------------------------------------------------------
storm() { # broker cert tag extra-flags...
    local b=$1 cert=$2 tag=$3 pace=(-i 0); shift 3
    [[ "$HS_RATE" == 0 ]] || pace=(--rate "$HS_RATE")
    start_broker "$b" "$cert" "$tag" || return 1
    timeout --foreground --kill-after=5 $(((HS_CYCLES + 1) * (HS_HOLD + 60) + 30)) "$LOADTEST" storm \
        -h "localhost:$TLS_PORT" -c "$HS_CONNS" "${pace[@]}" --cycles "$HS_CYCLES" --hold "$HS_HOLD" \
        -k 300 --tls --cafile "$CA" --workers "$HS_WORKERS" --ifaddr "$SOURCE_ADDRS" \
        --broker-pid "$BROKER_PID" "$@" --json "$OUT/$tag.json" >"$OUT/$tag.txt" 2>&1 \
        || log "$tag: loadtest exit $? (see $OUT/$tag.txt)"
    cleanup
    [[ -s "$OUT/$tag.json" ]]
}

JQ_MEDIAN='def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end;'

scen_hs() { # broker cert
    local tag="hs-$2-$1-r$ROUND" f
    storm "$1" "$2" "$tag" || return 0
    f="$OUT/$tag.json"
    put "hs-$2" "$1" "conn/s" "$(jq "$JQ_MEDIAN"' [.cycles[].connects_per_sec] | median' "$f")"
    put "hs-$2" "$1" "per broker CPU s" \
        "$(jq "$JQ_MEDIAN"' [.cycles[].connects_per_broker_cpu_sec | select(. != null)] | median' "$f")"
    put "hs-$2" "$1" "connect p99 ms" "$(jq "$JQ_MEDIAN"' [.cycles[].connect_latency_us.p99 / 1000] | median' "$f")"
    put "hs-$2" "$1" "full handshakes" "$(jq '.figures.tls_full' "$f")"
    put "hs-$2" "$1" "failed connects" "$(jq '.figures.connect_failed' "$f")"
}

scen_resume() { # broker
    local tag="resume-$1-r$ROUND" f
    storm "$1" ecdsa "$tag" --tls-resume || return 0
    f="$OUT/$tag.json"
    put resume "$1" "conn/s" "$(jq "$JQ_MEDIAN"' [.cycles[1:][].connects_per_sec] | median' "$f")"
    put resume "$1" "per broker CPU s" \
        "$(jq "$JQ_MEDIAN"' [.cycles[1:][].connects_per_broker_cpu_sec | select(. != null)] | median' "$f")"
    put resume "$1" "connect p99 ms" "$(jq "$JQ_MEDIAN"' [.cycles[1:][].connect_latency_us.p99 / 1000] | median' "$f")"
    put resume "$1" "resumed share" \
        "$(jq '([.cycles[1:][].tls_resumed] | add) as $r | ([.cycles[1:][].connected] | add) as $n
            | if $n > 0 then $r / $n else null end' "$f")"
    put resume "$1" "failed connects" "$(jq '.figures.connect_failed' "$f")"
}

scen_idle() { # broker tls|tcp
    local b=$1 tag="idle-$2-$1-r$ROUND" port before after n lpid deadline flags=()
    NEED_TLS=0; [[ "$2" == tls ]] && NEED_TLS=1
    start_broker "$b" ecdsa "$tag" || return 0
    NEED_TLS=1
    if [[ "$2" == tls ]]; then port=$TLS_PORT; flags=(--tls --cafile "$CA"); else port=$TCP_PORT; fi
    before=$(rss_kb "$BROKER_PID")
    timeout --foreground --kill-after=5 $((IDLE_HOLD + 60)) "$LOADTEST" conn -h "localhost:$port" \
        -c "$IDLE_CONNS" --rate "$IDLE_RATE" --workers 2 -k 300 --ifaddr "$SOURCE_ADDRS" \
        "${flags[@]}" --duration "$IDLE_HOLD" --json "$OUT/$tag.json" >"$OUT/$tag.txt" 2>&1 &
    lpid=$!
    BG_PIDS+=("$lpid")
    deadline=$((SECONDS + IDLE_HOLD - 6))
    while ((SECONDS < deadline)) && kill -0 "$lpid" 2>/dev/null; do
        (($(established "$port") >= IDLE_CONNS)) && break
        sleep 0.5
    done
    sleep 2
    after=$(rss_kb "$BROKER_PID")
    n=$(established "$port")
    wait "$lpid" || log "$tag: loadtest exit $? (see $OUT/$tag.txt)"
    BG_PIDS=()
    cleanup
    put "idle-$2" "$b" "conns at sample" "$n"
    ((n > 0)) && put "idle-$2" "$b" "RSS B/conn" "$(((after - before) * 1024 / n))"
    return 0
}

scen_fanout() { # broker
    local tag="fanout-$1-r$ROUND" f
    start_broker "$1" ecdsa "$tag" || return 0
    timeout --foreground --kill-after=5 $((DURATION + WARMUP + 60)) "$LOADTEST" fanout \
        --host localhost --port "$TLS_PORT" --tls --cafile "$CA" --publishers "$FAN_PUBS" \
        --subscribers "$FAN_SUBS" --topic 'bench/%i' --filter 'bench/#' --qos 0 --size "$SIZE" \
        --duration "$DURATION" --warmup "$WARMUP" --threads 1 --broker-pid "$BROKER_PID" \
        --broker-name "$1" --scenario fanout-tls --json "$OUT/$tag.json" >"$OUT/$tag.txt" 2>&1 \
        || log "$tag: loadtest exit $? (see $OUT/$tag.txt)"
    cleanup
    f="$OUT/$tag.json"
    [[ -s "$f" ]] || return 0
    put fanout "$1" "delivered/s" "$(jq '.delivered_per_sec' "$f")"
    put fanout "$1" "broker CPU us/msg" "$(jq 'if .delivered_per_sec > 0 and .broker_cpu_percent != null
        then .broker_cpu_percent / 100 / .delivered_per_sec * 1e6 else null end' "$f")"
    put fanout "$1" "broker CPU %" "$(jq '.broker_cpu_percent' "$f")"
    put fanout "$1" "loadtest CPU %" "$(jq '.loadtest_cpu_percent' "$f")"
}

START="$(date -u '+%Y-%m-%d %H:%M UTC')"
log "output in $OUT; $MOSQ_VERSION"
for ROUND in $(seq 1 "$ROUNDS"); do
    for s in $SCENARIOS; do
        for b in $BROKERS; do
            log "$s $b round $ROUND/$ROUNDS"
            case "$s" in
                hs-ecdsa) scen_hs "$b" ecdsa ;;
                hs-rsa) scen_hs "$b" rsa ;;
                resume) scen_resume "$b" ;;
                idle-tls) scen_idle "$b" tls ;;
                idle-tcp) scen_idle "$b" tcp ;;
                fanout) scen_fanout "$b" ;;
                *) log "unknown scenario $s"; exit 2 ;;
            esac
        done
    done
done

# --- the table: medians over rounds, meshmq / mosquitto -----------------------------------------
report() {
    local as=""
    [[ "${MESHMQ_AS_MOSQUITTO:-0}" == 1 ]] && as=" (SELF-TEST: the meshmq column is a second mosquitto)"
    echo "meshmq TLS benchmark$as: $START; box: nproc $(nproc), kernel $(uname -r); $MOSQ_VERSION"
    echo "rounds $ROUNDS; storms $HS_CONNS clients x $((HS_CYCLES + 1)) phases at ${HS_RATE}/s (0: at once), $HS_WORKERS workers;" \
        "idle $IDLE_CONNS conns; fan-out $FAN_PUBS -> $FAN_SUBS QoS 0, $SIZE B, $DURATION s"
    awk -F'\t' -v rate="$HS_RATE" '
        { key = $1 SUBSEP $3; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
          if ($4 != "null" && $4 != "") v[$1, $3, $2] = v[$1, $3, $2] " " $4 }
        function median(s,   a, m, i, j, t) {
            m = split(s, a, " "); if (m == 0) return ""
            for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
            return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
        }
        function fmt(x) { return x == "" ? "n/a" : (x + 0 >= 100 ? sprintf("%.0f", x) : sprintf("%.2f", x)) }
        END {
            printf "%-9s %-22s %12s %12s %9s\n", "scenario", "metric", "meshmq", "mosquitto", "ratio"
            for (i = 1; i <= n; i++) {
                split(order[i], k, SUBSEP)
                a = median(v[k[1], k[2], "meshmq"]); b = median(v[k[1], k[2], "mosquitto"])
                r = (a != "" && b != "" && b + 0 != 0) ? sprintf("%.2f", a / b) : "n/a"
                printf "%-9s %-22s %12s %12s %9s\n", k[1], k[2], fmt(a), fmt(b), r
                med[k[1], k[2], "meshmq"] = a; med[k[1], k[2], "mosquitto"] = b
            }
            print ""
            # Handshakes per second: the rate each broker kept up with the same offered load.
            # When both reached it (>= 97% of HS_RATE) the load generator was the limit and
            # the rate says nothing: then the broker CPU per handshake decides.
            for (c = 1; c <= 3; c++) {
                s = (c == 1) ? "hs-ecdsa" : (c == 2) ? "hs-rsa" : "resume"
                a = med[s, "conn/s", "meshmq"]; b = med[s, "conn/s", "mosquitto"]
                ca = med[s, "per broker CPU s", "meshmq"]; cb = med[s, "per broker CPU s", "mosquitto"]
                if (a == "" || b == "" || b + 0 <= 0 || ca == "" || cb == "" || cb + 0 <= 0) {
                    printf "goal %-8s handshakes/s: n/a\n", s; continue
                }
                capped = (rate > 0 && a >= 0.97 * rate && b >= 0.97 * rate)
                ok = capped ? (ca / cb >= 1) : (a / b >= 1)
                printf "goal %-8s handshakes/s meshmq/mosquitto = %.2f, per broker CPU s = %.2f (%s): %s\n", s, a / b, ca / cb,
                    (capped ? "both at the offered rate: CPU decides" : "rate decides"), (ok ? "MET" : "NOT MET")
            }
            a = med["idle-tls", "RSS B/conn", "meshmq"]
            if (a != "") printf "goal idle TLS connection = %d B (<= 16384 B): %s\n", a, (a <= 16384 ? "MET" : "NOT MET")
            else print "goal idle TLS connection: n/a"
            a = med["idle-tcp", "RSS B/conn", "meshmq"]
            if (a != "") printf "guard idle TCP connection = %d B (was ~4200 B)\n", a
        }' "$OUT/values.tsv"
    echo "reports and broker logs: $OUT"
}
report | tee "$OUT/report.txt"
if [[ -n "${RESULTS:-}" ]]; then
    {
        echo
        echo "## $(date -u '+%Y-%m-%d') — tls.sh: meshmq vs mosquitto over TLS ($ROUNDS rounds)"
        echo
        echo "2 shared cores, noisy; medians of $ROUNDS rounds. \`loadtest/bench/tls.sh $ROUNDS\`"
        echo
        echo '```'
        cat "$OUT/report.txt"
        echo '```'
    } >>"$RESULTS"
fi
