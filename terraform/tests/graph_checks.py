"""The graph checks of terraform/ (python-hcl2) that test_graph.py runs.

What it owns: one function per property the AWS modules and examples/basic must hold
(ASG and scale-in hook, NLB target groups, ports closed to the world, Prometheus discovery,
variable validations, the example's pins and tags, secret names, the replicants' own
certificates and who may read the CA key), each returning the
problems it finds in a given terraform/ tree (empty: none). It never changes the tree and
never talks to AWS; resolving references is tfgraph's job.
"""

import fnmatch
import json
import os
import re
import subprocess
import tempfile

import yaml

import tfgraph as g

HERE = os.path.dirname(os.path.abspath(__file__))
TF_ROOT = os.path.dirname(HERE)
REPO = os.path.dirname(TF_ROOT)
HEALTH_PATH = "/api/v5/load_rebalance/availability_check"
CORE_PORTS = {4370, 18084}  # core QUIC (UDP), core HTTP
WORLD = {"0.0.0.0/0", "::/0"}


def read(*parts):
    with open(os.path.join(*parts)) as f:
        return f.read()


def example(tf_root):
    return g.Scope(g.Module(os.path.join(tf_root, "examples", "basic")))


def module(tf_root, name):
    return g.Scope(g.Module(os.path.join(tf_root, "modules", "aws", name)))


# --- checks ------------------------------------------------------------------------------

def check_asg_and_hook(tf_root):
    """The replicant group: ASG, scale-in lifecycle hook, instance refresh, scaling policies."""
    problems = []
    rg = example(tf_root).child("replicants")
    m = rg.module
    asgs = m.of_type("aws_autoscaling_group")
    if len(asgs) != 1:
        return [f"expected one aws_autoscaling_group, found {len(asgs)}"]
    asg_name, asg = asgs[0]
    asg_ref = f"${{aws_autoscaling_group.{asg_name}.name}}"
    hooks = [b for _, b in m.of_type("aws_autoscaling_lifecycle_hook")]
    hooks += asg.get("initial_lifecycle_hook", [])
    terminating = [h for h in hooks if rg.eval(h["lifecycle_transition"]) == "autoscaling:EC2_INSTANCE_TERMINATING"]
    if not terminating:
        problems.append("no lifecycle hook on autoscaling:EC2_INSTANCE_TERMINATING")
    for h in terminating:
        if h.get("autoscaling_group_name", asg_ref) != asg_ref:
            problems.append(f"the scale-in hook is on {h.get('autoscaling_group_name')}, not the ASG")
        if rg.eval(h.get("default_result", '"ABANDON"')) != "CONTINUE":
            problems.append("the scale-in hook's default_result is not CONTINUE")
        timeout = rg.eval(h.get("heartbeat_timeout", 0))
        if not isinstance(timeout, int) or not 30 <= timeout <= 7200:
            problems.append(f"heartbeat_timeout {timeout!r} outside 30..7200")
        # The handler on the instance completes the hook by name: the user data must get the
        # same name the hook has.
        lt = m.resource("aws_launch_template", "replicant")
        args = re.search(r"hook_name\s*=\s*([^\s,]+)", lt["user_data"])
        if not args or f"${{{args.group(1)}}}" != h["name"]:
            problems.append("the launch template's user data does not get the hook's name")
    refresh = asg.get("instance_refresh", [])
    prefs = refresh[0].get("preferences", [{}])[0] if refresh else {}
    if not refresh or rg.eval(prefs.get("min_healthy_percentage", 0)) != 100:
        problems.append("instance refresh must keep min_healthy_percentage = 100")
    if refresh and rg.eval(prefs.get("max_healthy_percentage", 100)) <= 100:
        problems.append("instance refresh must launch before terminating (max_healthy_percentage > 100)")
    policies = [b for _, b in m.of_type("aws_autoscaling_policy") if b.get("autoscaling_group_name") == asg_ref]
    kinds = set()
    for p in policies:
        ttc = p.get("target_tracking_configuration", [{}])[0]
        for spec in ttc.get("predefined_metric_specification", []):
            kinds.add(rg.eval(spec["predefined_metric_type"]))
        for spec in ttc.get("customized_metric_specification", []):
            kinds.add(rg.eval(spec["metric_name"]))
    for want in ("ASGAverageCPUUtilization", "ConnectionsPerNode"):
        if want not in kinds:
            problems.append(f"no target-tracking policy on {want}")
    if "autoscaling/target-lifecycle-state" not in read(tf_root, "scripts", "lifecycle-handler"):
        problems.append("the lifecycle handler does not poll target-lifecycle-state")
    return problems


def check_target_groups(tf_root):
    """NLB target groups: PROXY v2, the availability check on the health port, attached."""
    problems = []
    ex = example(tf_root)
    lb = ex.child("load_balancer")
    rg = ex.child("replicants")
    health_port = rg.eval(rg.module.locals["ports"])["health"]
    lbs = lb.module.of_type("aws_lb")
    if not lbs or lb.eval(lbs[0][1]["load_balancer_type"]) != "network":
        problems.append("no network load balancer")
    tgs = lb.module.of_type("aws_lb_target_group")
    client_tgs = [(n, b) for n, b in tgs if n != "api"]
    if not client_tgs:
        problems.append("no client target groups")
    for name, tg in client_tgs:
        if tg.get("proxy_protocol_v2") is not True:
            problems.append(f"target group {name}: proxy_protocol_v2 is not true")
        if tg.get("preserve_client_ip") is not False:
            problems.append(f"target group {name}: preserve_client_ip must be false (the PROXY trust is the NLB's subnets)")
        hc = tg.get("health_check", [{}])[0]
        if lb.eval(hc.get("protocol", '"TCP"')) != "HTTP":
            problems.append(f"target group {name}: health check is not HTTP")
        if lb.eval(hc.get("path", '""')) != HEALTH_PATH:
            problems.append(f"target group {name}: health check path is not {HEALTH_PATH}")
        if str(lb.eval(hc.get("port", '"traffic-port"'))) != str(health_port):
            problems.append(f"target group {name}: health check port is not the replicants' health port {health_port}")
    listeners = {g._unquote(k) for k in lb.module.locals["listeners"]}
    if listeners != {"1883", "8883", "8083", "8084"}:
        problems.append(f"listeners are {sorted(listeners)}, not 1883, 8883, 8083, 8084")
    attached = lb.module.of_type("aws_autoscaling_attachment")
    if not attached or "aws_lb_target_group.replicants" not in attached[0][1]["for_each"]:
        problems.append("the target groups are not attached to the ASG")
    # With separate attachments the ASG must ignore target_group_arns, or the next apply
    # detaches them (the aws provider's documented pitfall).
    asg = rg.module.resource("aws_autoscaling_group", "replicants")
    if "target_group_arns" not in json.dumps(asg.get("lifecycle", [{}])[0].get("ignore_changes", "")):
        problems.append("the ASG does not ignore target_group_arns although the load balancer attaches them")
    # The replicants admit the health port from the NLB, and their health shim reads PROXY.
    from_lb = rg.module.resource("aws_vpc_security_group_ingress_rule", "from_lb")
    if "health" not in json.dumps(rg.module.locals.get("lb_ports", "")) or "local.lb_ports" not in from_lb["for_each"]:
        problems.append("the replicants' security group does not admit the health port from the NLB")
    shim = read(tf_root, "scripts", "health-shim.cfg")
    if "accept-proxy" not in shim or HEALTH_PATH not in shim:
        problems.append("the health shim does not accept PROXY headers or pass the availability check")
    return problems


def _ingress_rules(scope):
    """(resource name, ports, cidrs, referenced sg) of every ingress rule of a module."""
    out = []
    for name, r in scope.module.of_type("aws_vpc_security_group_ingress_rule"):
        cidrs = [r[k] for k in ("cidr_ipv4", "cidr_ipv6") if k in r]
        out.append((name, r.get("from_port"), r.get("to_port"), cidrs, r.get("referenced_security_group_id")))
    for name, r in scope.module.of_type("aws_security_group_rule"):
        if g.literal(r.get("type")) == "ingress":
            out.append((name, r.get("from_port"), r.get("to_port"), [r.get("cidr_blocks", []), r.get("ipv6_cidr_blocks", [])], r.get("source_security_group_id")))
    for name, sg in scope.module.of_type("aws_security_group"):
        for i, rule in enumerate(sg.get("ingress", [])):
            out.append((f"{name}.ingress[{i}]", rule.get("from_port"), rule.get("to_port"), [rule.get("cidr_blocks", []), rule.get("ipv6_cidr_blocks", [])], rule.get("security_groups")))
    return out


def check_core_closed_to_world(tf_root):
    """Core QUIC and HTTP, replicant HTTP and peer ports: reachable from security groups only."""
    problems = []
    ex = example(tf_root)
    for call, guarded in (("core", None), ("replicants", {"http", "peer"})):
        scope = ex.child(call)
        for name, _, _, cidrs, ref in _ingress_rules(scope):
            if guarded is not None and not any(p in name for p in guarded):
                continue
            flat = []
            for c in cidrs:
                flat.extend(c if isinstance(c, list) else [c])
            if flat:
                resolved = []
                for c in flat:
                    try:
                        v = scope.eval(c)
                    except g.Unresolvable:
                        v = c
                    resolved.extend(v if isinstance(v, list) else [v])
                problems.append(f"{call}: ingress rule {name} admits CIDR blocks {resolved} (world: {any(str(x) in WORLD for x in resolved)})")
            elif not ref:
                problems.append(f"{call}: ingress rule {name} names no security group")
    core = ex.child("core")
    ports = {core.eval(core.module.locals["quic_port"]), core.eval(core.module.locals["http_port"])}
    if ports != CORE_PORTS:
        problems.append(f"core ports are {ports}, expected {CORE_PORTS}")
    return problems


def render_prometheus(tf_root):
    """prometheus.yml as the monitoring module renders it (terraform console templatefile)."""
    mon = example(tf_root).child("monitoring")
    jobs = mon.eval(mon.module.locals["jobs"])
    hcl = json.dumps(json.dumps(jobs)).replace("${", "$${").replace("%{", "%%{")
    tpl = os.path.join(mon.module.path, "prometheus.yml.tftpl")
    expr = f'jsonencode(templatefile("{tpl}", {{cluster = "testcluster", region = "eu-north-1", jobs = jsondecode({hcl})}}))'
    with tempfile.TemporaryDirectory() as empty:
        out = subprocess.run(["terraform", "console"], input=expr, cwd=empty, capture_output=True,
                             text=True, timeout=60, check=True)
    return yaml.safe_load(json.loads(json.loads(out.stdout)))


def check_prometheus(tf_root):
    """Prometheus: EC2 discovery by the cluster tag and role, the right port per role."""
    problems = []
    ex = example(tf_root)
    core = ex.child("core")
    rg = ex.child("replicants")
    want = {
        "meshmq-core": ("core", core.eval(core.module.locals["http_port"])),
        "meshmq-replicant": ("replicant", rg.eval(rg.module.locals["ports"])["http"]),
    }
    config = render_prometheus(tf_root)
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    if set(jobs) != set(want):
        problems.append(f"scrape jobs {sorted(jobs)}, expected {sorted(want)}")
    for name, (role, port) in want.items():
        job = jobs.get(name)
        if not job:
            continue
        if job.get("metrics_path") != "/metrics":
            problems.append(f"{name}: metrics_path is not /metrics")
        sd = job.get("ec2_sd_configs") or [{}]
        filters = {f["name"]: f["values"] for f in sd[0].get("filters", [])}
        if filters.get("tag:meshmq:cluster") != ["testcluster"]:
            problems.append(f"{name}: no ec2_sd_configs filter on tag:meshmq:cluster")
        if filters.get("tag:meshmq:role") != [role]:
            problems.append(f"{name}: role filter {filters.get('tag:meshmq:role')}, expected [{role}]")
        if sd[0].get("port") != port:
            problems.append(f"{name}: scrapes port {sd[0].get('port')}, the nodes serve /metrics on {port}")
    # The dashboard filters on these job names (deploy/prometheus/prometheus.yml has them too).
    dev = yaml.safe_load(read(REPO, "deploy", "prometheus", "prometheus.yml"))
    if {j["job_name"] for j in dev["scrape_configs"]} != set(want):
        problems.append("job names differ from deploy/prometheus/prometheus.yml")
    # And the monitoring instance may reach both ports.
    if "module.monitoring.security_group_id" not in json.dumps(ex.module.calls["core"]["client_security_group_ids"]):
        problems.append("the cores do not admit the monitoring security group")
    if "module.monitoring.security_group_id" not in json.dumps(ex.module.calls["replicants"]["monitoring_security_group_ids"]):
        problems.append("the replicants do not admit the monitoring security group")
    return problems


def check_example_basics(tf_root):
    """examples/basic: pinned provider, default tags, the outputs a user needs; modules pin too."""
    problems = []
    ex = example(tf_root)
    pins = [rp.get("aws", {}) for t in ex.module.settings for rp in t.get("required_providers", [])]
    if not pins or g.literal(pins[0].get("source")) != "hashicorp/aws" or not (g.literal(pins[0].get("version")) or "").startswith("~>"):
        problems.append("examples/basic does not pin hashicorp/aws with ~>")
    aws = ex.module.providers.get("aws", {})
    tags = aws.get("default_tags", [{}])[0].get("tags", "")
    if "meshmq:cluster" not in tags:
        problems.append("the aws provider has no default_tags with meshmq:cluster")
    for out in ("mqtt_endpoint", "mqtts_endpoint", "ws_endpoint", "wss_endpoint", "grafana_url", "prometheus_url"):
        if out not in ex.module.outputs:
            problems.append(f"examples/basic has no output {out}")
    for call in ex.module.calls:
        child = ex.child(call).module
        versions = [rp.get("aws", {}).get("version") for t in child.settings for rp in t.get("required_providers", [])]
        if not versions or not versions[0]:
            problems.append(f"module {call} does not constrain the aws provider version")
    return problems


def _names_read(template):
    """SSM names a user-data template fetches, with its template variables as `*`."""
    names = re.findall(r'fetch_param "\$\{ssm_prefix\}/([^"]+)"', template)
    return {re.sub(r"\$\{\w+\}", "*", n) for n in names}


def literal_names(expr):
    """Parameter names quoted in an HCL expression (`${n}` as `*`)."""
    found = re.findall(r'"((?:certs/)?[a-z${}-]+(?:\.pem|\.key|-key|-password))"', expr)
    return {n.replace("${n}", "*") for n in found}


def _iam_allowed(tf_root, directory):
    """The parameter names (patterns, under the SSM prefix) a module's IAM policy lets it read."""
    iam = read(tf_root, "modules", "aws", directory, "iam.tf")
    allowed = [re.sub(r"^\$\{local\.param_arn\}/", "", a) for a in re.findall(r'"(\$\{local\.param_arn\}/[^"]+)"', iam)]
    allowed += re.findall(r'parameter\$\{var\.ssm_prefix\}/([^"]+)"', iam)
    return allowed


def check_replicant_certificate(tf_root):
    """Each replicant issues its own certificate, named after its instance, and keeps no CA key.

    Peers accept a replicant's API calls only under a certificate whose common name is the
    node name it states (the instance id), so one certificate shared by the group breaks
    every cross-node call. The user data must read the CA (certificate and key) and no node
    certificate, name the node and issue its certificate after the instance id, read the CA
    key outside /etc/meshmq and delete it (on failure too) before any service starts. Only
    the replicants' role may read the CA key; nothing writes a shared replicant certificate.
    """
    problems = []
    ud = read(tf_root, "modules", "aws", "replicant_group", "user-data.sh.tftpl")
    lib = read(tf_root, "scripts", "node-lib.sh")
    certs_read = {n for n in _names_read(ud) if n.startswith("certs/")}
    if certs_read != {"certs/ca.pem", "certs/ca.key"}:
        problems.append(f"the replicant user data reads {sorted(certs_read)}, not exactly the CA's certificate and "
                        "key (a certificate shared by the replicants is refused by their peers)")
    start = ud.find("systemctl enable")
    issue = re.search(r'^issue_node_cert (\S+) "\$instance_id" "?(\$\w+)/ca\.key"?$', ud, re.M)
    if not issue or issue.start() > start:
        problems.append('the replicant user data does not issue its certificate as "$instance_id" before starting the services')
    if not re.search(r"^MESHMQ_NODE__NAME=\$instance_id$", ud, re.M):
        problems.append("the replicant's node name is not its instance id (the name its certificate carries)")
    if issue and not re.search(rf'MESHMQ_CLUSTER__CERTS_DIR={re.escape(issue.group(1))}$', ud, re.M):
        problems.append(f"the certificate is issued into {issue.group(1)}, not the node's certs_dir")
    key_fetch = re.search(r'^fetch_param "\$\{ssm_prefix\}/certs/ca\.key" "(\$\w+)/ca\.key"', ud, re.M)
    if not key_fetch:
        problems.append("the replicant user data does not read the CA key into a directory of its own")
    else:
        var = re.escape(key_fetch.group(1))
        made = re.search(rf"^{var[2:]}=\$\(mktemp -d /run/", ud, re.M)
        trap = re.search(rf"""^trap 'rm -rf "{var}"' EXIT$""", ud, re.M)
        removed = re.search(rf'^rm -rf "{var}"$', ud, re.M)
        if not made:
            problems.append("the CA key is not read into a fresh directory under /run (memory)")
        if not trap or trap.start() > key_fetch.start():
            problems.append("the CA key is not deleted when the user data fails after reading it")
        if not removed or removed.start() > start or removed.start() < key_fetch.start():
            problems.append("the CA key is not deleted before the services start")
    fn = re.search(r"^issue_node_cert\(\) \($(.*?)^\)$", lib, re.M | re.S)
    if not fn:
        problems.append("node-lib.sh has no issue_node_cert")
    elif '-subj "/CN=$name/' not in fn.group(1) or "DNS:meshmq.cluster" not in fn.group(1):
        problems.append("issue_node_cert does not put the node name in the common name and meshmq.cluster in the names")
    for directory, may in (("replicant_group", True), ("core", False), ("monitoring", False)):
        allows = any(fnmatch.fnmatch("certs/ca.key", a) for a in _iam_allowed(tf_root, directory))
        if allows != may:
            problems.append(f"{directory}: its IAM policy {'does not allow' if may else 'allows'} reading certs/ca.key")
    put = read(tf_root, "scripts", "put-secrets")
    tls = g.Module(os.path.join(tf_root, "modules", "aws", "secrets_tls"))
    tls_names = literal_names(tls.locals["names"])
    if re.search(r"^put certs/replicant", put, re.M) or re.search(r"--nodes [^\n]*replicant", put):
        problems.append("put-secrets still makes a certificate shared by the replicants")
    if "replicant" in str(tls.locals["nodes"]) or any("replicant." in n for n in tls_names):
        problems.append("secrets_tls still makes a certificate shared by the replicants")
    if "certs/ca.key" not in tls_names or not re.search(r"^put certs/ca\.key ", put, re.M):
        problems.append("put-secrets and secrets_tls must both store certs/ca.key (the replicants issue from it)")
    return problems


def check_secret_names(tf_root):
    """What the user data reads is what put-secrets and secrets_tls write, and what IAM allows."""
    problems = []
    written = set()
    for line in read(tf_root, "scripts", "put-secrets").splitlines():
        m = re.match(r'\s*put "?([^" ]+)"? ', line)
        if m:
            written.add(re.sub(r"\$\{?\w+\}?", "*", m.group(1)))
    tls = g.Module(os.path.join(tf_root, "modules", "aws", "secrets_tls"))
    tls_written = literal_names(tls.locals["names"])
    if literal_names(tls.locals["values"]) != tls_written:
        problems.append(f"secrets_tls: names {sorted(tls_written)} and values {sorted(literal_names(tls.locals['values']))} differ")
    modules = {"core": "core", "replicants": "replicant_group", "monitoring": "monitoring"}
    for call, directory in modules.items():
        reads = _names_read(read(tf_root, "modules", "aws", directory, "user-data.sh.tftpl"))
        if not reads:
            problems.append(f"{call}: the user data reads no secret")
        allowed = _iam_allowed(tf_root, directory)
        for name in sorted(reads):
            if not any(fnmatch.fnmatch(name.replace("*", "1"), a) or fnmatch.fnmatch(a, name) for a in written):
                problems.append(f"{call} reads {name}, which put-secrets does not write")
            if not name.startswith("mqtt-tls") and not any(fnmatch.fnmatch(name.replace("*", "1"), a.replace("*", "1")) or fnmatch.fnmatch(name.replace("*", "1"), a) for a in tls_written):
                problems.append(f"{call} reads {name}, which secrets_tls does not write")
            if not any(fnmatch.fnmatch(name.replace("*", "1"), a) for a in allowed):
                problems.append(f"{call} reads {name}, which its IAM policy does not allow")
    return problems


# Values each validated variable of examples/basic must accept (True) or refuse (False).
VALIDATION_CASES = {
    "region": [({"region": "eu-north-1"}, True), ({"region": "us-gov-west-1"}, True),
               ({"region": "Europe"}, False), ({"region": ""}, False)],
    "core_count": [({"core_count": n}, n in (3, 5)) for n in (1, 2, 3, 4, 5, 6, 7)],
    "replicant_desired": [
        ({"replicant_min": 2, "replicant_desired": 3, "replicant_max": 5}, True),
        ({"replicant_min": 2, "replicant_desired": 2, "replicant_max": 2}, True),
        ({"replicant_min": 3, "replicant_desired": 2, "replicant_max": 5}, False),
        ({"replicant_min": 2, "replicant_desired": 6, "replicant_max": 5}, False),
    ],
    "replicant_max": [({"replicant_min": 2, "replicant_max": 5}, True), ({"replicant_min": 6, "replicant_max": 5}, False)],
    "replicant_min": [({"replicant_min": 1}, True), ({"replicant_min": 0}, False)],
    "instance_types": [
        ({"instance_types": {"core": "m7i.large", "replicant": "c7g.2xlarge", "monitoring": "t3.medium"}}, True),
        ({"instance_types": {"core": "large", "replicant": "c7i.large", "monitoring": "t3.medium"}}, False),
    ],
    "allowed_cidrs": [({"allowed_cidrs": ["0.0.0.0/0"]}, True), ({"allowed_cidrs": ["10.0.0.0/8", "2001:db8::/32"]}, True),
                      ({"allowed_cidrs": []}, False), ({"allowed_cidrs": ["10.0.0.300/8"]}, False)],
    "admin_cidrs": [({"admin_cidrs": ["203.0.113.0/24"]}, True), ({"admin_cidrs": ["0.0.0.0/0"]}, False),
                    ({"admin_cidrs": ["::/0"]}, False), ({"admin_cidrs": []}, False)],
    "meshmq_version": [({"meshmq_version": "0.9.0"}, True), ({"meshmq_version": "1.3.0-rc.1"}, True),
                       ({"meshmq_version": "v1.2"}, False), ({"meshmq_version": "latest"}, False)],
    "acm_certificate_arn": [
        ({"tls_mode": "terminate", "acm_certificate_arn": "arn:aws:acm:eu-north-1:1:certificate/x"}, True),
        ({"tls_mode": "terminate", "acm_certificate_arn": ""}, False),
        ({"tls_mode": "passthrough", "acm_certificate_arn": ""}, True),
    ],
}


def check_validations(tf_root):
    """examples/basic's variables: each has validation blocks that accept and refuse as listed."""
    problems = []
    variables = example(tf_root).module.variables
    for name, cases in VALIDATION_CASES.items():
        if name not in variables:
            problems.append(f"variable {name} is missing")
            continue
        for values, expected in cases:
            try:
                got = g.validation_holds(variables[name], values)
            except AssertionError as e:
                problems.append(f"{name}: {e}")
                break
            if got != expected:
                problems.append(f"{name}: {values} {'accepted' if got else 'refused'}, expected {'accepted' if expected else 'refused'}")
    return problems


def _lit(v):
    return g.literal(v) if isinstance(v, str) and g.literal(v) is not None else v


def check_iam_least_privilege(tf_root):
    """No role gets AmazonSSMManagedInstanceCore (it reads every SSM parameter, the CA key
    included) and no policy allows ssm:GetParameter* on "*"; Session Manager is off by default."""
    problems = []
    for directory in ("core", "replicant_group", "monitoring", "instance_role"):
        m = g.Module(os.path.join(tf_root, "modules", "aws", directory))
        for rtype, name, body in m.resources:
            if "AmazonSSMManagedInstanceCore" in json.dumps(body):
                problems.append(f"{directory}: {rtype}.{name} attaches AmazonSSMManagedInstanceCore")
        for rtype, name, body in m.data:
            if rtype != "aws_iam_policy_document":
                continue
            for st in body.get("statement", []) + [s for d in body.get("dynamic", []) for s in d.get("statement", {}).get("content", [])]:
                actions = [_lit(a) for a in (st.get("actions") or [])] if isinstance(st.get("actions"), list) else [str(st.get("actions"))]
                resources = [_lit(r) for r in (st.get("resources") or [])] if isinstance(st.get("resources"), list) else [str(st.get("resources"))]
                reads = [a for a in actions if isinstance(a, str) and any(
                    fnmatch.fnmatch(op, a) for op in ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"))]
                if reads and any(r == "*" or (isinstance(r, str) and r.endswith(":parameter/*")) for r in resources):
                    problems.append(f"{directory}: {name} allows {reads} on every parameter")
        default = _lit(m.variables.get("enable_session_manager", {}).get("default"))
        if default is not False:
            problems.append(f"{directory}: enable_session_manager defaults to {default}, not false")
    ex_default = example(tf_root).module.variables.get("enable_session_manager", {}).get("default")
    if ex_default is not False:
        problems.append(f"examples/basic: enable_session_manager defaults to {ex_default}, not false")
    return problems


def check_api_listener_tls(tf_root):
    """The replicants' REST API (the API key in every request) is published over TLS only."""
    problems = []
    lb = example(tf_root).child("load_balancer")
    for name, body in lb.module.of_type("aws_lb_listener"):
        if name != "api":
            continue
        if lb.eval(body.get("protocol")) != "TLS":
            problems.append(f"aws_lb_listener.{name}: the REST API listener is not TLS")
        for attr in ("certificate_arn", "ssl_policy"):
            if attr not in body:
                problems.append(f"aws_lb_listener.{name}: no {attr}")
        pres = body.get("lifecycle", [{}])[0].get("precondition", [])
        if not any("acm_certificate_arn" in str(p.get("condition", "")) for p in pres):
            problems.append(f"aws_lb_listener.{name}: no precondition requiring acm_certificate_arn")
        break
    else:
        problems.append("no aws_lb_listener.api")
    return problems


# Module variables that must refuse the whole internet themselves (not only examples/basic).
MODULE_VALIDATION_CASES = {
    ("load_balancer", "api_allowed_cidrs"): [
        ({"api_allowed_cidrs": []}, True), ({"api_allowed_cidrs": ["203.0.113.0/24"]}, True),
        ({"api_allowed_cidrs": ["0.0.0.0/0"]}, False), ({"api_allowed_cidrs": ["::/0"]}, False),
        ({"api_allowed_cidrs": ["10.0.0.300/8"]}, False)],
    ("monitoring", "allowed_cidrs"): [
        ({"allowed_cidrs": ["203.0.113.0/24"]}, True), ({"allowed_cidrs": ["0.0.0.0/0"]}, False),
        ({"allowed_cidrs": ["::/0"]}, False), ({"allowed_cidrs": []}, False)],
    ("core", "release_sha256"): [({"release_sha256": "a" * 64}, True), ({"release_sha256": ""}, False),
                                 ({"release_sha256": "A" * 64}, False)],
    ("replicant_group", "release_sha256"): [({"release_sha256": "0" * 64}, True), ({"release_sha256": ""}, False)],
}


def check_module_validations(tf_root):
    """The modules' own validations: no world CIDR for admin listeners, a required checksum."""
    problems = []
    for (directory, name), cases in MODULE_VALIDATION_CASES.items():
        variables = g.Module(os.path.join(tf_root, "modules", "aws", directory)).variables
        if name not in variables:
            problems.append(f"{directory}: variable {name} is missing")
            continue
        for values, expected in cases:
            try:
                got = g.validation_holds(variables[name], values)
            except AssertionError as e:
                problems.append(f"{directory}.{name}: {e}")
                break
            if got != expected:
                problems.append(f"{directory}.{name}: {values} {'accepted' if got else 'refused'}, expected {'accepted' if expected else 'refused'}")
    return problems
