#!/usr/bin/env bash
# Test of terraform/scripts/lifecycle-handler against a real local cluster.
#
#   terraform/tests/test_lifecycle_handler.sh [--bin-dir DIR] [--base-port B]
#
# Starts `scripts/dev-cluster up --bin-dir DIR` (3 cores, 2 replicants, ports from B,
# default 27000; DIR default target/debug), connects three persistent-session MQTT 5 clients
# (mosquitto_sub -c -x 3600) to r1, serves a fake IMDSv2 on loopback (tests/fake_imds.py:
# InService twice, then Terminated) and puts a fake `aws` that records its arguments in
# front of the handler. Then:
#   1. a bad setting (no ASG_NAME) exits 2 and calls nothing;
#   2. an unreachable API: the handler exits 1 and still completes the hook with CONTINUE;
#   3. the real run: exit 0, heartbeats sent, complete-lifecycle-action with CONTINUE for the
#      instance id and region from IMDS, r1 `prohibiting`, the three sessions held by r2.
# The cluster is always taken down (trap). Needs curl, python3, mosquitto_sub.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
bin_dir="$root/target/debug"
base=27000
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --base-port) base=$2; shift 2 ;;
    *) echo "usage: $0 [--bin-dir DIR] [--base-port B]" >&2; exit 2 ;;
  esac
done
for tool in curl python3 mosquitto_sub; do
  command -v "$tool" >/dev/null || { echo "test_lifecycle_handler: $tool is missing" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/meshmq-tf-lifecycle.XXXXXX")
cluster="$work/cluster"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  "$root/scripts/dev-cluster" down --dir "$cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; [ -f "$work/handler.log" ] && sed 's/^/  handler: /' "$work/handler.log" >&2; exit 1; }
ok() { echo "ok: $*"; }

# Waits (with a deadline) until the command succeeds.
wait_for() { # seconds, description, command...
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${secs}s waiting for $what"
    sleep 0.2
  done
}

"$root/scripts/dev-cluster" up --bin-dir "$bin_dir" --base-port "$base" --dir "$cluster" >/dev/null
r1_api="127.0.0.1:$((base + 401))"
r2_api="127.0.0.1:$((base + 402))"

# Three persistent sessions on r1 (clean start off, session expiry one hour).
for i in 1 2 3; do
  mosquitto_sub -V 5 -h 127.0.0.1 -p $((base + 201)) -c -i "tf-lc-$i" -x 3600 -q 1 \
    -t "tf/lc/$i" >/dev/null 2>&1 &
  pids+=($!)
done

# "node:connected" of the clients named tf-lc-* as the API on $1 lists them, sorted.
clients_on() {
  curl -fsS --max-time 5 "http://$1/api/v5/clients?limit=100" | python3 -c '
import json, sys
rows = json.load(sys.stdin)["data"]
print(" ".join(sorted("%s:%s:%s" % (r["clientid"], r["node"], r["connected"]) for r in rows if r["clientid"].startswith("tf-lc-"))))'
}
want_on_r1="tf-lc-1:r1:True tf-lc-2:r1:True tf-lc-3:r1:True"
r1_has_clients() { [ "$(clients_on "$r1_api")" = "$want_on_r1" ]; }
wait_for 20 "three clients connected to r1" r1_has_clients
ok "three persistent sessions connected to r1"

# The fake IMDS and the fake aws CLI.
python3 "$root/terraform/tests/fake_imds.py" --port-file "$work/imds.port" \
  --instance-id i-0fake0000test --region eu-north-1 --in-service 2 &
pids+=($!)
wait_for 10 "the fake IMDS" test -s "$work/imds.port"
imds="http://127.0.0.1:$(cat "$work/imds.port")"
mkdir -p "$work/bin"
cat > "$work/bin/aws" <<FAKE
#!/usr/bin/env bash
echo "region=\${AWS_REGION:-} \$*" >> "$work/aws.log"
FAKE
chmod +x "$work/bin/aws"

# The handler runs the real evacuate-and-wait command
# (`ctl rebalance start --evacuation --wait-done SECS`) of this tree's replicant-node.
meshmq_bin="$bin_dir/replicant-node"

run_handler() { # extra env assignments...
  env -u AWS_REGION -u AWS_DEFAULT_REGION ASG_NAME=meshmq-test-asg \
    LIFECYCLE_HOOK_NAME=meshmq-test-scale-in MESHMQ_BIN="$meshmq_bin" MESHMQ_API="$r1_api" \
    EVACUATE_TIMEOUT=60 EVACUATE_ARGS="--wait-health-check 1 --wait-takeover 3" \
    HEARTBEAT_EVERY=1 POLL_SECS=1 IMDS_ENDPOINT="$imds" AWS_CLI="$work/bin/aws" "$@" \
    timeout 120 "$root/terraform/scripts/lifecycle-handler" > "$work/handler.log" 2>&1
}

# 0. The connections metric: r1 publishes its 3 connections for the group.
publish() {
  env ASG_NAME=meshmq-test-asg MESHMQ_API="$r1_api" AWS_CLI="$work/bin/aws" \
    "$root/terraform/scripts/publish-connections" 2>>"$work/publish.log"
}
publish || fail "publish-connections failed: $(cat "$work/publish.log")"
grep -q -- "cloudwatch put-metric-data --namespace Meshmq --metric-name ConnectionsPerNode --unit Count --dimensions AutoScalingGroupName=meshmq-test-asg --value 3$" "$work/aws.log" \
  || fail "no ConnectionsPerNode=3 published: $(cat "$work/aws.log")"
rm -f "$work/aws.log"
ok "publish-connections: ConnectionsPerNode 3 for the group"

# 1. A bad setting: exit 2, nothing called.
rc=0; run_handler ASG_NAME= || rc=$?
[ "$rc" = 2 ] || fail "without ASG_NAME the handler exited $rc, not 2"
[ ! -e "$work/aws.log" ] || fail "without ASG_NAME the handler called aws"
ok "no ASG_NAME: exit 2, no aws call"

# 2. The node's API unreachable: the evacuation fails, the hook is completed anyway, exit 1.
rc=0; run_handler MESHMQ_API=127.0.0.1:1 EVACUATE_TIMEOUT=5 || rc=$?
[ "$rc" = 1 ] || fail "with an unreachable API the handler exited $rc, not 1"
grep -q "autoscaling complete-lifecycle-action .*--lifecycle-action-result CONTINUE" "$work/aws.log" \
  || fail "with an unreachable API the hook was not completed: $(cat "$work/aws.log")"
[ "$(clients_on "$r1_api")" = "$want_on_r1" ] || fail "the failed run moved clients"
ok "unreachable API: exit 1, hook completed with CONTINUE"
rm -f "$work/aws.log"

# 3. The real run.
rc=0; run_handler || rc=$?
[ "$rc" = 0 ] || fail "the handler exited $rc"
expected="region=eu-north-1 --cli-connect-timeout 5 --cli-read-timeout 20 autoscaling complete-lifecycle-action --auto-scaling-group-name meshmq-test-asg --lifecycle-hook-name meshmq-test-scale-in --instance-id i-0fake0000test --lifecycle-action-result CONTINUE"
grep -qF -- "$expected" "$work/aws.log" || fail "no complete-lifecycle-action as expected in: $(cat "$work/aws.log")"
[ "$(grep -c complete-lifecycle-action "$work/aws.log")" = 1 ] || fail "the hook was completed more than once"
grep -q "record-lifecycle-action-heartbeat --auto-scaling-group-name meshmq-test-asg" "$work/aws.log" \
  || fail "no heartbeat while evacuating: $(cat "$work/aws.log")"
[ "$(tail -n1 "$work/aws.log" | grep -c complete-lifecycle-action)" = 1 ] \
  || fail "complete-lifecycle-action was not the last call"
ok "handler exit 0; heartbeat sent; hook completed with CONTINUE for i-0fake0000test in eu-north-1"

status=$(curl -fsS --max-time 5 "http://$r1_api/api/v5/load_rebalance/status")
echo "$status" | grep -q '"state":"prohibiting"' || fail "r1 is not prohibiting: $status"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$r1_api/api/v5/load_rebalance/availability_check")
[ "$code" = 503 ] || fail "r1's availability check answers $code, not 503"
ok "r1 prohibiting, availability check 503"

# A leaving node publishes no connection count.
rm -f "$work/aws.log"
publish || fail "publish-connections failed on an evacuated node"
[ ! -e "$work/aws.log" ] || fail "an evacuated node published a metric: $(cat "$work/aws.log")"
ok "publish-connections: nothing from the evacuated node"

want_on_r2="tf-lc-1:r2:False tf-lc-2:r2:False tf-lc-3:r2:False"
got=$(clients_on "$r2_api")
[ "$got" = "$want_on_r2" ] || fail "sessions on r2: '$got', expected '$want_on_r2'"
ok "the three sessions live on r2"
echo "test_lifecycle_handler: all passed"
