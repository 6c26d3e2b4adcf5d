"""Renders the AWS modules' user-data templates with `terraform console` (no provider needed)
and pulls files out of the rendered replicant script, for test_user_data.sh.

  python3 render_user_data.py --out DIR --base-port B

Writes DIR/{core,replicant,monitoring}.sh (the rendered scripts, as an instance would get
them after gunzip), core-{1,2,3}.env (three cores on loopback: QUIC B+811.., HTTP B+821..,
members named localhost:port) and, from replicant.sh, the bodies of its heredocs: replicant.env,
replicant.toml, lifecycle.env, haproxy.cfg (with the placeholders the user data's sed
replaces, replaced the same way), meshmq-lifecycle, meshmq-connections. The replicant is
rendered with loopback ports from B (MQTT B+211, WS B+311, HTTP B+411, peer B+511, health
B+711), the cores of a dev cluster at localhost:B+1..3 and PROXY trust 127.0.0.1/32, so the
test can run it next to `scripts/dev-cluster up --base-port B`. Test code only.
"""

import argparse
import json
import os
import re
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TF = os.path.dirname(HERE)
SCRIPTS = os.path.join(TF, "scripts")
MODULES = os.path.join(TF, "modules", "aws")


def hcl_string(text):
    """A Terraform string literal holding `text` exactly."""
    return json.dumps(text).replace("${", "$${").replace("%{", "%%{")


def render(template, variables):
    """templatefile(template, variables) through `terraform console`."""
    pairs = ", ".join(f"{k} = {v}" for k, v in variables.items())
    expr = f"jsonencode(templatefile({hcl_string(template)}, {{ {pairs} }}))"
    with tempfile.TemporaryDirectory() as empty:
        out = subprocess.run(["terraform", "console"], input=expr, cwd=empty, capture_output=True,
                             text=True, timeout=60, check=True)
    return json.loads(json.loads(out.stdout))


def script(name):
    return f"file({hcl_string(os.path.join(SCRIPTS, name))})"


def heredoc(text, opener):
    """The body of the heredoc that starts on the line `opener` (up to its terminator line)."""
    m = re.search(re.escape(opener) + r" <<'?(\w+)'?\n(.*?)\n\1\n", text, re.S)
    if not m:
        raise SystemExit(f"no heredoc {opener!r} in the rendered user data")
    return m.group(2) + "\n"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--base-port", type=int, required=True)
    args = parser.parse_args()
    b = args.base_port
    os.makedirs(args.out, exist_ok=True)
    common = {
        "node_lib": script("node-lib.sh"),
        "version": '"0.0.0-test"',
        "release_url": '"https://example.invalid/meshmq.tar.gz"',
        "release_sha256": '""',
        "ssm_prefix": '"/meshmq/test"',
    }
    replicant = render(os.path.join(MODULES, "replicant_group", "user-data.sh.tftpl"), {
        **common,
        "lifecycle_handler": script("lifecycle-handler"),
        "publish_conns": script("publish-connections"),
        "health_shim": script("health-shim.cfg"),
        "cores": hcl_string(", ".join(f"localhost:{b + i}" for i in (1, 2, 3))),
        "proxy_trusted": '"127.0.0.1/32"',
        "tls_passthrough": "false",
        "allow_anonymous": "false",
        "ports": "{" + ", ".join(f"{k} = {v}" for k, v in {
            "mqtt": b + 211, "mqtts": b + 611, "ws": b + 311, "wss": b + 811,
            "http": b + 411, "peer": b + 511, "health": b + 711}.items()) + "}",
        "asg_name": '"test-replicants"',
        "hook_name": '"meshmq-evacuate"',
        "evacuate_timeout": "900",
        "wait_health_check": "30",
        "wait_takeover": "60",
    })
    # Three cores on loopback: QUIC B+810+i, HTTP B+820+i, members by name (localhost).
    members = ",".join(f"{i}=localhost:{b + 810 + i}" for i in (1, 2, 3))
    cores = {
        i: render(os.path.join(MODULES, "core", "user-data.sh.tftpl"), {
            **common,
            "core_id": str(i),
            "advertise": hcl_string(f"localhost:{b + 810 + i}"),
            "members": hcl_string(members),
            "quic_port": str(b + 810 + i),
            "http_port": str(b + 820 + i),
            "volume_id": '"vol-0123456789abcdef0"',
        })
        for i in (1, 2, 3)
    }
    core = cores[1]
    monitoring = render(os.path.join(MODULES, "monitoring", "user-data.sh.tftpl"), {
        "node_lib": script("node-lib.sh"),
        "prometheus_yml_b64": '"Z2xvYmFsOiB7fQo="',
        "dashboard_b64": '"e30K"',
        "prometheus_version": '"2.55.1"',
        "grafana_version": '"11.3.1"',
        "retention": '"15d"',
        "ssm_prefix": '"/meshmq/test"',
    })
    files = {"replicant.sh": replicant, "core.sh": core, "monitoring.sh": monitoring}
    files["replicant.env"] = heredoc(replicant, "cat > /etc/meshmq/replicant.env")
    files["replicant.toml"] = heredoc(replicant, "cat > /etc/meshmq/replicant.toml")
    files["lifecycle.env"] = heredoc(replicant, "cat > /etc/meshmq/lifecycle.env")
    for i, text in cores.items():
        files[f"core-{i}.env"] = heredoc(text, "cat > /etc/meshmq/core.env")
    files["meshmq-lifecycle"] = heredoc(replicant, "cat > /usr/local/bin/meshmq-lifecycle")
    files["meshmq-connections"] = heredoc(replicant, "cat > /usr/local/bin/meshmq-connections")
    shim = heredoc(replicant, "cat > /etc/haproxy/haproxy.cfg")
    sed = re.search(r"sed -i -e 's/@HEALTH_PORT@/(\d+)/' -e 's/@API@/([\d.:]+)/' /etc/haproxy/haproxy.cfg", replicant)
    if not sed:
        raise SystemExit("the user data does not fill in the health shim's placeholders")
    files["haproxy.cfg"] = shim.replace("@HEALTH_PORT@", sed.group(1)).replace("@API@", sed.group(2))
    for name, text in files.items():
        with open(os.path.join(args.out, name), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
