#!/usr/bin/env bash
# check.sh: a real Prometheus scraping a real dev cluster sees every node up and a series for
# every metric the Grafana dashboard (deploy/grafana/meshmq.json) queries. Not in the default
# test command: it needs the distribution's `prometheus` binary (skipped with a message, exit
# 0, when it is missing) and starts 5 processes.
#
#   deploy/prometheus/check.sh [--no-build] [--release] [--bin-dir DIR] [--base-port 26000]
#                              [--cores 3] [--replicants 2]
#   deploy/prometheus/check.sh --print-config [--base-port B] [--cores N] [--replicants M]
#
# It starts `scripts/dev-cluster up` in a temporary directory (--no-build / --release /
# --bin-dir are passed on), Prometheus on 127.0.0.1:(base + 700) with a 1 s scrape interval,
# drives a little MQTT traffic with mosquitto_pub/mosquitto_sub when they are installed
# (a subscriber on r1, publishes on r2 forwarded to it, one publish nobody receives, a
# persistent session left disconnected on r2, then an evacuation of r2 so its progress
# metrics exist, and a CONNECT it refuses), waits (polling, bounded) until every target has been scraped twice and
# every dashboard metric has a series, and fails naming what is missing. The counters of
# failures it does not provoke (NOT_PROVOKED below) are listed, not required. Everything it
# started is stopped by a trap. --print-config prints the scrape config for those ports.
set -euo pipefail

# Dashboard metrics whose series only exist once their event happened, and which this script
# does not cause: a peer link's drops and publishers paused by back-pressure; and a
# listener's own cap, which only exists when a listener sets max_connections (the dev
# cluster's do not).
NOT_PROVOKED="meshmq_peer_messages_dropped_total meshmq_publish_backpressure_total meshmq_listener_max_connections"

root="$(cd "$(dirname "$0")/../.." && pwd)"
base=26000
cores=3
replicants=2
print_config=0
cluster_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --base-port) base=$2; shift 2 ;;
    --cores) cores=$2; shift 2 ;;
    --replicants) replicants=$2; shift 2 ;;
    --no-build|--release) cluster_args+=("$1"); shift ;;
    --bin-dir) cluster_args+=("$1" "$2"); shift 2 ;;
    --print-config) print_config=1; shift ;;
    *) echo "check.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

config() { # scrape interval
  printf 'global:\n  scrape_interval: %s\n  evaluation_interval: %s\n\nscrape_configs:\n' "$1" "$1"
  printf '  - job_name: meshmq-core\n    metrics_path: /metrics\n    static_configs:\n'
  for i in $(seq 1 "$cores"); do
    printf '      - targets: ["127.0.0.1:%d"]\n        labels: { node: core-%d }\n' $((base + 100 + i)) "$i"
  done
  printf '  - job_name: meshmq-replicant\n    metrics_path: /metrics\n    static_configs:\n'
  for j in $(seq 1 "$replicants"); do
    printf '      - targets: ["127.0.0.1:%d"]\n        labels: { node: r%d }\n' $((base + 400 + j)) "$j"
  done
}

if [ "$print_config" = 1 ]; then config 15s; exit 0; fi

prometheus=${PROMETHEUS:-prometheus}
if ! command -v "$prometheus" >/dev/null 2>&1; then
  echo "check.sh: SKIPPED: no '$prometheus' binary (install prometheus or set PROMETHEUS=/path)"
  exit 0
fi
for tool in curl python3; do
  command -v $tool >/dev/null 2>&1 || { echo "check.sh: $tool is needed" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/meshmq-prom-check.XXXXXX")
prom_pid=""
sub_pid=""
sub2_pid=""
cleanup() {
  for pid in $sub_pid $sub2_pid $prom_pid; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $sub_pid $sub2_pid $prom_pid; do
    wait "$pid" 2>/dev/null || true
  done
  "$root/scripts/dev-cluster" down --dir "$work/cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "check.sh: starting a dev cluster ($cores cores, $replicants replicants, base port $base)"
"$root/scripts/dev-cluster" up --cores "$cores" --replicants "$replicants" --base-port "$base" \
  --dir "$work/cluster" "${cluster_args[@]}" > "$work/endpoints.json"

prom_port=$((base + 700))
prom="http://127.0.0.1:$prom_port"
config 1s > "$work/prometheus.yml"
"$prometheus" --config.file "$work/prometheus.yml" --storage.tsdb.path "$work/tsdb" \
  --web.listen-address "127.0.0.1:$prom_port" > "$work/prometheus.log" 2>&1 &
prom_pid=$!
echo "check.sh: prometheus $("$prometheus" --version 2>&1 | head -1 | awk '{print $3}') on 127.0.0.1:$prom_port, pid $prom_pid"

# poll SECONDS DESCRIPTION COMMAND...: run COMMAND every 0.5 s until it succeeds or the
# deadline passes.
poll() {
  local secs=$1 what=$2
  local deadline=$((SECONDS + secs))
  shift 2
  until "$@"; do
    if [ $SECONDS -ge $deadline ]; then echo "check.sh: FAILED: $what after $secs s" >&2; return 1; fi
    if ! kill -0 "$prom_pid" 2>/dev/null; then
      echo "check.sh: FAILED: prometheus exited:" >&2; tail -20 "$work/prometheus.log" >&2; return 1
    fi
    sleep 0.5
  done
}
query() { curl -fsS --max-time 5 "$prom/api/v1/query" --data-urlencode "query=$1"; }
poll 30 "prometheus ready" curl -fs --max-time 2 -o /dev/null "$prom/-/ready"

if command -v mosquitto_pub >/dev/null 2>&1 && command -v mosquitto_sub >/dev/null 2>&1; then
  r1=$((base + 201)); r2=$((base + 202))
  echo "check.sh: traffic: subscriber on r1, publishes on r2, a persistent session left on r2"
  mosquitto_sub -h 127.0.0.1 -p "$r1" -i check-sub -q 1 -t meshmq/check -C 5 -W 60 > "$work/sub.out" 2> "$work/sub.err" &
  sub_pid=$!
  # The subscription must be in every replicant's routes before r2 publishes.
  routed() { [ "$(query 'sum(meshmq_subscriptions)' | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)')" -ge 1 ]; }
  poll 30 "the subscription counted" routed
  mosquitto_sub -h 127.0.0.1 -p "$r2" -i check-persistent -c -q 1 -t meshmq/persist -E
  # MQTT 5, so that the evacuation's DISCONNECT 0x9C is sent (and counted).
  mosquitto_sub -h 127.0.0.1 -p "$r2" -V mqttv5 -i check-evicted -q 0 -t meshmq/evicted -W 60 \
    > /dev/null 2> "$work/evicted.err" &
  sub2_pid=$!
  delivered() {
    mosquitto_pub -h 127.0.0.1 -p "$r2" -i check-pub -q 1 -t meshmq/check -m hello
    mosquitto_pub -h 127.0.0.1 -p "$r2" -i check-pub-nobody -q 0 -t meshmq/nobody -m lost
    [ "$(wc -l < "$work/sub.out")" -ge 1 ]
  }
  poll 30 "a message from r2 delivered on r1" delivered
  echo "check.sh: evacuating r2 (then stopping the evacuation)"
  curl -fsS --max-time 5 -X POST -H 'content-type: application/json' \
    -d '{"wait_health_check": 0, "wait_takeover": 0, "conn_evict_rate": 100, "sess_evict_rate": 100}' \
    "http://127.0.0.1:$((base + 402))/api/v5/load_rebalance/r2/evacuation/start" > "$work/evac.out" \
    || echo "check.sh: note: evacuation start refused: $(cat "$work/evac.out" 2>/dev/null)"
  evacuated() { ! kill -0 "$sub2_pid" 2>/dev/null; }
  poll 30 "r2's connection evicted" evacuated || true
  # Sessions move after connections: stopping before the persistent one moved would leave
  # the migration counter without a series.
  migrated() { curl -fsS --max-time 2 "http://127.0.0.1:$((base + 402))/metrics" | grep '^meshmq_evacuation_sessions_migrated_total' > /dev/null; }
  poll 30 "r2's persistent session migrated" migrated || true
  # r2 refuses CONNECTs while it is evacuated.
  mosquitto_pub -h 127.0.0.1 -p "$r2" -i check-refused -t meshmq/check -m refused 2> "$work/refused.err" \
    && echo "check.sh: note: r2 accepted a CONNECT while evacuated"
  curl -fsS --max-time 5 -X POST "http://127.0.0.1:$((base + 402))/api/v5/load_rebalance/r2/evacuation/stop" >/dev/null \
    || echo "check.sh: note: evacuation stop refused"
else
  echo "check.sh: note: mosquitto_pub/mosquitto_sub missing: no MQTT traffic, event metrics may have no series"
fi

# Every target up, each scraped at least twice.
targets=$((cores + replicants))
scraped_twice() {
  query 'count_over_time(up[10m])' | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
ok = len(r) == int(sys.argv[1]) and all(int(x["value"][1]) >= 2 for x in r)
sys.exit(0 if ok else 1)' "$targets"
}
poll 60 "every target scraped twice" scraped_twice
curl -fsS --max-time 5 "$prom/api/v1/targets?state=active" | python3 -c '
import json, sys
ts = json.load(sys.stdin)["data"]["activeTargets"]
down = [t["scrapeUrl"] + ": " + t["health"] + " " + t.get("lastError", "") for t in ts if t["health"] != "up"]
for t in ts:
    print("  target %-16s %-6s %s %s" % (t["labels"]["job"], t["labels"].get("node", ""), t["scrapeUrl"], t["health"]))
if len(ts) != int(sys.argv[1]) or down:
    sys.exit("check.sh: FAILED: targets not up: %s (%d of %s)" % (down, len(ts), sys.argv[1]))' "$targets"

# The metric names of the dashboard's queries (the same rules as
# core-node/tests/dashboard_metrics.rs).
python3 - "$root/deploy/grafana/meshmq.json" > "$work/names" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1]))
exprs = []
def walk(ps):
    for p in ps:
        exprs.extend(t["expr"] for t in p.get("targets", []))
        walk(p.get("panels", []))
walk(d["panels"])
for v in d["templating"]["list"]:
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    if v.get("type") == "query" and q.startswith("label_values("):
        exprs.append(q[len("label_values("):].rsplit(",", 1)[0])
words = {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right",
         "sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk",
         "quantile", "count_values"}
names = set()
for e in exprs:
    e = re.sub(r'"(\\.|[^"\\])*"', "", e)
    e = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\$\w+", "", e)
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", e):
        if not m.group(2) and m.group(1).lower() not in words:
            names.add(m.group(1))
print("\n".join(sorted(names)))
PY
echo "check.sh: the dashboard queries $(wc -l < "$work/names") metrics"
missing() {
  local regex
  regex=$(paste -sd'|' "$work/names")
  query "group by (__name__) ({__name__=~\"$regex\"})" | python3 -c '
import json, sys
have = {r["metric"]["__name__"] for r in json.load(sys.stdin)["data"]["result"]}
want = [l.strip() for l in open(sys.argv[1]) if l.strip()]
skip = set(sys.argv[2].split())
print(" ".join(n for n in want if n not in have and n not in skip))' "$work/names" "$NOT_PROVOKED" > "$work/missing"
  [ ! -s "$work/missing" ] || [ "$(cat "$work/missing")" = "" ]
}
if ! poll 60 "every dashboard metric has a series" missing; then
  echo "check.sh: FAILED: no series for: $(cat "$work/missing")" >&2
  exit 1
fi
query 'count by (job) (process_resident_memory_bytes)' | python3 -c '
import json, sys
for r in json.load(sys.stdin)["data"]["result"]:
    print("  process metrics from %s job: %s nodes" % (r["metric"]["job"], r["value"][1]))'
echo "check.sh: not required (their events were not provoked): $NOT_PROVOKED"
echo "check.sh: OK: $targets targets up, scraped twice; every dashboard metric has a series"
