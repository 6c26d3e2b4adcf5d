# The monitoring instance's profile: EC2 service discovery (Describe*) and Grafana's admin
# password from SSM; nothing else.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_iam_policy_document" "monitoring" {
  statement {
    sid       = "Ec2ServiceDiscovery"
    actions   = ["ec2:DescribeInstances", "ec2:DescribeAvailabilityZones"]
    resources = ["*"]
  }
  statement {
    sid       = "GrafanaPassword"
    actions   = ["ssm:GetParameter"]
    resources = ["arn:${data.aws_partition.current.partition}:ssm:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:parameter${var.ssm_prefix}/grafana-admin-password"]
  }
  dynamic "statement" {
    for_each = var.kms_key_arn == "" ? [] : [var.kms_key_arn]
    content {
      sid       = "DecryptSecrets"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

module "role" {
  source                 = "../instance_role"
  name_prefix            = "${var.name}-monitoring-"
  policy_name            = "meshmq-monitoring"
  policy_json            = data.aws_iam_policy_document.monitoring.json
  enable_session_manager = var.enable_session_manager
}
