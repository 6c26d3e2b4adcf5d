#!/usr/bin/env bash
# 80 x 1 MB retained, log purge, new replicant (issue 15, "Done means" point 2).
#
# A release cluster from scripts/dev-cluster (3 cores + 2 replicants, default settings):
#  1. COUNT retained QoS 1 messages of SIZE bytes (random, one file each) are published to
#     r1 with mosquitto_pub on big/00 .. big/NN;
#  2. the log is purged past index 1 (a replicant starting empty asks for index 1: it must get
#     the snapshot), in one of two ways (PURGE):
#     - `api` (default): one connect storm (STORM_CLIENTS x STORM_CYCLES, 52 000 connects as
#       in the issue) on r1 and r2, then every core is asked to build a snapshot and purge
#       its log up to it (POST /api/v5/cluster/snapshot?purge=true, the operator's compaction).
#       The cores run with every default, their snapshot policy included;
#     - `storms`: connect storms until the cores' own policy has built a snapshot and purged.
#       The default policy builds one every 50 000 entries and keeps 50 000 behind it, so
#       index 1 goes with the second snapshot (~100 000 entries); with group commit a storm
#       of 50 000 connects is ~1 200 entries on this box, which puts that 25-40 minutes of
#       storms away. So in this mode the cores run with --snapshot-every SNAPSHOT_EVERY and
#       --keep-after-snapshot KEEP_AFTER_SNAPSHOT (through a wrapper), which change when the
#       snapshot is built, not what it holds or how it is sent;
#  3. a NEW replicant (r3, empty data dir, a certificate from the same dev CA) is started
#     following the cores, as dev-cluster starts one. Required: its MQTT port opens within
#     READY_SECS, and a '#' subscriber on it receives all COUNT retained messages, each
#     byte-exact (length and content).
# Prints the snapshot size (core log "raft snapshot built"), the storms' figures, the time to
# ready and the replay time, then PASS or FAIL; exits non-zero on FAIL.
#
# Usage: loadtest/bench/retained_snapshot.sh
# Environment (all optional):
#   COUNT=80 SIZE=1000000 READY_SECS=60 SUB_SECS=120
#   PURGE=api            or storms (see 2. above)
#   SNAPSHOT_EVERY=1000 KEEP_AFTER_SNAPSHOT=200   (PURGE=storms only)
#   STORM_CLIENTS=13000 STORM_RATE=5000 STORM_CYCLES=4   one storm round (repeated with
#                        PURGE=storms)
#   STORM_MAX_SECS=1200  give up writing entries after this long (FAIL)
#   SKIP_BUILD=1         do not run cargo build
#   OUT=DIR              logs, payloads and the cluster dir (default: a temp dir)
#   RESULTS=FILE         also append the printed report to FILE (loadtest/bench/RESULTS.md)
#
# The binaries are copied at start and dev-cluster runs from a shadow root with a no-op
# cargo (as in cross_node.sh). Loopback only; every wait has a deadline; a trap stops the
# cluster and the new replicant on exit, error, Ctrl-C or timeout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
COUNT="${COUNT:-80}"
SIZE="${SIZE:-1000000}"
READY_SECS="${READY_SECS:-60}"
SUB_SECS="${SUB_SECS:-120}"
SNAPSHOT_EVERY="${SNAPSHOT_EVERY:-1000}"
KEEP_AFTER_SNAPSHOT="${KEEP_AFTER_SNAPSHOT:-200}"
STORM_CLIENTS="${STORM_CLIENTS:-13000}"
PURGE="${PURGE:-api}"
case "$PURGE" in api | storms) ;; *) echo "PURGE must be api or storms" >&2; exit 2 ;; esac
STORM_RATE="${STORM_RATE:-5000}"
STORM_CYCLES="${STORM_CYCLES:-4}"
STORM_MAX_SECS="${STORM_MAX_SECS:-1200}"
COMMAND="PURGE=$PURGE COUNT=$COUNT SIZE=$SIZE READY_SECS=$READY_SECS SNAPSHOT_EVERY=$SNAPSHOT_EVERY KEEP_AFTER_SNAPSHOT=$KEEP_AFTER_SNAPSHOT STORM_CLIENTS=$STORM_CLIENTS STORM_RATE=$STORM_RATE STORM_CYCLES=$STORM_CYCLES loadtest/bench/retained_snapshot.sh"

log() { printf '== %s\n' "$*" >&2; }
for tool in mosquitto_pub mosquitto_sub curl python3; do
    command -v "$tool" >/dev/null || { log "$tool is needed (apt-get install mosquitto-clients curl python3)"; exit 1; }
done
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building core-node, replicant-node and loadtest (release)"
    timeout --foreground 3600 cargo build --release --manifest-path "$ROOT/Cargo.toml" \
        -p core-node -p replicant-node -p loadtest
fi
OUT="${OUT:-$(mktemp -d -t meshmq-retained-snapshot.XXXXXX)}"
BIN="$OUT/bin"
SHADOW="$OUT/shadow"
CLUSTER_DIR="$OUT/cluster"
mkdir -p "$BIN" "$SHADOW/scripts" "$SHADOW/target/release" "$SHADOW/nocargo" "$OUT/payloads"
for b in loadtest replicant-node core-node; do
    [[ -x "$ROOT/target/release/$b" ]] || { log "missing $ROOT/target/release/$b"; exit 1; }
    cp "$ROOT/target/release/$b" "$BIN/$b"
done
ln -sf "$BIN/replicant-node" "$SHADOW/target/release/replicant-node"
if [[ "$PURGE" == storms ]]; then
    # The cores get the snapshot interval from their environment through a wrapper (not this
    # script's environment: a replicant refuses MESHMQ_ variables it does not know).
    printf '#!/bin/sh\nMESHMQ_CORE__SNAPSHOT_EVERY=%s MESHMQ_CORE__KEEP_AFTER_SNAPSHOT=%s exec "%s" "$@"\n' \
        "$SNAPSHOT_EVERY" "$KEEP_AFTER_SNAPSHOT" "$BIN/core-node" >"$SHADOW/target/release/core-node"
    chmod +x "$SHADOW/target/release/core-node"
else
    ln -sf "$BIN/core-node" "$SHADOW/target/release/core-node"
fi
ln -sf "$ROOT/scripts/dev-cluster" "$SHADOW/scripts/dev-cluster"
printf '#!/bin/sh\nexit 0\n' >"$SHADOW/nocargo/cargo"
chmod +x "$SHADOW/nocargo/cargo"
dev_cluster() { PATH="$SHADOW/nocargo:$PATH" timeout --foreground 120 "$SHADOW/scripts/dev-cluster" "$@"; }

# --- ports (below the ephemeral range), cleanup ---------------------------------------------
tcp_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
udp_busy() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v h=":$hex" 'NR > 1 && substr($2, length($2) - 4) == h { found = 1 } END { exit !found }' \
        /proc/net/udp /proc/net/udp6 2>/dev/null
}
EPHEMERAL_LOW="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
pick_base() { # a base whose every dev-cluster port (3 cores, 3 replicants) is free
    local b p ok
    for _ in $(seq 1 200); do
        b=$((10000 + (RANDOM * 32768 + RANDOM) % (EPHEMERAL_LOW - 10700)))
        ok=1
        for p in $((b + 1)) $((b + 2)) $((b + 3)) $((b + 101)) $((b + 102)) $((b + 103)); do
            (tcp_busy "$p" || udp_busy "$p") && { ok=0; break; }
        done
        for j in 1 2 3; do
            for p in $((b + 200 + j)) $((b + 300 + j)) $((b + 400 + j)) $((b + 500 + j)); do
                (tcp_busy "$p" || udp_busy "$p") && { ok=0; break; }
            done
        done
        ((ok)) && { echo "$b"; return 0; }
    done
    log "no free port range found"; return 1
}
BASE=$(pick_base)
R1=$((BASE + 201)); R2=$((BASE + 202)); R3=$((BASE + 203)); R3_HTTP=$((BASE + 403))
R3_PID=""
CLUSTER_UP=0
cleanup() {
    if [[ -n "$R3_PID" ]] && kill -0 "$R3_PID" 2>/dev/null; then
        kill "$R3_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$R3_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$R3_PID" 2>/dev/null || true
    fi
    R3_PID=""
    if ((CLUSTER_UP)); then
        dev_cluster down --dir "$CLUSTER_DIR" >/dev/null 2>&1 || log "dev-cluster down failed"
        CLUSTER_UP=0
        rm -rf "$CLUSTER_DIR/data"
    fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

metric() { # url name -> sum of every series of that metric (0 if absent)
    curl -fsS --max-time 5 -H "Authorization: Bearer $(cat "$CLUSTER_DIR/api-key")" "$1" 2>/dev/null \
        | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%.0f\n", s }'
}
core_metrics() { echo "http://127.0.0.1:$((BASE + 100 + $1))/metrics"; }
now_ms() { date +%s%3N; }

FAIL=""
fail() { FAIL="${FAIL:+$FAIL; }$*"; log "FAIL: $*"; }

# --- 1. cluster, retained messages ----------------------------------------------------------
log "cluster: 3 cores + 2 replicants, base port $BASE; output in $OUT"
dev_cluster up --release --cores 3 --replicants 2 --base-port "$BASE" --dir "$CLUSTER_DIR" \
    >"$OUT/endpoints.json" 2>"$OUT/up.log" || { log "dev-cluster up failed (see $OUT/up.log)"; exit 1; }
CLUSTER_UP=1

log "publishing $COUNT retained messages of $SIZE B to r1 ($R1)"
t0=$(now_ms)
for i in $(seq -w 0 $((COUNT - 1))); do
    head -c "$SIZE" /dev/urandom >"$OUT/payloads/$i"
    timeout 60 mosquitto_pub -h 127.0.0.1 -p "$R1" -V mqttv5 -q 1 -r -i "big-pub-$i" \
        -t "big/$i" -f "$OUT/payloads/$i" || { fail "publishing big/$i"; break; }
done
publish_ms=$(($(now_ms) - t0))

# --- 2. entries until a core purged its log past index 1 ------------------------------------
first_index() { # core -> first index held in its log (last + 1 - entries)
    local url last entries
    url=$(core_metrics "$1")
    last=$(metric "$url" meshmq_raft_last_log_index)
    entries=$(metric "$url" meshmq_raft_log_entries)
    echo $((last + 1 - entries))
}
purged() { # every core holds a snapshot and its log starts after index 1
    local i
    for i in 1 2 3; do
        (($(metric "$(core_metrics "$i")" meshmq_raft_snapshots_total) >= 1)) || return 1
        (($(first_index "$i") > 1)) || return 1
    done
}
storm_start=$SECONDS
rounds=0
while [[ -z "$FAIL" ]] && ! purged; do
    if ((SECONDS - storm_start > STORM_MAX_SECS)); then
        fail "no core purged its log within ${STORM_MAX_SECS} s of connect storms"
        break
    fi
    rounds=$((rounds + 1))
    log "storm round $rounds: $STORM_CLIENTS clients x $STORM_CYCLES cycles at $STORM_RATE/s;" \
        "core-1 last index $(metric "$(core_metrics 1)" meshmq_raft_last_log_index)," \
        "first index $(first_index 1)"
    timeout --kill-after=5 900 "$BIN/loadtest" storm -h "127.0.0.1:$R1,127.0.0.1:$R2" \
        -c "$STORM_CLIENTS" --rate "$STORM_RATE" --cycles "$STORM_CYCLES" --prefix "storm$rounds" \
        --timeout 20 --json "$OUT/storm-$rounds.json" >"$OUT/storm-$rounds.txt" 2>&1 \
        || log "storm round $rounds exited $? (see $OUT/storm-$rounds.txt)"
    if [[ "$PURGE" == api ]]; then
        for i in 1 2 3; do
            log "core-$i: snapshot and purge through the API"
            curl -fsS --max-time 620 -X POST \
                -H "Authorization: Bearer $(cat "$CLUSTER_DIR/api-key")" \
                "http://127.0.0.1:$((BASE + 100 + i))/api/v5/cluster/snapshot?purge=true" \
                >"$OUT/compact-$i.json" 2>"$OUT/compact-$i.err" \
                || fail "core-$i: POST /api/v5/cluster/snapshot?purge=true failed ($(cat "$OUT/compact-$i.err"))"
            log "core-$i: $(cat "$OUT/compact-$i.json" 2>/dev/null)"
        done
    fi
    # The last snapshot may still be in the making: give it a little time (bounded).
    for _ in $(seq 1 50); do purged && break; sleep 0.2; done
    if [[ "$PURGE" == api ]] && [[ -z "$FAIL" ]] && ! purged; then
        fail "the cores' logs still start at index 1 after the API's snapshot and purge"
    fi
done
storm_secs=$((SECONDS - storm_start))
last_index=$(metric "$(core_metrics 1)" meshmq_raft_last_log_index)
first1=$(first_index 1)
# The core logs may carry ANSI colours: strip them before reading `bytes=N`.
snap_bytes=$(sed 's/\x1b\[[0-9;]*m//g' "$CLUSTER_DIR"/logs/core-*.log | grep 'raft snapshot built' \
    | sed -n 's/.*bytes=\([0-9]*\).*/\1/p' | sort -n | tail -1)
snap_builds=$(grep -h 'raft snapshot built' "$CLUSTER_DIR"/logs/core-*.log | wc -l)
log "after $rounds storm round(s) in ${storm_secs} s: core-1 last index $last_index, first index $first1;" \
    "$snap_builds snapshot(s) built, largest ${snap_bytes:-?} bytes"

# --- 3. a new replicant ---------------------------------------------------------------------
ready_ms=""
replay_ms=""
received=""
n_good=""
if [[ -z "$FAIL" ]]; then
    "$BIN/core-node" gen-certs --out "$CLUSTER_DIR/certs" --nodes r3 >/dev/null
    core_list="127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2)),127.0.0.1:$((BASE + 3))"
    log "starting a new replicant r3 (MQTT $R3)"
    t0=$(now_ms)
    MESHMQ_CLUSTER__PEER_BIND="127.0.0.1:$((BASE + 503))" "$BIN/replicant-node" --node-name r3 \
        --core "$core_list" --certs-dir "$CLUSTER_DIR/certs" --mqtt-bind "127.0.0.1:$R3" \
        --ws-bind "127.0.0.1:$((BASE + 303))" --http-bind "127.0.0.1:$R3_HTTP" \
        --data-dir "$OUT/r3-data" >"$OUT/r3.log" 2>&1 &
    R3_PID=$!
    deadline=$((SECONDS + READY_SECS))
    until tcp_busy "$R3"; do
        kill -0 "$R3_PID" 2>/dev/null || { fail "r3 exited (see $OUT/r3.log)"; break; }
        ((SECONDS < deadline)) || { fail "r3's MQTT port did not open within ${READY_SECS} s"; break; }
        sleep 0.1
    done
    [[ -z "$FAIL" ]] && ready_ms=$(($(now_ms) - t0))
fi
if [[ -z "$FAIL" ]]; then
    log "r3 ready after ${ready_ms} ms; subscribing to '#' on it"
    t0=$(now_ms)
    timeout --kill-after=5 $((SUB_SECS + 10)) mosquitto_sub -h 127.0.0.1 -p "$R3" -V mqttv5 -q 1 \
        -i big-sub -t '#' --retained-only -C "$COUNT" -W "$SUB_SECS" -N -F '%t %l %p\n' \
        >"$OUT/received.bin" 2>"$OUT/sub.err" || log "mosquitto_sub exited $? (see $OUT/sub.err)"
    replay_ms=$(($(now_ms) - t0))
    # Each record: topic, length, then exactly that many payload bytes and a newline.
    received=$(python3 - "$OUT/received.bin" "$OUT/payloads" "$SIZE" <<'EOF'
import os, sys
data = open(sys.argv[1], "rb").read()
want_dir, size = sys.argv[2], int(sys.argv[3])
pos, good, bad = 0, set(), []
while pos < len(data):
    sp1 = data.index(b" ", pos); sp2 = data.index(b" ", sp1 + 1)
    topic = data[pos:sp1].decode(); length = int(data[sp1 + 1:sp2])
    payload = data[sp2 + 1:sp2 + 1 + length]
    pos = sp2 + 1 + length + 1
    name = topic.removeprefix("big/")
    path = os.path.join(want_dir, name)
    if topic.startswith("big/") and os.path.exists(path) and length == size \
            and payload == open(path, "rb").read():
        good.add(topic)
    else:
        bad.append(f"{topic}:{length}")
print(len(good), " ".join(bad[:5]))
EOF
) || received="0 unparsable"
    n_good=${received%% *}
    ((n_good == COUNT)) || fail "r3's '#' subscriber got $n_good of $COUNT byte-exact retained messages (${received#* })"
fi
r3_snap_installs=$( [[ -n "$R3_PID" ]] && metric "http://127.0.0.1:$R3_HTTP/metrics" meshmq_replica_snapshot_installs_total || echo -)
r3_snap_bytes=$( [[ -n "$R3_PID" ]] && metric "http://127.0.0.1:$R3_HTTP/metrics" meshmq_replica_snapshot_bytes_received_total || echo -)
r3_snap_chunks=$( [[ -n "$R3_PID" ]] && metric "http://127.0.0.1:$R3_HTTP/metrics" meshmq_replica_snapshot_chunks_received_total || echo -)
[[ -n "$R3_PID" && -z "$FAIL" ]] && ((r3_snap_installs < 1)) \
    && fail "r3 installed no snapshot (the log was not purged far enough for this experiment)"
follow_ended=$(grep -c 'follow stream ended' "$OUT/r3.log" 2>/dev/null || true)

{
    echo "80 x 1 MB retained, purge, new replicant (issue 15): $COUNT retained x $SIZE B on a release"
    if [[ "$PURGE" == api ]]; then
        echo "3-core + 2-replicant dev-cluster, every setting default; log purged by POST /api/v5/cluster/snapshot?purge=true on each core;"
    else
        echo "3-core + 2-replicant dev-cluster, default settings but snapshot every $SNAPSHOT_EVERY entries, $KEEP_AFTER_SNAPSHOT kept;"
    fi
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "publish ${COUNT} retained (mosquitto_pub, QoS 1, one at a time): ${publish_ms} ms"
    echo "storms: $rounds round(s) of $STORM_CLIENTS clients x $STORM_CYCLES cycles at $STORM_RATE/s, ${storm_secs} s;" \
        "core-1 log: last index $last_index, first index $first1; snapshots built (all cores): $snap_builds, largest ${snap_bytes:-?} bytes"
    echo "new replicant r3: MQTT port open after ${ready_ms:--} ms (bound ${READY_SECS} s);" \
        "snapshot installs $r3_snap_installs, chunks $r3_snap_chunks, bytes $r3_snap_bytes; 'follow stream ended' in its log: $follow_ended"
    echo "'#' subscriber on r3: ${n_good:--} byte-exact of $COUNT in ${replay_ms:--} ms ${received#* }"
    if [[ -z "$FAIL" ]]; then echo "PASS"; else echo "FAIL: $FAIL"; fi
} | tee "$OUT/report.txt"
log "logs in $OUT (cluster logs in $CLUSTER_DIR/logs, r3 in $OUT/r3.log)"
if [[ -n "${RESULTS:-}" ]]; then
    {
        echo
        echo "## $(date -u '+%Y-%m-%d') — 80 × 1 MB retained, purge, new replicant (issue 15)"
        echo
        echo "Command: \`$COMMAND\`"
        echo
        echo '```'
        cat "$OUT/report.txt"
        echo '```'
    } >>"$RESULTS"
    log "appended to $RESULTS"
fi
rm -rf "$OUT/payloads" "$OUT/received.bin"
[[ -z "$FAIL" ]]
