output "dns_name" {
  description = "The NLB's DNS name (clients connect here)."
  value       = aws_lb.this.dns_name
}

output "zone_id" {
  description = "The NLB's hosted zone, for an alias record."
  value       = aws_lb.this.zone_id
}

output "security_group_id" {
  description = "The NLB's security group (the replicants admit client traffic from it only)."
  value       = aws_security_group.lb.id
}

output "subnet_cidrs" {
  description = "CIDR blocks the NLB connects from: the replicants' proxy_protocol_trusted."
  value       = [for s in data.aws_subnet.lb : s.cidr_block]
}

output "target_group_arns" {
  description = "Target groups by name (mqtt, ws, and in passthrough mqtts, wss; api when enabled)."
  value       = merge({ for k, tg in aws_lb_target_group.replicants : k => tg.arn }, { for tg in aws_lb_target_group.api : "api" => tg.arn })
}
