# The replicants' instance profile: read the cluster CA's certificate and key (each replicant
# issues its own certificate at first boot, see the user data), the replicant API key (and
# the MQTT TLS pair in passthrough mode) from SSM; heartbeat and complete this group's
# scale-in hook; publish the connections metric. Nothing else. Reading ca.key means a
# compromised instance can mint node certificates (terraform/README.md, Known gaps).

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  arn_tail  = "${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}"
  param_arn = "arn:${data.aws_partition.current.partition}:ssm:${local.arn_tail}:parameter${var.ssm_prefix}"
  asg_arn   = "arn:${data.aws_partition.current.partition}:autoscaling:${local.arn_tail}:autoScalingGroup:*:autoScalingGroupName/${local.asg_name}"
}

data "aws_iam_policy_document" "replicant" {
  statement {
    sid     = "ReplicantSecrets"
    actions = ["ssm:GetParameter"]
    resources = concat([
      "${local.param_arn}/certs/ca.pem",
      "${local.param_arn}/certs/ca.key",
      "${local.param_arn}/replicant-api-key",
      ], var.tls_mode == "passthrough" ? [
      "${local.param_arn}/mqtt-tls.pem",
      "${local.param_arn}/mqtt-tls.key",
    ] : [])
  }
  statement {
    sid = "ScaleInHook"
    actions = [
      "autoscaling:CompleteLifecycleAction",
      "autoscaling:RecordLifecycleActionHeartbeat",
    ]
    resources = [local.asg_arn]
  }
  statement {
    sid       = "ConnectionsMetric"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["Meshmq"]
    }
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
  name_prefix            = "${var.name}-replicant-"
  policy_name            = "meshmq-replicant"
  policy_json            = data.aws_iam_policy_document.replicant.json
  enable_session_manager = var.enable_session_manager
}
