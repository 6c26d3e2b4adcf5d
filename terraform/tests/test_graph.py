"""Graph checks of terraform/ (python-hcl2): what the AWS modules and examples/basic must hold.

Each check is a function returning the problems it finds in a terraform/ tree. The tests run
every check on the real tree (no problems) and on deliberately broken copies (a problem
found), so a check that cannot fail shows up as a failing test.

Run: scripts/check-terraform (it makes the venv), or
     python -m unittest discover -s terraform/tests -p 'test_graph.py'
"""

import fnmatch
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

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
        iam = read(tf_root, "modules", "aws", directory, "iam.tf")
        allowed = [re.sub(r"^\$\{local\.param_arn\}/", "", a) for a in re.findall(r'"(\$\{local\.param_arn\}/[^"]+)"', iam)]
        allowed += re.findall(r'parameter\$\{var\.ssm_prefix\}/([^"]+)"', iam)
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


# --- tests -------------------------------------------------------------------------------

class Broken:
    """A copy of terraform/ (and deploy/, which it reads) with one text substitution."""

    def __init__(self, rel_path, old, new):
        self.rel_path, self.old, self.new = rel_path, old, new

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="meshmq-tf-broken-")
        shutil.copytree(TF_ROOT, os.path.join(self.dir, "terraform"), ignore=shutil.ignore_patterns(".terraform", "__pycache__"))
        shutil.copytree(os.path.join(REPO, "deploy"), os.path.join(self.dir, "deploy"))
        path = os.path.join(self.dir, "terraform", self.rel_path)
        text = read(path)
        if self.old not in text:
            raise AssertionError(f"{self.old!r} not in {self.rel_path}: update the test")
        with open(path, "w") as f:
            f.write(text.replace(self.old, self.new, 1))
        return os.path.join(self.dir, "terraform")

    def __exit__(self, *exc):
        shutil.rmtree(self.dir)


class RealTree(unittest.TestCase):
    def test_every_tf_file_parses(self):
        count = 0
        for dirpath, dirnames, filenames in os.walk(TF_ROOT):
            dirnames[:] = [d for d in dirnames if d != ".terraform"]
            for f in filenames:
                if f.endswith(".tf"):
                    with open(os.path.join(dirpath, f)) as fh:
                        g.hcl2.load(fh)
                    count += 1
        self.assertGreaterEqual(count, 20)

    def test_asg_and_lifecycle_hook(self):
        self.assertEqual(check_asg_and_hook(TF_ROOT), [])

    def test_nlb_target_groups(self):
        self.assertEqual(check_target_groups(TF_ROOT), [])

    def test_core_ports_closed_to_world(self):
        self.assertEqual(check_core_closed_to_world(TF_ROOT), [])

    @unittest.skipUnless(shutil.which("terraform"), "terraform renders the Prometheus template")
    def test_prometheus_scrape_config(self):
        self.assertEqual(check_prometheus(TF_ROOT), [])

    def test_variable_validations(self):
        self.assertEqual(check_validations(TF_ROOT), [])

    def test_example_basics(self):
        self.assertEqual(check_example_basics(TF_ROOT), [])

    def test_secret_names_agree(self):
        self.assertEqual(check_secret_names(TF_ROOT), [])


class BrokenCopies(unittest.TestCase):
    """Each check notices a deliberately broken copy."""

    def assertFinds(self, check, broken, needle):
        with broken as root:
            problems = check(root)
        self.assertTrue(any(needle in p for p in problems), f"{needle!r} not in {problems}")

    def test_core_security_group_open_to_world(self):
        rule = '''
resource "aws_vpc_security_group_ingress_rule" "oops" {
  security_group_id = aws_security_group.core.id
  ip_protocol       = "udp"
  from_port         = 4370
  to_port           = 4370
  cidr_ipv4         = "0.0.0.0/0"
}
'''
        self.assertFinds(check_core_closed_to_world,
                         Broken("modules/aws/core/main.tf", "resource \"aws_ebs_volume\"", rule + "\nresource \"aws_ebs_volume\""),
                         "world: True")

    def test_replicant_http_open_to_world(self):
        self.assertFinds(check_core_closed_to_world,
                         Broken("modules/aws/replicant_group/main.tf",
                                "  referenced_security_group_id = concat(var.monitoring_security_group_ids, var.api_security_group_ids)[count.index]",
                                '  cidr_ipv6 = "::/0"'),
                         "world: True")

    def test_hook_on_launch_instead_of_termination(self):
        self.assertFinds(check_asg_and_hook,
                         Broken("modules/aws/replicant_group/main.tf", "autoscaling:EC2_INSTANCE_TERMINATING", "autoscaling:EC2_INSTANCE_LAUNCHING"),
                         "EC2_INSTANCE_TERMINATING")

    def test_hook_abandons(self):
        self.assertFinds(check_asg_and_hook,
                         Broken("modules/aws/replicant_group/main.tf", 'default_result         = "CONTINUE"', 'default_result         = "ABANDON"'),
                         "default_result")

    def test_refresh_terminates_first(self):
        self.assertFinds(check_asg_and_hook,
                         Broken("modules/aws/replicant_group/main.tf", "min_healthy_percentage = 100", "min_healthy_percentage = 90"),
                         "min_healthy_percentage")

    def test_no_connections_policy(self):
        self.assertFinds(check_asg_and_hook,
                         Broken("modules/aws/replicant_group/scaling.tf", '"ConnectionsPerNode"', '"Connections"'),
                         "ConnectionsPerNode")

    def test_target_group_without_proxy_protocol(self):
        self.assertFinds(check_target_groups,
                         Broken("modules/aws/load_balancer/main.tf", "proxy_protocol_v2    = true", "proxy_protocol_v2    = false"),
                         "proxy_protocol_v2")

    def test_asg_would_detach_target_groups(self):
        self.assertFinds(check_target_groups,
                         Broken("modules/aws/replicant_group/main.tf", "ignore_changes = [desired_capacity, target_group_arns, load_balancers]", "ignore_changes = [desired_capacity]"),
                         "target_group_arns")

    def test_health_check_wrong_path(self):
        self.assertFinds(check_target_groups,
                         Broken("modules/aws/load_balancer/main.tf", 'health_path = "/api/v5/load_rebalance/availability_check"', 'health_path = "/health"'),
                         "path")

    def test_health_check_on_traffic_port(self):
        self.assertFinds(check_target_groups,
                         Broken("modules/aws/load_balancer/main.tf", "port                = tostring(var.replicant_ports.health)", 'port                = "traffic-port"'),
                         "health check port")

    @unittest.skipUnless(shutil.which("terraform"), "terraform renders the Prometheus template")
    def test_prometheus_without_tag_filter(self):
        self.assertFinds(check_prometheus,
                         Broken("modules/aws/monitoring/prometheus.yml.tftpl", "name: tag:meshmq:cluster", "name: tag:Name"),
                         "tag:meshmq:cluster")

    @unittest.skipUnless(shutil.which("terraform"), "terraform renders the Prometheus template")
    def test_prometheus_wrong_port(self):
        self.assertFinds(check_prometheus,
                         Broken("modules/aws/monitoring/main.tf", "port             = var.core_metrics_port", "port             = 4370"),
                         "scrapes port")

    def test_core_count_even_accepted(self):
        self.assertFinds(check_validations,
                         Broken("examples/basic/variables.tf", "var.core_count % 2 == 1 && contains([3, 5], var.core_count)", "var.core_count >= 3"),
                         "core_count")

    def test_replicant_range_unchecked(self):
        self.assertFinds(check_validations,
                         Broken("examples/basic/variables.tf", "var.replicant_min <= var.replicant_desired && var.replicant_desired <= var.replicant_max", "var.replicant_desired >= 0"),
                         "replicant_desired")

    def test_example_without_default_tags(self):
        self.assertFinds(check_example_basics,
                         Broken("examples/basic/versions.tf", '"meshmq:cluster" = var.name', '"cluster" = var.name'),
                         "default_tags")

    def test_example_provider_unpinned(self):
        self.assertFinds(check_example_basics,
                         Broken("examples/basic/versions.tf", 'version = "~> 5.70"', 'version = ">= 5.0"'),
                         "pin")

    def test_user_data_reads_unwritten_secret(self):
        self.assertFinds(check_secret_names,
                         Broken("modules/aws/core/user-data.sh.tftpl", '"${ssm_prefix}/core-api-key"', '"${ssm_prefix}/core-api-token"'),
                         "put-secrets does not write")

    def test_iam_misses_a_secret(self):
        self.assertFinds(check_secret_names,
                         Broken("modules/aws/replicant_group/iam.tf", '"${local.param_arn}/replicant-api-key",', ""),
                         "IAM policy does not allow")

    def test_tls_module_misses_a_secret(self):
        self.assertFinds(check_secret_names,
                         Broken("modules/aws/secrets_tls/main.tf", '["certs/ca.pem", "core-api-key", "replicant-api-key", "grafana-admin-password"]', '["certs/ca.pem", "core-api-key", "replicant-api-key"]'),
                         "secrets_tls does not write")

    def test_tls_module_names_and_values_differ(self):
        self.assertFinds(check_secret_names,
                         Broken("modules/aws/secrets_tls/main.tf", '"grafana-admin-password" = random_password.grafana.result', '"grafana-password" = random_password.grafana.result'),
                         "differ")

    def test_admin_cidrs_world_accepted(self):
        self.assertFinds(check_validations,
                         Broken("examples/basic/variables.tf", ' && !contains(["0.0.0.0/0", "::/0"], c)', ""),
                         "admin_cidrs")


if __name__ == "__main__":
    unittest.main()
