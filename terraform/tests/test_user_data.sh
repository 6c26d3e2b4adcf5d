#!/usr/bin/env bash
# Test of the user data the AWS modules render: the scripts are valid bash, and the
# replicant's rendered configuration runs a real node that joins a local cluster.
#
#   terraform/tests/test_user_data.sh [--bin-dir DIR] [--base-port B]
#
# Renders the core, replicant and monitoring templates with `terraform console`
# (render_user_data.py; replicant ports moved to loopback test ports from B), checks them
# with bash -n, starts `scripts/dev-cluster up --bin-dir DIR --base-port B`, gives a third
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
for s in core replicant monitoring; do bash -n "$r/$s.sh" || fail "$s user data is not valid bash"; done
# The heredoc body ends with the blank line before its terminator: drop it, then compare.
cmp -s <(sed -e '$!b' -e '/^$/d' "$r/meshmq-lifecycle") "$root/terraform/scripts/lifecycle-handler" \
  || fail "the user data installs a meshmq-lifecycle that differs from terraform/scripts/lifecycle-handler"
cmp -s <(sed -e '$!b' -e '/^$/d' "$r/meshmq-connections") "$root/terraform/scripts/publish-connections" \
  || fail "the user data installs a meshmq-connections that differs from terraform/scripts/publish-connections"
grep -q '^ASG_NAME=test-replicants$' "$r/lifecycle.env" && grep -q '^LIFECYCLE_HOOK_NAME=meshmq-evacuate$' "$r/lifecycle.env" \
  || fail "lifecycle.env does not name the group and the hook: $(cat "$r/lifecycle.env")"
grep -q '^MESHMQ_CORE__INITIAL_MEMBERS=1=core-1.test.meshmq.internal:4370,2=' "$r/core.env" \
  || fail "core.env has no initial members"
ok "core, replicant and monitoring user data render and parse; the handler is installed as written"

"$root/scripts/dev-cluster" up --bin-dir "$bin_dir" --base-port "$base" --dir "$cluster" >/dev/null
r1_api="127.0.0.1:$((base + 401))"
node=i-0userdatatest
http="127.0.0.1:$((base + 411))"
mqtt_port=$((base + 211))
health_port=$((base + 711))

# What put-secrets and the user data provide: the CA certificate, the shared replicant
# certificate under the node's name, the API key file.
"$bin_dir/core-node" gen-certs --out "$cluster/certs" --nodes replicant >/dev/null
etc="$work/etc/meshmq"
mkdir -p "$etc/certs" "$work/var/replicant"
cp "$cluster/certs/ca.pem" "$etc/certs/ca.pem"
cp "$cluster/certs/replicant.pem" "$etc/certs/$node.pem"
cp "$cluster/certs/replicant.key" "$etc/certs/$node.key"
# No CA key, as on an instance: only the user data's empty placeholder.
grep -q '^install -m 0400 -o root -g root /dev/null /etc/meshmq/certs/ca.key$' "$r/replicant.sh" \
  || fail "the replicant user data no longer writes the ca.key placeholder: update this test"
: > "$etc/certs/ca.key"
api_key="admin:$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
(umask 077 && echo "$api_key" > "$etc/api-keys")
sed -e "s|/etc/meshmq|$etc|g" -e "s|/var/lib/meshmq|$work/var|g" -e "s|\$instance_id|$node|g" \
  -e 's|\$private_ip|127.0.0.1|g' "$r/replicant.env" > "$work/replicant.env"
cp "$r/replicant.toml" "$work/replicant.toml"
grep -q '\$' "$work/replicant.env" && fail "unfilled shell variables in replicant.env: $(grep '\$' "$work/replicant.env")"

(
  while IFS= read -r line; do
    case "$line" in ''|'#'*) continue ;; esac
    export "${line?}"
  done < "$work/replicant.env"
  exec "$bin_dir/replicant-node" --config "$work/replicant.toml"
) > "$work/node.log" 2>&1 &
pids+=($!)
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
