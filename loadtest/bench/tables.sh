#!/usr/bin/env bash
# Tables at scale (issue 15, "Benchmarks"): starts a real release cluster (3 cores + 2
# replicants, scripts/dev-cluster --release), fills its tables through the cores' Transact
# with synthetic rows (core-node's `tables-bench`), and prints: commit rate, core and
# replicant RSS per registry row / subscription / retained byte, snapshot size and build time
# (a snapshot with log purge on every core, POST /api/v5/cluster/snapshot?purge=true), the
# time a fresh replicant takes to become ready from it, and the latency of a light Transact
# probe idle / while filling / while snapshots are built / while the fresh replicant joins.
#
# Usage: loadtest/bench/tables.sh [RUNS]          (RUNS defaults to 1; the cluster is fresh
#                                                   for every run)
# Environment (all optional; the TABLES_* ones go to tables-bench, see its --help):
#   TABLES_ROWS=200000            registry rows (clients)
#   TABLES_PERSISTENT_SHARE=0.1   share of them that are disconnected persistent sessions
#   TABLES_SUBS=5                 subscriptions per persistent session
#   TABLES_RETAINED=10000 TABLES_RETAINED_SIZE=1024   retained messages and payload bytes
#   TABLES_BATCH=1000 TABLES_IN_FLIGHT=8              clients per Transact, Transacts in flight
#   TABLES_MIN_AVAILABLE_MIB=3072 the fill stops when MemAvailable falls under it
#   TABLES_PROBE_HZ=20 TABLES_IDLE_SECS=10            the latency probe
#   TABLES_COMPACT_IN_TURN=true   compact the cores one after the other (10 M rows on 23 GiB)
#   BASE_PORT=26000  DIR=/tmp/meshmq-tables-bench     where the cluster lives (its logs stay)
#   SKIP_BUILD=1     do not run cargo build
#   RESULTS=FILE     also append the printed report to FILE
#
# Every wait is bounded (`timeout`); the cluster is stopped by a trap, even on error or
# Ctrl-C. Loopback only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUNS="${1:-${RUNS:-1}}"
BASE_PORT="${BASE_PORT:-26000}"
DIR="${DIR:-${TMPDIR:-/tmp}/meshmq-tables-bench}"
log() { printf '== %s\n' "$*" >&2; }

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building core-node (with tables-bench) and replicant-node (release)"
    timeout --foreground 3600 cargo build --release --manifest-path "$ROOT/Cargo.toml" \
        -p core-node -p replicant-node
fi
BIN="$ROOT/target/release"

cleanup() { "$ROOT/scripts/dev-cluster" down --dir "$DIR" >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM

for run in $(seq 1 "$RUNS"); do
    log "run $run/$RUNS: starting the cluster in $DIR (base port $BASE_PORT)"
    cleanup
    timeout --foreground 300 "$ROOT/scripts/dev-cluster" up --release --cores 3 --replicants 2 \
        --base-port "$BASE_PORT" --dir "$DIR" --no-build >/dev/null
    # Certificates of the same dev CA for the bench's client and the fresh replicant.
    "$BIN/core-node" gen-certs --out "$DIR/certs" --nodes bench,r-fresh >/dev/null
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    {
        echo "### run $run/$RUNS, $(date -u +%Y-%m-%dT%H:%MZ), commit $commit"
        timeout --foreground 7200 "$BIN/tables-bench" --dir "$DIR" --base-port "$BASE_PORT" \
            --replicant-bin "$BIN/replicant-node" --fresh-name r-fresh
    } | tee -a "${RESULTS:-/dev/null}"
    cleanup
done
