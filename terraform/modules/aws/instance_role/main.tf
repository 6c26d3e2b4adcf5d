# One EC2 instance role: assumed by EC2, its own inline policy, Session Manager's agent when
# enabled, and the instance profile. Each node module passes what its instances may do.

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name_prefix        = var.name_prefix
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy" "own" {
  name   = var.policy_name
  role   = aws_iam_role.this.id
  policy = var.policy_json
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
  name   = "${var.policy_name}-session-manager"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.session_manager.json
}

resource "aws_iam_instance_profile" "this" {
  name_prefix = var.name_prefix
  role        = aws_iam_role.this.name
}
