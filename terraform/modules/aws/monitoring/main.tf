# meshmq monitoring on AWS: one instance running Prometheus (EC2 service discovery of the
# cluster's cores and replicants by tag) and Grafana (Prometheus as its data source, the
# meshmq dashboard provisioned), reachable from allowed_cidrs only.

data "aws_region" "current" {}

locals {
  jobs = [
    {
      name             = "meshmq-core"
      role             = "core"
      port             = var.core_metrics_port
      node_source      = "__meta_ec2_tag_meshmq_core_id"
      node_replacement = "core-$${1}"
    },
    {
      name             = "meshmq-replicant"
      role             = "replicant"
      port             = var.replicant_metrics_port
      node_source      = "__meta_ec2_instance_id"
      node_replacement = "$${1}"
    },
  ]
  prometheus_yml = templatefile("${path.module}/prometheus.yml.tftpl", {
    cluster = var.name
    region  = data.aws_region.current.name
    jobs    = local.jobs
  })
  user_data = base64gzip(templatefile("${path.module}/user-data.sh.tftpl", {
    node_lib           = file("${path.module}/../../../scripts/node-lib.sh")
    prometheus_yml_b64 = base64encode(local.prometheus_yml)
    dashboard_b64      = base64encode(var.dashboard_json)
    prometheus_version = var.prometheus_version
    grafana_version    = var.grafana_version
    retention          = var.retention
    ssm_prefix         = var.ssm_prefix
  }))
}

resource "aws_security_group" "monitoring" {
  name_prefix = "${var.name}-monitoring-"
  description = "meshmq Prometheus and Grafana: from allowed_cidrs only"
  vpc_id      = var.vpc_id
  tags        = { Name = "${var.name}-monitoring" }
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "ui" {
  for_each = {
    for pair in setproduct(["3000", "9090"], var.allowed_cidrs) : "${pair[0]}-${pair[1]}" => pair
  }
  security_group_id = aws_security_group.monitoring.id
  description       = each.value[0] == "3000" ? "Grafana" : "Prometheus"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.value[0])
  to_port           = tonumber(each.value[0])
  cidr_ipv4         = can(cidrnetmask(each.value[1])) ? each.value[1] : null
  cidr_ipv6         = can(cidrnetmask(each.value[1])) ? null : each.value[1]
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.monitoring.id
  description       = "Scrapes, EC2 API, downloads"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_instance" "monitoring" {
  ami                         = var.ami_id
  instance_type               = var.instance_type
  subnet_id                   = var.subnet_id
  associate_public_ip_address = var.associate_public_ip
  vpc_security_group_ids      = [aws_security_group.monitoring.id]
  iam_instance_profile        = module.role.instance_profile_name
  user_data_base64            = local.user_data
  user_data_replace_on_change = true
  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    http_endpoint               = "enabled"
  }
  root_block_device {
    encrypted   = true
    volume_type = "gp3"
    volume_size = 50
  }
  tags = {
    Name             = "${var.name}-monitoring"
    "meshmq:cluster" = var.name
    "meshmq:role"    = "monitoring"
  }
  lifecycle {
    precondition {
      # EC2 takes at most 16 KiB of user data (before base64).
      condition     = length(local.user_data) * 3 / 4 <= 16384
      error_message = "The monitoring user data is over 16 KiB even gzipped: serve the dashboard from S3 instead."
    }
  }
}
