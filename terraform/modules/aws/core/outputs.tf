output "security_group_id" {
  description = "The cores' security group."
  value       = aws_security_group.core.id
}

output "core_addresses" {
  description = "QUIC addresses of the cores (stable DNS names), for the replicants' cluster.cores."
  value       = [for i in local.ids : "${local.fqdn[i]}:${local.quic_port}"]
}

output "core_http_endpoints" {
  description = "Admin HTTP endpoint of each core (cluster API, /metrics), reachable from the cluster's security groups."
  value       = { for i in local.ids : i => "http://${local.fqdn[i]}:${local.http_port}" }
}

output "instance_ids" {
  description = "Core instance ids by core id."
  value       = { for i in local.ids : i => aws_instance.core[i - 1].id }
}

output "data_volume_ids" {
  description = "EBS data volume ids by core id."
  value       = { for i in local.ids : i => aws_ebs_volume.data[i - 1].id }
}
