#!/usr/bin/env bash
# Retained replay under load (issue 12, part 8): a standalone broker holds RETAINED retained
# messages of SIZE bytes; PUBLISHERS publishers send RATE msg/s in total (QoS QOS) to a
# subscriber that times every message; after BEFORE s a subscriber to '#' joins at QoS
# SUB_QOS and counts its retained messages. Printed per scenario (median of RUNS runs, broker
# started fresh for every run): how many retained messages arrived (distinct), the replay's
# duration and rate, the publishers' publish->receive and PUBLISH->PUBACK p50/p99 before and
# during the replay, and the broker's RSS before and at most during the replay.
#
# Usage: loadtest/bench/retained_replay.sh [RUNS]      (RUNS defaults to 3)
# Environment (all optional):
#   RETAINED=100000 SIZE=100 PUBLISHERS=10 RATE=1000 QOS=1 BEFORE=5 AFTER=3 IDLE=5
#   LOADERS=100          connections storing the retained messages (more of them, bigger
#                        group commits: the load is one table transaction per message)
#   SUB_QOS="1 0"        the '#' subscriber's QoS, one scenario each
#   LIVE_RETAIN=1        the publishers' messages are retained too: each is a table write,
#                        which waits while the replica is read
#   BUILDS="label=PATH ..."  the replicant-node binaries to measure, run in turn within each
#                        run (default "meshmq=target/release/replicant-node"); e.g. add a build
#                        of an older commit, for comparison
#   SKIP_BUILD=1         do not run cargo build
#   OUT=DIR              JSON reports and broker logs (default: a temp dir)
#   RESULTS=FILE         also append the printed report to FILE (loadtest/bench/RESULTS.md)
#
# The binaries are copied at start (a rebuild during the run cannot change them); every run
# is bounded by `timeout`, and the broker is stopped by a trap, even on Ctrl-C.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUNS="${1:-${RUNS:-3}}"
RETAINED="${RETAINED:-100000}"
SIZE="${SIZE:-100}"
PUBLISHERS="${PUBLISHERS:-10}"
RATE="${RATE:-1000}"
QOS="${QOS:-1}"
BEFORE="${BEFORE:-5}"
AFTER="${AFTER:-3}"
IDLE="${IDLE:-5}"
LOADERS="${LOADERS:-100}"
LIVE_RETAIN="${LIVE_RETAIN:-0}"
LIVE_FLAG=()
[[ "$LIVE_RETAIN" == 1 ]] && LIVE_FLAG=(--live-retain)
SUB_QOS="${SUB_QOS:-1 0}"
BUILDS="${BUILDS:-meshmq=$ROOT/target/release/replicant-node}"
COMMAND="RETAINED=$RETAINED SIZE=$SIZE PUBLISHERS=$PUBLISHERS RATE=$RATE QOS=$QOS SUB_QOS=\"$SUB_QOS\" LIVE_RETAIN=$LIVE_RETAIN BUILDS=\"$BUILDS\" loadtest/bench/retained_replay.sh $RUNS"

log() { printf '== %s\n' "$*" >&2; }
command -v jq >/dev/null || { log "jq is needed"; exit 1; }
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building loadtest and replicant-node (release)"
    timeout --foreground 3600 cargo build --release --manifest-path "$ROOT/Cargo.toml" \
        -p loadtest -p replicant-node
fi
OUT="${OUT:-$(mktemp -d -t meshmq-retained-replay.XXXXXX)}"
mkdir -p "$OUT/bin"
cp "$ROOT/target/release/loadtest" "$OUT/bin/loadtest"
LABELS=()
for build in $BUILDS; do
    LABELS+=("${build%%=*}")
    cp "${build#*=}" "$OUT/bin/replicant-node-${build%%=*}"
done
LOADTEST="$OUT/bin/loadtest"

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

# Ports below the kernel's ephemeral range, so no outgoing connection can be holding one.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
EPHEMERAL_LOW="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((10000 + (RANDOM * 32768 + RANDOM) % (EPHEMERAL_LOW - 10000)))
        port_busy "$p" || { echo "$p"; return 0; }
    done
    log "no free port found"; return 1
}

start_broker() { # label port tag -> sets BROKER_PID
    local broker="$OUT/bin/replicant-node-$1"
    shift
    local data="$OUT/data-$2" deadline=$((SECONDS + 15))
    mkdir -p "$data"
    RUST_LOG=warn "$broker" --mqtt-bind "127.0.0.1:$1" --ws-bind "127.0.0.1:$(free_port)" \
        --http-bind "127.0.0.1:$(free_port)" --data-dir "$data" >"$OUT/$2.log" 2>&1 &
    BROKER_PID=$!
    while ((SECONDS < deadline)); do
        kill -0 "$BROKER_PID" 2>/dev/null || break
        port_busy "$1" && return 0
        sleep 0.05
    done
    log "broker did not start listening on $1 (see $OUT/$2.log)"
    cleanup
    return 1
}

for run in $(seq 1 "$RUNS"); do
    for sq in $SUB_QOS; do
        for label in "${LABELS[@]}"; do
            tag="$label-sub$sq-$run"
            port="$(free_port)"
            start_broker "$label" "$port" "$tag" || continue
            log "$tag (port $port)"
            timeout --kill-after=5 "$((BEFORE + AFTER + IDLE + 600))" "$LOADTEST" retained-replay \
                --port "$port" --retained "$RETAINED" --size "$SIZE" --loaders "$LOADERS" \
                --publishers "$PUBLISHERS" --rate "$RATE" --qos "$QOS" --sub-qos "$sq" \
                --before "$BEFORE" --after "$AFTER" --idle "$IDLE" "${LIVE_FLAG[@]}" \
                --broker-pid "$BROKER_PID" --broker-name "$label" \
                --json "$OUT/$tag.json" >"$OUT/$tag.txt" || log "$tag failed (exit $?)"
            cleanup
        done
    done
done

shopt -s nullglob
reports=("$OUT"/*.json)
((${#reports[@]} > 0)) || { log "no run produced a report"; exit 1; }
# Medians per (broker, subscriber QoS); p50/p99 in µs, RSS in MiB.
jq -rs --argjson runs "$RUNS" '
  def med: map(select(. != null)) | sort | if length == 0 then null else .[(length / 2 | floor)] end;
  def f0: if . == null then "-" else (. | round | tostring) end;
  def f1: if . == null then "-" else ((. * 10 | round) / 10 | tostring) end;
  def f2: if . == null then "-" else ((. * 100 | round) / 100 | tostring) end;
  def pair(a; b): "\(a | f0)/\(b | f0)";
  (group_by([.broker, .sub_qos]) | map(
    . as $g | {
      broker: $g[0].broker, sub_qos: $g[0].sub_qos, runs: length,
      received: (map(.distinct) | med), retained: $g[0].retained,
      secs: (map(.replay_secs) | med), rate: (map(.replay_rate) | med),
      suback: (map(.suback_ms) | med),
      d_b50: (map(.delivery.before.p50) | med), d_b99: (map(.delivery.before.p99) | med),
      d_d50: (map(.delivery.during.p50) | med), d_d99: (map(.delivery.during.p99) | med),
      a_b50: (map(.puback.before.p50) | med), a_b99: (map(.puback.before.p99) | med),
      a_d50: (map(.puback.during.p50) | med), a_d99: (map(.puback.during.p99) | med),
      rss_b: (map(.rss_before_mib) | med), rss_d: (map(.rss_during_max_mib) | med),
      errors: (map(.errors | length) | add)
    })) as $rows
  | ["broker", "sub QoS", "runs", "retained recv", "SUBACK ms", "replay s", "msg/s",
     "e2e p50/p99 before", "during", "puback p50/p99 before", "during", "RSS before", "max during", "errors"],
    ($rows[] | [.broker, (.sub_qos | tostring), (.runs | tostring),
      "\(.received | f0)/\(.retained)", (.suback | f1), (.secs | f2), (.rate | f0),
      pair(.d_b50; .d_b99), pair(.d_d50; .d_d99), pair(.a_b50; .a_b99), pair(.a_d50; .a_d99),
      (.rss_b | f1), (.rss_d | f1), (.errors | tostring)])
  | @tsv' "${reports[@]}" | column -t -s $'\t' >"$OUT/table.txt"

{
    live=""
    [[ "$LIVE_RETAIN" == 1 ]] && live="retained messages "
    echo "retained replay: $RETAINED retained x $SIZE B; '#' subscriber joins after ${BEFORE} s while" \
        "$PUBLISHERS publishers send $RATE msg/s (${live}QoS $QOS); median of $RUNS run(s)"
    echo "box: nproc $(nproc), kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC'); loadtest at commit" \
        "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); brokers: $BUILDS"
    echo "latencies in us by send time (before the SUBSCRIBE / from it to the last retained delivery); RSS in MiB"
    cat "$OUT/table.txt"
} | tee "$OUT/report.txt"
log "reports and per-run text in $OUT"

if [[ -n "${RESULTS:-}" ]]; then
    {
        echo
        echo "## $(date -u '+%Y-%m-%d') — retained replay under load (${LABELS[*]})"
        echo
        echo "Command: \`$COMMAND\`"
        echo
        echo '```'
        cat "$OUT/report.txt"
        echo '```'
    } >>"$RESULTS"
    log "appended to $RESULTS"
fi
