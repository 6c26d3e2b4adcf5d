"""Graph tests of terraform/: every check of graph_checks.py on the real tree (no problems)
and on deliberately broken copies (the problem found), so a check that cannot fail shows up
as a failing test.

Run: scripts/check-terraform (it makes the venv), or
     python -m unittest discover -s terraform/tests -p 'test_graph.py'
"""

import os
import shutil
import tempfile
import unittest

import tfgraph as g
from graph_checks import (
    REPO,
    TF_ROOT,
    check_api_listener_tls,
    check_asg_and_hook,
    check_core_closed_to_world,
    check_example_basics,
    check_iam_least_privilege,
    check_module_validations,
    check_prometheus,
    check_replicant_certificate,
    check_secret_names,
    check_target_groups,
    check_validations,
    read,
)


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
            shutil.rmtree(self.dir)
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

    def test_replicants_issue_their_own_certificate(self):
        self.assertEqual(check_replicant_certificate(TF_ROOT), [])

    def test_iam_least_privilege(self):
        self.assertEqual(check_iam_least_privilege(TF_ROOT), [])

    def test_api_listener_tls(self):
        self.assertEqual(check_api_listener_tls(TF_ROOT), [])

    def test_module_validations(self):
        self.assertEqual(check_module_validations(TF_ROOT), [])


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
                         Broken("modules/aws/secrets_tls/main.tf", '["certs/ca.pem", "certs/ca.key", "core-api-key", "replicant-api-key", "grafana-admin-password"]', '["certs/ca.pem", "certs/ca.key", "core-api-key", "replicant-api-key"]'),
                         "secrets_tls does not write")

    def test_tls_module_names_and_values_differ(self):
        self.assertFinds(check_secret_names,
                         Broken("modules/aws/secrets_tls/main.tf", '"grafana-admin-password" = random_password.grafana.result', '"grafana-password" = random_password.grafana.result'),
                         "differ")

    def test_replicants_share_one_certificate(self):
        shared = ('fetch_param "${ssm_prefix}/certs/replicant.pem" "/etc/meshmq/certs/$instance_id.pem" 0640\n'
                  'fetch_param "${ssm_prefix}/certs/replicant.key" "/etc/meshmq/certs/$instance_id.key" 0640')
        self.assertFinds(check_replicant_certificate,
                         Broken("modules/aws/replicant_group/user-data.sh.tftpl",
                                'issue_node_cert /etc/meshmq/certs "$instance_id" "$ca_key_dir/ca.key"', shared),
                         "shared by the replicants")

    def test_certificate_under_a_fixed_name(self):
        self.assertFinds(check_replicant_certificate,
                         Broken("modules/aws/replicant_group/user-data.sh.tftpl",
                                'issue_node_cert /etc/meshmq/certs "$instance_id"', "issue_node_cert /etc/meshmq/certs replicant"),
                         '"$instance_id"')

    def test_ca_key_left_on_the_instance(self):
        self.assertFinds(check_replicant_certificate,
                         Broken("modules/aws/replicant_group/user-data.sh.tftpl", 'rm -rf "$ca_key_dir"\n', ""),
                         "before the services start")

    def test_ca_key_kept_on_failure(self):
        self.assertFinds(check_replicant_certificate,
                         Broken("modules/aws/replicant_group/user-data.sh.tftpl", """trap 'rm -rf "$ca_key_dir"' EXIT\n""", ""),
                         "fails")

    def test_ca_key_on_disk(self):
        self.assertFinds(check_replicant_certificate,
                         Broken("modules/aws/replicant_group/user-data.sh.tftpl", "mktemp -d /run/meshmq-ca", "mktemp -d /etc/meshmq/ca"),
                         "/run")

    def test_certificate_without_the_node_name(self):
        self.assertFinds(check_replicant_certificate,
                         Broken("scripts/node-lib.sh", '-subj "/CN=$name/O=meshmq"', '-subj "/CN=replicant/O=meshmq"'),
                         "common name")

    def test_core_role_reads_ca_key(self):
        self.assertFinds(check_replicant_certificate,
                         Broken("modules/aws/core/iam.tf", '"${local.param_arn}/certs/core-*",', '"${local.param_arn}/certs/*",'),
                         "core: its IAM policy allows reading certs/ca.key")

    def test_monitoring_role_reads_ca_key(self):
        self.assertFinds(check_replicant_certificate,
                         Broken("modules/aws/monitoring/iam.tf", "parameter${var.ssm_prefix}/grafana-admin-password", "parameter${var.ssm_prefix}/*"),
                         "monitoring: its IAM policy allows reading certs/ca.key")

    def test_replicant_role_cannot_read_ca_key(self):
        self.assertFinds(check_replicant_certificate,
                         Broken("modules/aws/replicant_group/iam.tf", '"${local.param_arn}/certs/ca.key",', ""),
                         "replicant_group: its IAM policy does not allow")

    def test_put_secrets_makes_shared_certificate(self):
        self.assertFinds(check_replicant_certificate,
                         Broken("scripts/put-secrets", 'put certs/ca.pem "$out/certs/ca.pem"',
                                'put certs/ca.pem "$out/certs/ca.pem"\nput certs/replicant.pem "$out/certs/replicant.pem"'),
                         "put-secrets still makes")

    def test_tls_module_makes_shared_certificate(self):
        self.assertFinds(check_replicant_certificate,
                         Broken("modules/aws/secrets_tls/main.tf", 'nodes = [for i in range(1, var.core_count + 1) : "core-${i}"]',
                                'nodes = concat([for i in range(1, var.core_count + 1) : "core-${i}"], ["replicant"])'),
                         "secrets_tls still makes")

    def test_tls_module_without_ca_key(self):
        self.assertFinds(check_replicant_certificate,
                         Broken("modules/aws/secrets_tls/main.tf", '["certs/ca.pem", "certs/ca.key", ', '["certs/ca.pem", '),
                         "certs/ca.key")

    def test_admin_cidrs_world_accepted(self):
        self.assertFinds(check_validations,
                         Broken("examples/basic/variables.tf", ' && !contains(["0.0.0.0/0", "::/0"], c)', ""),
                         "admin_cidrs")

    def test_managed_ssm_policy_attached(self):
        attach = '''
resource "aws_iam_role_policy_attachment" "oops" {
  role       = aws_iam_role.this.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}
'''
        self.assertFinds(check_iam_least_privilege,
                         Broken("modules/aws/instance_role/main.tf", 'resource "aws_iam_instance_profile"', attach + '\nresource "aws_iam_instance_profile"'),
                         "attaches AmazonSSMManagedInstanceCore")

    def test_get_parameter_on_everything(self):
        self.assertFinds(check_iam_least_privilege,
                         Broken("modules/aws/instance_role/main.tf", 'actions   = ["ssm:UpdateInstanceInformation"]', 'actions   = ["ssm:UpdateInstanceInformation", "ssm:GetParameters"]'),
                         "on every parameter")

    def test_session_manager_on_by_default(self):
        self.assertFinds(check_iam_least_privilege,
                         Broken("modules/aws/monitoring/variables.tf", "default     = false", "default     = true"),
                         "enable_session_manager defaults")

    def test_api_listener_plain_tcp(self):
        self.assertFinds(check_api_listener_tls,
                         Broken("modules/aws/load_balancer/main.tf", 'port              = var.replicant_ports.http\n  protocol          = "TLS"', 'port              = var.replicant_ports.http\n  protocol          = "TCP"'),
                         "not TLS")

    def test_api_listener_without_certificate_check(self):
        self.assertFinds(check_api_listener_tls,
                         Broken("modules/aws/load_balancer/main.tf", "condition     = var.acm_certificate_arn != \"\"", "condition     = true"),
                         "precondition")

    def test_module_api_cidrs_world_accepted(self):
        self.assertFinds(check_module_validations,
                         Broken("modules/aws/load_balancer/variables.tf", ' && !contains(["0.0.0.0/0", "::/0"], c)', ""),
                         "load_balancer.api_allowed_cidrs")

    def test_module_monitoring_cidrs_world_accepted(self):
        self.assertFinds(check_module_validations,
                         Broken("modules/aws/monitoring/variables.tf", ' && !contains(["0.0.0.0/0", "::/0"], c)', ""),
                         "monitoring.allowed_cidrs")

    def test_release_checksum_optional(self):
        self.assertFinds(check_module_validations,
                         Broken("modules/aws/core/variables.tf", 'can(regex("^[0-9a-f]{64}$", var.release_sha256))', 'var.release_sha256 == "" || can(regex("^[0-9a-f]{64}$", var.release_sha256))'),
                         "core.release_sha256")


if __name__ == "__main__":
    unittest.main()
