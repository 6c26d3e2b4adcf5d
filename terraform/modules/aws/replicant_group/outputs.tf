output "autoscaling_group_name" {
  description = "The replicants' Auto Scaling group."
  value       = aws_autoscaling_group.replicants.name
}

output "security_group_id" {
  description = "The replicants' security group (give it to modules/aws/core as a client)."
  value       = aws_security_group.replicant.id
}

output "lifecycle_hook_name" {
  description = "The scale-in lifecycle hook meshmq-lifecycle completes."
  value       = aws_autoscaling_lifecycle_hook.scale_in.name
}

output "ports" {
  description = "The replicants' ports (mqtt, mqtts, ws, wss, http, peer, health)."
  value       = local.ports
}

output "launch_template_id" {
  description = "The launch template (its latest version is the group's)."
  value       = aws_launch_template.replicant.id
}
