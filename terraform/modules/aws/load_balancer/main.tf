# meshmq load balancer on AWS: an NLB with MQTT (1883), MQTT/TLS (8883), WebSocket (8083)
# and secure WebSocket (8084) listeners, target groups that send PROXY protocol v2 (the
# replicants' listeners read it, so client addresses survive) and health-check
# GET /api/v5/load_rebalance/availability_check (503 while a replicant evacuates, so the NLB
# stops sending it clients), all registered with the replicants' Auto Scaling group.

locals {
  terminate = var.tls_mode == "terminate"
  # Target groups: name => replicant port.
  target_groups = merge(
    { mqtt = var.replicant_ports.mqtt, ws = var.replicant_ports.ws },
    local.terminate ? {} : { mqtts = var.replicant_ports.mqtts, wss = var.replicant_ports.wss },
  )
  # Listeners: port => protocol and target group. With termination the TLS listeners reach
  # the plain listeners (the PROXY header still carries the client's address).
  listeners = {
    "1883" = { protocol = "TCP", target = "mqtt" }
    "8883" = { protocol = local.terminate ? "TLS" : "TCP", target = local.terminate ? "mqtt" : "mqtts" }
    "8083" = { protocol = "TCP", target = "ws" }
    "8084" = { protocol = local.terminate ? "TLS" : "TCP", target = local.terminate ? "ws" : "wss" }
  }
  health_path = "/api/v5/load_rebalance/availability_check"
}

data "aws_subnet" "lb" {
  count = length(var.subnet_ids)
  id    = var.subnet_ids[count.index]
}

resource "aws_security_group" "lb" {
  name_prefix = "${var.name}-nlb-"
  description = "meshmq NLB: MQTT/WS from allowed_cidrs, out to the replicants only"
  vpc_id      = var.vpc_id
  tags        = { Name = "${var.name}-nlb" }
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "clients" {
  for_each = {
    for pair in setproduct(keys(local.listeners), var.allowed_cidrs) : "${pair[0]}-${pair[1]}" => pair
  }
  security_group_id = aws_security_group.lb.id
  description       = "Clients on ${each.value[0]}"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.value[0])
  to_port           = tonumber(each.value[0])
  cidr_ipv4         = can(cidrnetmask(each.value[1])) ? each.value[1] : null
  cidr_ipv6         = can(cidrnetmask(each.value[1])) ? null : each.value[1]
}

resource "aws_vpc_security_group_ingress_rule" "api" {
  for_each          = toset(var.api_allowed_cidrs)
  security_group_id = aws_security_group.lb.id
  description       = "REST API"
  ip_protocol       = "tcp"
  from_port         = var.replicant_ports.http
  to_port           = var.replicant_ports.http
  cidr_ipv4         = can(cidrnetmask(each.value)) ? each.value : null
  cidr_ipv6         = can(cidrnetmask(each.value)) ? null : each.value
}

resource "aws_vpc_security_group_egress_rule" "to_replicants" {
  for_each = toset(distinct(concat(
    [for k, port in local.target_groups : tostring(port)],
    [tostring(var.replicant_ports.health)],
    length(var.api_allowed_cidrs) > 0 ? [tostring(var.replicant_ports.http)] : [],
  )))
  security_group_id            = aws_security_group.lb.id
  description                  = "To the replicants on ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.key)
  to_port                      = tonumber(each.key)
  referenced_security_group_id = var.replicant_security_group_id
}

resource "aws_lb" "this" {
  name                             = "${var.name}-nlb"
  load_balancer_type               = "network"
  internal                         = var.internal
  subnets                          = var.subnet_ids
  security_groups                  = [aws_security_group.lb.id]
  enable_cross_zone_load_balancing = true
}

resource "aws_lb_target_group" "replicants" {
  for_each             = local.target_groups
  name                 = "${var.name}-${each.key}"
  port                 = each.value
  protocol             = "TCP"
  vpc_id               = var.vpc_id
  target_type          = "instance"
  proxy_protocol_v2    = true
  preserve_client_ip   = false
  deregistration_delay = var.deregistration_delay
  # Connections are kept on deregistration: the evacuation moves them itself.
  connection_termination = false
  health_check {
    protocol            = "HTTP"
    port                = tostring(var.replicant_ports.health)
    path                = local.health_path
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_listener" "mqtt" {
  for_each          = local.listeners
  load_balancer_arn = aws_lb.this.arn
  port              = tonumber(each.key)
  protocol          = each.value.protocol
  certificate_arn   = each.value.protocol == "TLS" ? var.acm_certificate_arn : null
  ssl_policy        = each.value.protocol == "TLS" ? var.ssl_policy : null
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.replicants[each.value.target].arn
  }
  lifecycle {
    precondition {
      condition     = each.value.protocol != "TLS" || var.acm_certificate_arn != ""
      error_message = "tls_mode = \"terminate\" needs acm_certificate_arn."
    }
  }
}

# The REST API, only when api_allowed_cidrs is set: no PROXY header (the HTTP listener does
# not read one), checked on /health (an evacuating node still serves its API).
resource "aws_lb_target_group" "api" {
  count              = length(var.api_allowed_cidrs) > 0 ? 1 : 0
  name               = "${var.name}-api"
  port               = var.replicant_ports.http
  protocol           = "TCP"
  vpc_id             = var.vpc_id
  target_type        = "instance"
  proxy_protocol_v2  = false
  preserve_client_ip = false
  health_check {
    protocol = "HTTP"
    port     = "traffic-port"
    path     = "/health"
    matcher  = "200"
  }
}

# TLS at the NLB (the API key travels in every request): never plain TCP.
resource "aws_lb_listener" "api" {
  count             = length(var.api_allowed_cidrs) > 0 ? 1 : 0
  load_balancer_arn = aws_lb.this.arn
  port              = var.replicant_ports.http
  protocol          = "TLS"
  certificate_arn   = var.acm_certificate_arn
  ssl_policy        = var.ssl_policy
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api[0].arn
  }
  lifecycle {
    precondition {
      condition     = var.acm_certificate_arn != ""
      error_message = "api_allowed_cidrs (the REST API listener, TLS) needs acm_certificate_arn."
    }
  }
}

resource "aws_autoscaling_attachment" "replicants" {
  for_each               = merge(aws_lb_target_group.replicants, { for i, tg in aws_lb_target_group.api : "api" => tg })
  autoscaling_group_name = var.autoscaling_group_name
  lb_target_group_arn    = each.value.arn
}
