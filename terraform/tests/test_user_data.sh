#!/usr/bin/env bash
# Test of the user data the AWS modules render: the scripts are valid bash, and the
# replicant's rendered configuration runs a real node that joins a local cluster.
#
#   terraform/tests/test_user_data.sh [--bin-dir DIR] [--base-port B]
#
# Renders the core, replicant and monitoring templates with `terraform console`
# (render_user_data.py; ports moved to loopback test ports from B), checks them with
# bash -n, runs three core-nodes from exactly the rendered core environments (they must
# elect a leader; their API needs the key), starts `scripts/dev-cluster up --bin-dir DIR
# --base-port B`, gives a third
# replicant exactly the rendered replicant.env and replicant.toml (paths moved into a
# scratch dir, the instance id i-0userdatatest, the shared `replicant` certificate under
# that name as put-secrets and the user data do) and the rendered HAProxy health shim, and
# asserts: the node becomes ready and is listed by the cluster; its API needs the key from
# the bootstrap file; the shim answers the availability check only behind a PROXY header
# and refuses other paths; an MQTT client behind a PROXY v2 header from a trusted address
# connects with a built-in-database user and shows the header's address; a client without
# a header, or without credentials, is refused. Needs terraform, haproxy, curl, python3.
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
for tool in terraform haproxy curl python3; do
  command -v "$tool" >/dev/null || { echo "test_user_data: $tool is missing" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/meshmq-tf-userdata.XXXXXX")
cluster="$work/cluster"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  "$root/scripts/dev-cluster" down --dir "$cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$work/node.log" ] && grep -v "^ " "$work/node.log" | head -n 15 >&2; exit 1; }
ok() { echo "ok: $*"; }
wait_for() { # seconds, description, command...
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${secs}s waiting for $what"
    sleep 0.2
  done
}

r="$work/rendered"
python3 "$root/terraform/tests/render_user_data.py" --out "$r" --base-port "$base"
for s in core replicant monitoring; do
  bash -n "$r/$s.sh" || fail "$s user data is not valid bash"
  if command -v shellcheck >/dev/null; then
    shellcheck -S warning "$r/$s.sh" || fail "shellcheck warns about the rendered $s user data"
  fi
done
# The heredoc body ends with the blank line before its terminator: drop it, then compare.
cmp -s <(sed -e '$!b' -e '/^$/d' "$r/meshmq-lifecycle") "$root/terraform/scripts/lifecycle-handler" \
  || fail "the user data installs a meshmq-lifecycle that differs from terraform/scripts/lifecycle-handler"
cmp -s <(sed -e '$!b' -e '/^$/d' "$r/meshmq-connections") "$root/terraform/scripts/publish-connections" \
  || fail "the user data installs a meshmq-connections that differs from terraform/scripts/publish-connections"
grep -q '^ASG_NAME=test-replicants$' "$r/lifecycle.env" && grep -q '^LIFECYCLE_HOOK_NAME=meshmq-evacuate$' "$r/lifecycle.env" \
  || fail "lifecycle.env does not name the group and the hook: $(cat "$r/lifecycle.env")"
grep -q "^MESHMQ_CORE__INITIAL_MEMBERS=1=localhost:$((base + 811)),2=" "$r/core-1.env" \
  || fail "core.env has no initial members"
ok "core, replicant and monitoring user data render and parse; the handler is installed as written"

# Runs a node from a rendered env file, logging to $1.
run_rendered() { # log, env file, command...
  local log=$1 envfile=$2; shift 2
  (
    while IFS= read -r line; do
      case "$line" in ''|'#'*) continue ;; esac
      export "${line?}"
    done < "$envfile"
    exec "$@"
  ) > "$log" 2>&1 &
  pids+=($!)
}
etc="$work/etc/meshmq"
node="i-0userdatatest"
localize() { # rendered env -> the same with scratch paths and this test's instance
  sed -e "s|/etc/meshmq|$etc|g" -e "s|/var/lib/meshmq|$work/var|g" -e "s|\$instance_id|$node|g" \
    -e 's|\$private_ip|127.0.0.1|g' "$1"
}
mkdir -p "$etc/certs" "$work/var/replicant"

# 1. Three cores from the rendered core user data (certificates from a CA of their own,
# no CA key, the API key file as put-secrets makes it) elect a leader.
"$bin_dir/core-node" gen-certs --out "$work/core-ca" --nodes core-1,core-2,core-3 >/dev/null
cp "$work/core-ca/ca.pem" "$work/core-ca"/core-*.pem "$work/core-ca"/core-*.key "$etc/certs/"
# The CA's key never reaches an instance, not even as a placeholder.
! grep -q 'ca\.key' "$r/core.sh" || fail "the core user data writes a ca.key"
[ ! -e "$etc/certs/ca.key" ] || fail "a ca.key is in the core's certificate directory"
core_key=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077 && echo "$core_key" > "$etc/core-api-key")
for i in 1 2 3; do
  localize "$r/core-$i.env" | sed "s|$work/var/core|$work/var/core-$i|" > "$work/core-$i.env"
  run_rendered "$work/core-$i.log" "$work/core-$i.env" "$bin_dir/core-node"
done
core1="http://127.0.0.1:$((base + 821))"
voters() {
  curl -fs --max-time 2 -H "Authorization: Bearer $core_key" "$core1/api/v5/cluster" | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if d.get("leader_id") and sum(1 for m in d.get("members", []) if m.get("voter")) == 3 else 1)' 2>/dev/null
}
wait_for 30 "the rendered cores to elect a leader with 3 voters" voters
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$core1/api/v5/cluster")
[ "$code" = 401 ] || fail "a rendered core's cluster API answered $code without the key, not 401"
ok "three cores from the rendered core user data: a leader, three voters, the API needs the key"

# 2. A replicant from the rendered replicant user data, next to a dev cluster (whose CA it
# gets instead of the cores' above).
"$root/scripts/dev-cluster" up --bin-dir "$bin_dir" --base-port "$base" --dir "$cluster" >/dev/null
r1_api="127.0.0.1:$((base + 401))"
http="127.0.0.1:$((base + 411))"
mqtt_port=$((base + 211))
health_port=$((base + 711))

# What put-secrets and the user data provide: the CA certificate, the shared replicant
# certificate under the node's name, the API key file.
"$bin_dir/core-node" gen-certs --out "$cluster/certs" --nodes replicant >/dev/null
cp "$cluster/certs/ca.pem" "$etc/certs/ca.pem"
cp "$cluster/certs/replicant.pem" "$etc/certs/$node.pem"
cp "$cluster/certs/replicant.key" "$etc/certs/$node.key"
# No CA key, as on an instance.
# The CA's key never reaches an instance, not even as a placeholder.
! grep -q 'ca\.key' "$r/replicant.sh" || fail "the replicant user data writes a ca.key"
[ ! -e "$etc/certs/ca.key" ] || fail "a ca.key is in the replicant's certificate directory"
api_key="admin:$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
(umask 077 && echo "$api_key" > "$etc/api-keys")
localize "$r/replicant.env" > "$work/replicant.env"
cp "$r/replicant.toml" "$work/replicant.toml"
grep -q '\$' "$work/replicant.env" && fail "unfilled shell variables in replicant.env: $(grep '\$' "$work/replicant.env")"

run_rendered "$work/node.log" "$work/replicant.env" "$bin_dir/replicant-node" --config "$work/replicant.toml"
health_ok() { curl -fs --max-time 2 -o /dev/null "http://$http/health"; }
wait_for 30 "the rendered replicant to become ready" health_ok
listed() { curl -fsS --max-time 5 -u "$api_key" "http://$r1_api/api/v5/nodes" 2>/dev/null | grep -q "\"$node\"" \
  || curl -fsS --max-time 5 -u "$api_key" "http://$http/api/v5/nodes" | grep -q "\"$node\""; }
wait_for 20 "the cluster to list $node" listed
ok "the replicant from the rendered env is ready and in the cluster as $node"

code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$http/api/v5/nodes")
[ "$code" = 401 ] || fail "the API answered $code without a key, not 401"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -u "$api_key" "http://$http/api/v5/nodes")
[ "$code" = 200 ] || fail "the API answered $code with the bootstrap key"
ok "the API needs the key from the bootstrap file"

haproxy -f "$r/haproxy.cfg" -db > "$work/haproxy.log" 2>&1 &
pids+=($!)
shim_up() { (exec 3<>"/dev/tcp/127.0.0.1/$health_port") 2>/dev/null; }
wait_for 10 "the health shim" shim_up
shim="http://127.0.0.1:$health_port"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --haproxy-protocol "$shim/api/v5/load_rebalance/availability_check")
[ "$code" = 200 ] || fail "the shim answered $code to the availability check behind a PROXY header"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --haproxy-protocol "$shim/api/v5/nodes")
[ "$code" = 403 ] || fail "the shim answered $code for another path, not 403"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$shim/api/v5/load_rebalance/availability_check" || true)
[ "$code" != 200 ] || fail "the shim answered 200 without a PROXY header"
ok "health shim: 200 behind PROXY, 403 elsewhere, nothing without the header"

curl -fsS --max-time 5 -u "$api_key" -H 'Content-Type: application/json' \
  -d '{"user_id": "demo", "password": "demo-password-1"}' \
  "http://$http/api/v5/authentication/password_based:built_in_database/users" >/dev/null
mqtt() { python3 "$root/terraform/tests/mqtt_via_proxy.py" 127.0.0.1 "$mqtt_port" "$@"; }
got=$(mqtt ud-no-header --user demo --password demo-password-1)
[ "$got" = closed ] || fail "a client without a PROXY header got CONNACK $got"
got=$(mqtt ud-anon --proxy-from 203.0.113.7:40001)
[ "$got" = 5 ] || fail "a client without credentials got '$got', not CONNACK 5 (not authorized)"
mqtt ud-proxied --proxy-from 203.0.113.7:40002 --user demo --password demo-password-1 > "$work/conn.out" &
pids+=($!)
wait_for 10 "the proxied client's CONNACK" test -s "$work/conn.out"
[ "$(cat "$work/conn.out")" = 0 ] || fail "the proxied client got CONNACK $(cat "$work/conn.out")"
client=$(curl -fsS --max-time 5 -u "$api_key" "http://$http/api/v5/clients/ud-proxied")
echo "$client" | grep -q '"203.0.113.7"' || fail "the client's address is not the PROXY header's: $client"
ok "MQTT behind PROXY v2: authenticated user connects as 203.0.113.7; no header or no credentials refused"
echo "test_user_data: all passed"
