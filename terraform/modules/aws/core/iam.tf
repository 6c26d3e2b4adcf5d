# The cores' instance profile: read the cluster CA, this cluster's core certificates and keys
# and the core API key from SSM Parameter Store, nothing else (plus Session Manager when
# enabled).

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  param_arn = "arn:${data.aws_partition.current.partition}:ssm:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:parameter${var.ssm_prefix}"
}

data "aws_iam_policy_document" "secrets" {
  statement {
    sid     = "CoreSecrets"
    actions = ["ssm:GetParameter"]
    resources = [
      "${local.param_arn}/certs/ca.pem",
      "${local.param_arn}/certs/core-*",
      "${local.param_arn}/core-api-key",
    ]
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
  name_prefix            = "${var.name}-core-"
  policy_name            = "meshmq-core"
  policy_json            = data.aws_iam_policy_document.secrets.json
  enable_session_manager = var.enable_session_manager
}
