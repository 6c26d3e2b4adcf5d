# meshmq replicants on AWS: a launch template whose user data installs the release and
# writes the node's environment, an Auto Scaling group over the private subnets, the
# scale-in lifecycle hook that the on-instance handler (meshmq-lifecycle) completes after
# evacuating the node, and the replicants' security group.

locals {
  ports = {
    mqtt   = 1883
    mqtts  = 8883
    ws     = 8083
    wss    = 8084
    http   = 18083
    peer   = 5370
    health = var.health_check_port
  }
  asg_name  = "${var.name}-replicants"
  hook_name = "meshmq-evacuate"
  # Ports the load balancer reaches: the listeners it forwards to and the health shim.
  lb_ports = var.tls_mode == "passthrough" ? ["mqtt", "mqtts", "ws", "wss", "health"] : ["mqtt", "ws", "health"]
}

resource "aws_security_group" "replicant" {
  name_prefix = "${var.name}-replicant-"
  description = "meshmq replicants: MQTT/WS and health from the load balancer, peer QUIC between replicants, HTTP from monitoring"
  vpc_id      = var.vpc_id
  tags        = { Name = "${var.name}-replicant" }
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "from_lb" {
  for_each                     = toset(local.lb_ports)
  security_group_id            = aws_security_group.replicant.id
  description                  = "${each.key} from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = local.ports[each.key]
  to_port                      = local.ports[each.key]
  referenced_security_group_id = var.lb_security_group_id
}

resource "aws_vpc_security_group_ingress_rule" "peer" {
  security_group_id            = aws_security_group.replicant.id
  description                  = "Peer QUIC between replicants (message forwarding, session hand-over)"
  ip_protocol                  = "udp"
  from_port                    = local.ports.peer
  to_port                      = local.ports.peer
  referenced_security_group_id = aws_security_group.replicant.id
}

resource "aws_vpc_security_group_ingress_rule" "http" {
  count                        = length(concat(var.monitoring_security_group_ids, var.api_security_group_ids))
  security_group_id            = aws_security_group.replicant.id
  description                  = "HTTP API and /metrics"
  ip_protocol                  = "tcp"
  from_port                    = local.ports.http
  to_port                      = local.ports.http
  referenced_security_group_id = concat(var.monitoring_security_group_ids, var.api_security_group_ids)[count.index]
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.replicant.id
  description       = "Release download, SSM, CloudWatch, cores and peers"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_launch_template" "replicant" {
  name_prefix            = "${var.name}-replicant-"
  image_id               = var.ami_id
  instance_type          = var.instance_type
  vpc_security_group_ids = [aws_security_group.replicant.id]
  update_default_version = true
  iam_instance_profile {
    arn = module.role.instance_profile_arn
  }
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = 16
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }
  # gzip: cloud-init unpacks it; keeps the script under EC2's 16 KiB user-data limit.
  user_data = base64gzip(templatefile("${path.module}/user-data.sh.tftpl", {
    node_lib          = file("${path.module}/../../../scripts/node-lib.sh")
    lifecycle_handler = file("${path.module}/../../../scripts/lifecycle-handler")
    publish_conns     = file("${path.module}/../../../scripts/publish-connections")
    health_shim       = file("${path.module}/../../../scripts/health-shim.cfg")
    version           = var.meshmq_version
    release_url       = var.release_url
    release_sha256    = var.release_sha256
    ssm_prefix        = var.ssm_prefix
    cores             = join(", ", var.core_addresses)
    proxy_trusted     = join(", ", var.proxy_trusted_cidrs)
    tls_passthrough   = var.tls_mode == "passthrough"
    allow_anonymous   = var.allow_anonymous
    ports             = local.ports
    asg_name          = local.asg_name
    hook_name         = local.hook_name
    evacuate_timeout  = var.evacuation_timeout_seconds
    wait_health_check = var.evacuation_wait_health_check
    wait_takeover     = var.evacuation_wait_takeover
  }))
  tag_specifications {
    resource_type = "instance"
    tags = {
      Name             = "${var.name}-replicant"
      "meshmq:cluster" = var.name
      "meshmq:role"    = "replicant"
      "meshmq:version" = var.meshmq_version
    }
  }
  tag_specifications {
    resource_type = "volume"
    tags          = { Name = "${var.name}-replicant", "meshmq:cluster" = var.name }
  }
  lifecycle {
    precondition {
      condition     = length(var.core_addresses) > 0
      error_message = "core_addresses is empty: replicants need the cores."
    }
  }
}

resource "aws_autoscaling_group" "replicants" {
  name                = local.asg_name
  vpc_zone_identifier = var.subnet_ids
  min_size            = var.min_size
  max_size            = var.max_size
  desired_capacity    = var.desired_capacity
  # EC2, not ELB: a replicant that is evacuating or rebalancing answers 503 on purpose (the
  # load balancer drains it); the group must not replace it for that.
  health_check_type         = "EC2"
  health_check_grace_period = 180
  default_instance_warmup   = 120
  termination_policies      = ["OldestLaunchTemplate", "OldestInstance"]
  launch_template {
    id      = aws_launch_template.replicant.id
    version = aws_launch_template.replicant.latest_version
  }
  # A new launch template version (new meshmq_version, AMI, instance type) rolls the group:
  # new instances first (max 200%), an old one leaves only when the group is whole
  # (min 100%), and each leaving instance goes through the scale-in hook: evacuated first.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 100
      max_healthy_percentage = 200
      instance_warmup        = 120
      skip_matching          = true
    }
  }
  tag {
    key                 = "meshmq:cluster"
    value               = var.name
    propagate_at_launch = true
  }
  tag {
    key                 = "meshmq:role"
    value               = "replicant"
    propagate_at_launch = true
  }
  lifecycle {
    # The scaling policies own the size once the group exists; modules/aws/load_balancer
    # attaches the target groups (aws_autoscaling_attachment), so this resource must not
    # take them off again.
    ignore_changes = [desired_capacity, target_group_arns, load_balancers]
  }
}

# Scale-in (and instance refresh, and terminate-instance-in-auto-scaling-group) waits here
# until meshmq-lifecycle on the instance has evacuated it and completes the action. If the
# handler is gone, CONTINUE after the timeout: the instance terminates, and a graceful stop
# of an evacuating node still finishes its evacuation first.
resource "aws_autoscaling_lifecycle_hook" "scale_in" {
  name                   = local.hook_name
  autoscaling_group_name = aws_autoscaling_group.replicants.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = 600
  default_result         = "CONTINUE"
}
