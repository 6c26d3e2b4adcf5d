#!/usr/bin/env bash
# Evacuation under load: how many connections a replicant evacuates per second and how many
# QoS 1 messages of persistent sessions are lost (must be 0: an evacuated client takes its
# session along, or finds it migrated; docs/architecture.md, "Evacuation and rebalance").
#
#   scripts/dev-cluster up --release --cores 3 --replicants 3 (ports from a free base B)
#   SUBS persistent MQTT 5 subscribers on r1 (`loadtest sub -C false -x 3600 -q 1 -t evac/%i`,
#     following Server References, the default)
#   SUBS publishers on r2, one per subscriber (`loadtest pub -q 1 -t evac/%i -I INTERVAL`)
#   after WARM s: POST r3's API /api/v5/load_rebalance/r1/evacuation/start with
#     conn_evict_rate RATE, redirect_to r2's MQTT address, wait_health_check 0
#   then r1's status until `prohibiting`; the publishers stop, the subscribers drain.
#
# Printed: connections evicted, the eviction time and rate (r1's own status), redirects the
# subscribers followed, messages published / received and lost / duplicated / out of order
# (sequence numbers per publisher, so a gap is a lost message).
#
# Usage: loadtest/bench/evacuation.sh
# Environment (all optional):
#   SUBS=2000 RATE=500 INTERVAL=1000 (ms between two messages of one publisher)
#   WARM=5 (s of traffic before the evacuation) DURATION=30 (s the publishers run)
#   SKIP_BUILD=1   do not build (use target/release as it is)
#   OUT=DIR        reports and logs (default: a temp dir)
#   RESULTS=FILE   also append the printed report to FILE (e.g. loadtest/bench/RESULTS.md)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SUBS="${SUBS:-2000}"
RATE="${RATE:-500}"
INTERVAL="${INTERVAL:-1000}"
WARM="${WARM:-5}"
DURATION="${DURATION:-30}"
COMMAND="SUBS=$SUBS RATE=$RATE INTERVAL=$INTERVAL WARM=$WARM DURATION=$DURATION loadtest/bench/evacuation.sh"

log() { printf '== %s\n' "$*" >&2; }
command -v jq >/dev/null || { log "jq is needed"; exit 1; }
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building (release)"
    timeout --foreground 3600 cargo build --release --manifest-path "$ROOT/Cargo.toml" \
        -p loadtest -p replicant-node -p core-node
fi
OUT="${OUT:-$(mktemp -d -t meshmq-evacuation.XXXXXX)}"
mkdir -p "$OUT/bin" "$OUT/shadow/scripts" "$OUT/shadow/target/release" "$OUT/shadow/nocargo"
for b in loadtest replicant-node core-node; do cp "$ROOT/target/release/$b" "$OUT/bin/$b"; done
ln -sf "$OUT/bin/replicant-node" "$OUT/shadow/target/release/replicant-node"
ln -sf "$OUT/bin/core-node" "$OUT/shadow/target/release/core-node"
ln -sf "$ROOT/scripts/dev-cluster" "$OUT/shadow/scripts/dev-cluster"
printf '#!/bin/sh\nexit 0\n' >"$OUT/shadow/nocargo/cargo"
chmod +x "$OUT/shadow/nocargo/cargo"
LOADTEST="$OUT/bin/loadtest"

# A free port range below the ephemeral one: cores B+1.., replicants B+201.., HTTP B+401..
tcp_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
EPHEMERAL_LOW="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
BASE=""
for _ in $(seq 1 100); do
    b=$((10000 + (RANDOM * 32768 + RANDOM) % (EPHEMERAL_LOW - 11000)))
    ok=1
    for p in $((b + 1)) $((b + 101)) $((b + 201)) $((b + 202)) $((b + 203)) $((b + 401)) $((b + 403)) $((b + 501)); do
        tcp_busy "$p" && { ok=0; break; }
    done
    ((ok)) && { BASE=$b; break; }
done
[[ -n "$BASE" ]] || { log "no free port range"; exit 1; }
CLUSTER="$OUT/cluster"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    PATH="$OUT/shadow/nocargo:$PATH" timeout 30 "$OUT/shadow/scripts/dev-cluster" down --dir "$CLUSTER" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

log "cluster: 3 cores + 3 replicants, base port $BASE, output in $OUT"
RUST_LOG=warn PATH="$OUT/shadow/nocargo:$PATH" timeout 120 "$OUT/shadow/scripts/dev-cluster" up --release \
    --cores 3 --replicants 3 --base-port "$BASE" --dir "$CLUSTER" >"$OUT/endpoints.json" 2>"$OUT/up.log"
R1="127.0.0.1:$((BASE + 201))"
R2="127.0.0.1:$((BASE + 202))"
H1="127.0.0.1:$((BASE + 401))"
H3="127.0.0.1:$((BASE + 403))"

log "$SUBS persistent subscribers on r1, $SUBS publishers on r2 (QoS 1, one message per ${INTERVAL} ms each)"
timeout $((DURATION + 120)) "$LOADTEST" sub -h "$R1" -c "$SUBS" --rate 2000 -V 5 -C false -x 3600 -q 1 \
    -t 'evac/%i' --duration $((DURATION + 15)) --json "$OUT/sub.json" >"$OUT/sub.txt" 2>&1 &
SUB_PID=$!
PIDS+=("$SUB_PID")
deadline=$((SECONDS + 60))
until [[ "$(curl -fsS --max-time 5 "http://$H1/metrics" | awk '$1 == "meshmq_sessions" { print int($2) }')" -ge "$SUBS" ]]; do
    ((SECONDS < deadline)) || { log "subscribers not connected after 60 s (see $OUT/sub.txt)"; exit 1; }
    sleep 0.5
done
timeout $((DURATION + 60)) "$LOADTEST" pub -h "$R2" -c "$SUBS" --rate 2000 -V 5 -q 1 -t 'evac/%i' -s 64 \
    -I "$INTERVAL" --duration "$DURATION" --json "$OUT/pub.json" >"$OUT/pub.txt" 2>&1 &
PUB_PID=$!
PIDS+=("$PUB_PID")
sleep "$WARM"

log "evacuating r1 at $RATE connections/s, redirect to r2 ($R2)"
body="{\"wait_health_check\": 0, \"conn_evict_rate\": $RATE, \"sess_evict_rate\": $RATE, \"redirect_to\": \"$R2\", \"wait_takeover\": 10}"
curl -fsS --max-time 10 -X POST "http://$H3/api/v5/load_rebalance/r1/evacuation/start" \
    -H 'content-type: application/json' -d "$body" >"$OUT/start.json"
deadline=$((SECONDS + SUBS / RATE + 60))
while :; do
    curl -fsS --max-time 5 "http://$H1/api/v5/load_rebalance/status" >"$OUT/status.json" || true
    [[ "$(jq -r '.state // ""' "$OUT/status.json")" == prohibiting ]] && break
    ((SECONDS < deadline)) || { log "evacuation not done in time (see $OUT/status.json)"; break; }
    sleep 0.5
done
wait "$PUB_PID" || log "pub exit $? (see $OUT/pub.txt)"
wait "$SUB_PID" || log "sub exit $? (see $OUT/sub.txt)"
PIDS=()
for i in 1 2 3; do
    curl -fsS --max-time 5 "http://127.0.0.1:$((BASE + 400 + i))/metrics" >"$OUT/r$i.metrics" 2>/dev/null || true
done

report() {
    local ev secs
    ev=$(jq -r '.stats.evicted_connections // 0' "$OUT/status.json")
    secs=$(jq -r '.connection_eviction_secs // 0' "$OUT/status.json")
    echo "meshmq evacuation under load: $(date -u '+%Y-%m-%d %H:%M') UTC; box: nproc $(nproc)"
    echo "dev-cluster 3 cores + 3 replicants (release); $SUBS persistent MQTT 5 QoS 1 subscribers on r1, publishers on r2"
    printf '%-34s %s\n' "state of r1 at the end" "$(jq -r '.state // "n/a"' "$OUT/status.json")"
    printf '%-34s %s\n' "connections evicted" "$ev"
    printf '%-34s %s\n' "eviction time s (last eviction)" "$secs"
    printf '%-34s %s\n' "all connections closed after s" "$(jq -r '.connections_closed_secs // "n/a"' "$OUT/status.json")"
    printf '%-34s %s\n' "connections evacuated/s" "$(awk -v e="$ev" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? e / s : 0) }')"
    printf '%-34s %s\n' "configured conn_evict_rate/s" "$RATE"
    printf '%-34s %s\n' "sessions left on r1" "$(jq -r '.stats.current_sessions // "n/a"' "$OUT/status.json")"
    printf '%-34s %s\n' "subscriber redirects followed" "$(jq -r '.figures.redirects' "$OUT/sub.json")"
    printf '%-34s %s\n' "published (acked)" "$(jq -r '"\(.figures.published) (\(.figures.acked))"' "$OUT/pub.json")"
    printf '%-34s %s\n' "received" "$(jq -r '.figures.received' "$OUT/sub.json")"
    printf '%-34s %s\n' "lost / duplicated / out of order" "$(jq -r '.figures | "\(.lost) / \(.duplicated) / \(.out_of_order)"' "$OUT/sub.json")"
    printf '%-34s %s\n' "subscriber errors" "$(jq -c '.figures.errors' "$OUT/sub.json")"
    printf 'target QoS 1 persistent sessions lose nothing: %s\n' \
        "$(jq -r 'if .figures.lost == 0 then "MET" else "NOT MET" end' "$OUT/sub.json")"
    echo "reports and logs in $OUT"
}
report | tee "$OUT/report.txt"
if [[ -n "${RESULTS:-}" ]]; then
    {
        echo
        echo "## $(date -u '+%Y-%m-%d') — evacuation under load"
        echo
        echo "Command: \`$COMMAND\`"
        echo
        echo '```'
        cat "$OUT/report.txt"
        echo '```'
    } >>"$RESULTS"
    log "appended to $RESULTS"
fi
