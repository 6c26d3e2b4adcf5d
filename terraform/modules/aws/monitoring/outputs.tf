output "security_group_id" {
  description = "The monitoring instance's security group (give it to the core and replicant modules so it may scrape)."
  value       = aws_security_group.monitoring.id
}

output "grafana_url" {
  description = "Grafana (user admin, password in <ssm_prefix>/grafana-admin-password)."
  value       = "http://${coalesce(aws_instance.monitoring.public_ip, aws_instance.monitoring.private_ip)}:3000"
}

output "prometheus_url" {
  description = "Prometheus."
  value       = "http://${coalesce(aws_instance.monitoring.public_ip, aws_instance.monitoring.private_ip)}:9090"
}

output "prometheus_config" {
  description = "The rendered prometheus.yml."
  value       = local.prometheus_yml
}
