# meshmq core group on AWS: core_count instances (Raft voters) spread over the given
# subnets, each with its own EBS data volume (which outlives the instance), a stable private
# DNS name, a security group open only to the cluster's own security groups, and an instance
# profile that may read only the cluster's core secrets from SSM Parameter Store.

locals {
  quic_port = 4370
  http_port = 18084
  ids       = range(1, var.core_count + 1)
  fqdn      = { for i in local.ids : i => "core-${i}.${var.name}.${trimsuffix(var.dns_zone_name, ".")}" }
  members   = join(",", [for i in local.ids : "${i}=${local.fqdn[i]}:${local.quic_port}"])
}

data "aws_subnet" "core" {
  count = var.core_count
  id    = var.subnet_ids[count.index % length(var.subnet_ids)]
}

resource "aws_security_group" "core" {
  name_prefix = "${var.name}-core-"
  description = "meshmq cores: QUIC and HTTP from the cluster's security groups only"
  vpc_id      = var.vpc_id
  tags        = { Name = "${var.name}-core" }
  lifecycle {
    create_before_destroy = true
  }
}

# Core to core: Raft over QUIC.
resource "aws_vpc_security_group_ingress_rule" "quic_self" {
  security_group_id            = aws_security_group.core.id
  description                  = "Raft between cores (QUIC)"
  ip_protocol                  = "udp"
  from_port                    = local.quic_port
  to_port                      = local.quic_port
  referenced_security_group_id = aws_security_group.core.id
}

resource "aws_vpc_security_group_ingress_rule" "quic_clients" {
  count                        = length(var.client_security_group_ids)
  security_group_id            = aws_security_group.core.id
  description                  = "Core QUIC from a cluster security group"
  ip_protocol                  = "udp"
  from_port                    = local.quic_port
  to_port                      = local.quic_port
  referenced_security_group_id = var.client_security_group_ids[count.index]
}

resource "aws_vpc_security_group_ingress_rule" "http_clients" {
  count                        = length(var.client_security_group_ids)
  security_group_id            = aws_security_group.core.id
  description                  = "Core HTTP (cluster API, /metrics) from a cluster security group"
  ip_protocol                  = "tcp"
  from_port                    = local.http_port
  to_port                      = local.http_port
  referenced_security_group_id = var.client_security_group_ids[count.index]
}

resource "aws_vpc_security_group_ingress_rule" "http_self" {
  security_group_id            = aws_security_group.core.id
  description                  = "Core HTTP between cores (leadership transfer, upgrades)"
  ip_protocol                  = "tcp"
  from_port                    = local.http_port
  to_port                      = local.http_port
  referenced_security_group_id = aws_security_group.core.id
}

# Out: the release download, SSM, the other cores and replicants.
resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.core.id
  description       = "Release download, SSM, cluster traffic"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_ebs_volume" "data" {
  count             = var.core_count
  availability_zone = data.aws_subnet.core[count.index].availability_zone
  size              = var.data_volume_size_gb
  type              = var.data_volume_type
  encrypted         = true
  tags = {
    Name             = "${var.name}-core-${count.index + 1}-data"
    "meshmq:role"    = "core-data"
    "meshmq:core_id" = tostring(count.index + 1)
  }
}

resource "aws_instance" "core" {
  count                  = var.core_count
  ami                    = var.ami_id
  instance_type          = var.instance_type
  subnet_id              = data.aws_subnet.core[count.index].id
  vpc_security_group_ids = [aws_security_group.core.id]
  iam_instance_profile   = module.role.instance_profile_name
  # gzip: cloud-init unpacks it; keeps the script under EC2's 16 KiB user-data limit.
  user_data_base64 = base64gzip(templatefile("${path.module}/user-data.sh.tftpl", {
    node_lib       = file("${path.module}/../../../scripts/node-lib.sh")
    core_id        = count.index + 1
    advertise      = "${local.fqdn[count.index + 1]}:${local.quic_port}"
    members        = local.members
    quic_port      = local.quic_port
    http_port      = local.http_port
    volume_id      = aws_ebs_volume.data[count.index].id
    version        = var.meshmq_version
    release_url    = var.release_url
    release_sha256 = var.release_sha256
    ssm_prefix     = var.ssm_prefix
  }))
  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    http_endpoint               = "enabled"
  }
  root_block_device {
    encrypted   = true
    volume_type = "gp3"
    volume_size = 16
  }
  tags = {
    Name             = "${var.name}-core-${count.index + 1}"
    "meshmq:cluster" = var.name
    "meshmq:role"    = "core"
    "meshmq:core_id" = tostring(count.index + 1)
    "meshmq:version" = var.meshmq_version
  }
  lifecycle {
    # A new version or AMI must not replace every core at once: cores are replaced one at a
    # time with `terraform apply -replace=...` (terraform/README.md, Upgrade).
    ignore_changes = [ami, user_data_base64, tags["meshmq:version"]]
    precondition {
      condition     = length(var.release_url) > 0
      error_message = "release_url is empty."
    }
  }
}

# Attach after the instance boots; the user data waits for the device and mounts it. The
# volume outlives any instance: a replaced core finds its Raft log and snapshot again.
resource "aws_volume_attachment" "data" {
  count                          = var.core_count
  device_name                    = "/dev/sdf"
  volume_id                      = aws_ebs_volume.data[count.index].id
  instance_id                    = aws_instance.core[count.index].id
  stop_instance_before_detaching = true
}

resource "aws_route53_record" "core" {
  count   = var.core_count
  zone_id = var.dns_zone_id
  name    = local.fqdn[count.index + 1]
  type    = "A"
  ttl     = 30
  records = [aws_instance.core[count.index].private_ip]
}
