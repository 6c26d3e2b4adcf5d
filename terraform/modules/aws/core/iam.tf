# The cores' instance profile: read the cluster CA, this cluster's core certificates and keys
# and the core API key from SSM Parameter Store, nothing else (plus Session Manager when
# enabled).

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  param_arn = "arn:${data.aws_partition.current.partition}:ssm:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:parameter${var.ssm_prefix}"
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
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

resource "aws_iam_role" "core" {
  name_prefix        = "${var.name}-core-"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy" "secrets" {
  name   = "meshmq-core-secrets"
  role   = aws_iam_role.core.id
  policy = data.aws_iam_policy_document.secrets.json
}

# Session Manager only (not AmazonSSMManagedInstanceCore, which allows ssm:GetParameter(s)
# on every parameter, the CA key included): the agent's registration and its channels.
data "aws_iam_policy_document" "session_manager" {
  statement {
    sid       = "SessionManagerAgent"
    actions   = ["ssm:UpdateInstanceInformation"]
    resources = ["*"]
  }
  statement {
    sid = "SessionManagerChannels"
    actions = [
      "ssmmessages:CreateControlChannel",
      "ssmmessages:CreateDataChannel",
      "ssmmessages:OpenControlChannel",
      "ssmmessages:OpenDataChannel",
      "ec2messages:AcknowledgeMessage",
      "ec2messages:DeleteMessage",
      "ec2messages:FailMessage",
      "ec2messages:GetEndpoint",
      "ec2messages:GetMessages",
      "ec2messages:SendReply",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "session_manager" {
  count  = var.enable_session_manager ? 1 : 0
  name   = "meshmq-core-session-manager"
  role   = aws_iam_role.core.id
  policy = data.aws_iam_policy_document.session_manager.json
}

resource "aws_iam_instance_profile" "core" {
  name_prefix = "${var.name}-core-"
  role        = aws_iam_role.core.name
}
