#!/usr/bin/env bash
# Test of the user data the AWS modules render: the scripts are valid bash, and the rendered
# configuration runs a real cluster: three cores and two replicants.
#
#   terraform/tests/test_user_data.sh [--bin-dir DIR] [--base-port B]
#
# Renders the core, replicant and monitoring templates with `terraform console`
# (render_user_data.py; ports moved to loopback test ports from B) and checks them with
# bash -n. Runs put-secrets (with a fake `aws` that stores each parameter as a file: the
# fake Parameter Store) and checks what it writes. Runs three core-nodes from exactly the
# rendered core environments, with their certificates from that store (they must elect a
# leader; their API needs the key). Gives two replicants (instance ids i-0userdata1 and
# i-0userdata2) exactly the rendered replicant.env and replicant.toml (paths moved into a
# scratch dir per instance) and runs the rendered node-certificate block of the user data
# for each (fetch_param reading the fake store): each must hold a certificate whose common
# name is its instance id and no CA key anywhere. A CA key that does not match the CA must
# stop the block and leave nothing behind. Then asserts: both replicants become ready; the
# cross-node calls work (GET /api/v5/stats on r1 has both nodes' figures, r1 forwards
# /api/v5/nodes/<r2>/stats, `ctl stats` through r1 lists both, r1 finds a client connected
# to r2), which a certificate shared by the replicants breaks (403 on the peer API); r1's
# API needs the key from the bootstrap file; the rendered HAProxy shim answers the
# availability check only behind a PROXY header and refuses other paths; an MQTT client
# behind a PROXY v2 header from a trusted address connects with a built-in-database user
# and shows the header's address; a client without a header, or without credentials, is
# refused. Needs terraform, haproxy, openssl, curl, python3.
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
for tool in terraform haproxy openssl curl python3; do
  command -v "$tool" >/dev/null || { echo "test_user_data: $tool is missing" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/meshmq-tf-userdata.XXXXXX")
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  local log
  for log in "$work"/r1.log "$work"/r2.log; do
    [ -f "$log" ] && { echo "--- $log" >&2; grep -v "^ " "$log" | tail -n 15 >&2; }
  done
  exit 1
}
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
for s in core replicant replicant-2 monitoring; do
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
python3 -c 'import sys; sys.exit(open(sys.argv[1]).read() not in open(sys.argv[2]).read())' \
  "$root/terraform/scripts/node-lib.sh" "$r/replicant.sh" \
  || fail "the replicant user data does not carry terraform/scripts/node-lib.sh as written"
grep -q '^ASG_NAME=test-replicants$' "$r/lifecycle.env" && grep -q '^LIFECYCLE_HOOK_NAME=meshmq-evacuate$' "$r/lifecycle.env" \
  || fail "lifecycle.env does not name the group and the hook: $(cat "$r/lifecycle.env")"
grep -q "^MESHMQ_CORE__INITIAL_MEMBERS=1=localhost:$((base + 811)),2=" "$r/core-1.env" \
  || fail "core.env has no initial members"
ok "core, replicant and monitoring user data render and parse; the handler and node-lib are installed as written"

# 1. The secrets, as put-secrets makes them, in a fake Parameter Store (one file per name).
ssm="$work/ssm"
cat > "$work/fake-aws" <<'FAKE'
#!/usr/bin/env bash
# ssm put-parameter ... --name N ... --value file://F  ->  $FAKE_SSM/N
set -euo pipefail
name=""; value=""
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=$2; shift 2 ;;
    --value) value=${2#file://}; shift 2 ;;
    *) shift ;;
  esac
done
mkdir -p "$(dirname "$FAKE_SSM$name")"
cp "$value" "$FAKE_SSM$name"
FAKE
chmod +x "$work/fake-aws"
FAKE_SSM=$ssm AWS_CLI="$work/fake-aws" "$root/terraform/scripts/put-secrets" --name test \
  --region eu-north-1 --out "$work/secrets" --core-node "$bin_dir/core-node" >/dev/null
put=$(cd "$ssm/meshmq/test" && find . -type f | sed 's|^\./||' | sort | tr '\n' ' ')
want="certs/ca.key certs/ca.pem certs/core-1.key certs/core-1.pem certs/core-2.key certs/core-2.pem certs/core-3.key certs/core-3.pem core-api-key grafana-admin-password replicant-api-key "
[ "$put" = "$want" ] || fail "put-secrets wrote [$put], expected [$want] (no shared replicant certificate)"
ok "put-secrets writes the CA (certificate and key), the cores' certificates and the keys; no replicant certificate"

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
localize() { # instance dir, instance id, rendered file -> the same with this instance's paths
  sed -e "s|/etc/meshmq|$1/etc/meshmq|g" -e "s|/var/lib/meshmq|$1/var|g" -e "s|/run/|$1/run/|g" \
    -e "s|\$instance_id|$2|g" -e 's|\$private_ip|127.0.0.1|g' "$3"
}

# 2. Three cores from the rendered core user data (certificates from the store, no CA key).
ce="$work/cores/etc/meshmq"
mkdir -p "$ce/certs"
cp "$ssm/meshmq/test/certs/ca.pem" "$ssm/meshmq/test/certs"/core-* "$ce/certs/"
cp "$ssm/meshmq/test/core-api-key" "$ce/core-api-key"
! grep -q 'ca\.key' "$r/core.sh" || fail "the core user data reads a ca.key"
core_key=$(cat "$ce/core-api-key")
for i in 1 2 3; do
  localize "$work/cores" core "$r/core-$i.env" | sed "s|$work/cores/var/core|$work/cores/var/core-$i|" > "$work/core-$i.env"
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

# 3. The node-certificate block of the replicant user data, as rendered, for an instance:
# node-lib's functions, fetch_param reading the fake store, no chown (no meshmq group here).
run_cert_block() { # instance dir, instance id
  mkdir -p "$1/etc/meshmq" "$1/run" "$1/var/replicant"
  localize "$1" "$2" "$r/node-cert.sh" > "$1/node-cert.sh"
  FAKE_SSM=$ssm bash -c '
    set -euo pipefail
    source "$1"
    fetch_param() { mkdir -p "$(dirname "$2")"; cp "$FAKE_SSM$1" "$2"; chmod "$3" "$2"; }
    chown() { :; }
    instance_id=$3
    source "$2"' _ "$root/terraform/scripts/node-lib.sh" "$1/node-cert.sh" "$2"
}
no_ca_key_left() { # instance dir
  [ -z "$(find "$1" -name 'ca.key' -o -name '.issue.*' -o -name 'meshmq-ca.*')" ]
}
# A CA key that is not the CA's: the block fails, and neither the key nor a certificate stays.
cp -r "$ssm" "$work/ssm-good"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$ssm/meshmq/test/certs/ca.key" 2>/dev/null
if run_cert_block "$work/bad" i-0userdatabad > "$work/bad.log" 2>&1; then
  fail "the node-certificate block succeeded with a CA key that does not match ca.pem"
fi
no_ca_key_left "$work/bad" || fail "a failed node-certificate block left: $(find "$work/bad" -type f)"
[ ! -e "$work/bad/etc/meshmq/certs/i-0userdatabad.pem" ] || fail "a failed node-certificate block left a certificate"
rm -rf "$ssm" && mv "$work/ssm-good" "$ssm"
nodes=(i-0userdata1 i-0userdata2)
for k in 1 2; do
  d="$work/r$k" node=${nodes[k-1]}
  run_cert_block "$d" "$node" > "$work/cert-$k.log" 2>&1 || { cat "$work/cert-$k.log" >&2; fail "the node-certificate block failed for $node"; }
  no_ca_key_left "$d" || fail "a CA key or leftover is in $node's directories: $(find "$d" -type f)"
  got=$(cd "$d/etc/meshmq/certs" && ls -A | sort | tr '\n' ' ')
  [ "$got" = "ca.pem $node.key $node.pem " ] || fail "$node's certificate directory holds [$got]"
  cn=$(openssl x509 -in "$d/etc/meshmq/certs/$node.pem" -noout -subject -nameopt multiline | sed -n 's/^ *commonName *= *//p')
  [ "$cn" = "$node" ] || fail "$node's certificate names '$cn'"
  cp "$ssm/meshmq/test/replicant-api-key" "$d/etc/meshmq/api-keys"
done
! grep -q 'certs/replicant\.' "$r/replicant.sh" || fail "the replicant user data still reads a shared replicant certificate"
ok "each replicant issues its own certificate (CN = instance id) and keeps no CA key; a wrong CA key stops it and leaves nothing"

# 4. Two replicants from the rendered replicant user data.
api_key=$(cat "$work/r1/etc/meshmq/api-keys")
localize "$work/r1" "${nodes[0]}" "$r/replicant.env" > "$work/r1.env"
localize "$work/r2" "${nodes[1]}" "$r/replicant-2.env" > "$work/r2.env"
for k in 1 2; do
  grep -q '\$' "$work/r$k.env" && fail "unfilled shell variables in replicant.env: $(grep '\$' "$work/r$k.env")"
  cp "$r/replicant.toml" "$work/r$k.toml"
  run_rendered "$work/r$k.log" "$work/r$k.env" "$bin_dir/replicant-node" --config "$work/r$k.toml"
done
http="127.0.0.1:$((base + 411))"
http2="127.0.0.1:$((base + 412))"
health_ok() { curl -fs --max-time 2 -o /dev/null "http://$1/health"; }
wait_for 30 "replicant ${nodes[0]} to become ready" health_ok "$http"
wait_for 30 "replicant ${nodes[1]} to become ready" health_ok "$http2"
# Every replicant, reached through r1, answers with its own figures: r1 calls r2 over the
# peer API, which r2 accepts only from a certificate that names the calling node.
both_running() {
  curl -fsS --max-time 15 -u "$api_key" "http://$http/api/v5/nodes" 2>/dev/null | python3 -c '
import json, sys
want = set(sys.argv[1:])
running = {n.get("node") for n in json.load(sys.stdin) if n.get("node_status") == "running"}
sys.exit(0 if want <= running else 1)' "${nodes[@]}"
}
wait_for 30 "r1's /api/v5/nodes to list both replicants as running" both_running
ok "both replicants from the rendered env are ready, and r1 lists both as running"

stats=$(curl -sS --max-time 20 -u "$api_key" "http://$http/api/v5/stats")
echo "$stats" | python3 -c '
import json, sys
rows = json.load(sys.stdin)
want = set(sys.argv[1:])
answered = {r.get("node") for r in rows if "connections.count" in r and "node_status" not in r}
sys.exit(0 if answered == want else 1)' "${nodes[@]}" \
  || fail "GET /api/v5/stats on r1 does not hold both replicants' figures: $stats"
code=$(curl -s -o "$work/r2stats" -w '%{http_code}' --max-time 20 -u "$api_key" "http://$http/api/v5/nodes/${nodes[1]}/stats")
[ "$code" = 200 ] || fail "r1 answered $code for /api/v5/nodes/${nodes[1]}/stats: $(cat "$work/r2stats")"
ctl=$("$bin_dir/replicant-node" ctl --api "$http" --api-key-file "$work/r1/etc/meshmq/api-keys" stats 2>&1) \
  || fail "ctl stats through r1 failed: $ctl"
for node in "${nodes[@]}"; do
  echo "$ctl" | grep -q "$node" || fail "ctl stats through r1 does not show $node: $ctl"
done
! echo "$ctl" | grep -qi unreachable || fail "ctl stats through r1 shows an unreachable node: $ctl"
ok "cross-node calls: r1's /api/v5/stats has both replicants, r1 forwards to r2, ctl stats lists both"

mqtt() { python3 "$root/terraform/tests/mqtt_via_proxy.py" 127.0.0.1 "$@"; }
curl -fsS --max-time 5 -u "$api_key" -H 'Content-Type: application/json' \
  -d '{"user_id": "demo", "password": "demo-password-1"}' \
  "http://$http/api/v5/authentication/password_based:built_in_database/users" >/dev/null
mqtt "$((base + 212))" ud-on-r2 --proxy-from 203.0.113.9:40009 --user demo --password demo-password-1 --hold 60 > "$work/conn2.out" &
pids+=($!)
wait_for 10 "the CONNACK of a client on r2" test -s "$work/conn2.out"
[ "$(cat "$work/conn2.out")" = 0 ] || fail "the client on r2 got CONNACK $(cat "$work/conn2.out")"
client=$(curl -sS --max-time 20 -u "$api_key" "http://$http/api/v5/clients/ud-on-r2")
echo "$client" | grep -q "\"${nodes[1]}\"" || fail "r1 does not find the client connected to r2: $client"
listing=$(curl -sS --max-time 20 -u "$api_key" "http://$http/api/v5/clients")
echo "$listing" | python3 -c '
import json, sys
d = json.load(sys.stdin)
ok = any(c.get("clientid") == "ud-on-r2" for c in d["data"]) and not d["meta"].get("failed_nodes")
sys.exit(0 if ok else 1)' || fail "r1's client list misses r2's client or names failed nodes: $listing"
ok "r1 finds and lists a client connected to r2"

code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$http/api/v5/nodes")
[ "$code" = 401 ] || fail "the API answered $code without a key, not 401"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -u "$api_key" "http://$http/api/v5/nodes")
[ "$code" = 200 ] || fail "the API answered $code with the bootstrap key"
ok "the API needs the key from the bootstrap file"

health_port=$((base + 711))
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

mqtt_port=$((base + 211))
got=$(mqtt "$mqtt_port" ud-no-header --user demo --password demo-password-1)
[ "$got" = closed ] || fail "a client without a PROXY header got CONNACK $got"
got=$(mqtt "$mqtt_port" ud-anon --proxy-from 203.0.113.7:40001)
[ "$got" = 5 ] || fail "a client without credentials got '$got', not CONNACK 5 (not authorized)"
mqtt "$mqtt_port" ud-proxied --proxy-from 203.0.113.7:40002 --user demo --password demo-password-1 > "$work/conn.out" &
pids+=($!)
wait_for 10 "the proxied client's CONNACK" test -s "$work/conn.out"
[ "$(cat "$work/conn.out")" = 0 ] || fail "the proxied client got CONNACK $(cat "$work/conn.out")"
client=$(curl -fsS --max-time 5 -u "$api_key" "http://$http/api/v5/clients/ud-proxied")
echo "$client" | grep -q '"203.0.113.7"' || fail "the client's address is not the PROXY header's: $client"
ok "MQTT behind PROXY v2: authenticated user connects as 203.0.113.7; no header or no credentials refused"
echo "test_user_data: all passed"
