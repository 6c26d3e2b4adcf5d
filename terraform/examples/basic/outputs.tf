output "mqtt_endpoint" {
  description = "MQTT over TCP."
  value       = "mqtt://${module.load_balancer.dns_name}:1883"
}

output "mqtts_endpoint" {
  description = "MQTT over TLS."
  value       = "mqtts://${module.load_balancer.dns_name}:8883"
}

output "ws_endpoint" {
  description = "MQTT over WebSocket."
  value       = "ws://${module.load_balancer.dns_name}:8083/mqtt"
}

output "wss_endpoint" {
  description = "MQTT over secure WebSocket."
  value       = "wss://${module.load_balancer.dns_name}:8084/mqtt"
}

output "api_endpoint" {
  description = "The replicants' REST API through the NLB (api_enabled), else null: use SSM Session Manager on a replicant."
  value       = var.api_enabled ? "http://${module.load_balancer.dns_name}:18083/api/v5" : null
}

output "grafana_url" {
  description = "Grafana (admin / the password in /meshmq/<name>/grafana-admin-password)."
  value       = module.monitoring.grafana_url
}

output "prometheus_url" {
  description = "Prometheus."
  value       = module.monitoring.prometheus_url
}

output "core_endpoints" {
  description = "Each core's admin HTTP endpoint (inside the VPC)."
  value       = module.core.core_http_endpoints
}

output "core_instance_ids" {
  description = "Core instance ids by core id (for the one-at-a-time core upgrade)."
  value       = module.core.instance_ids
}

output "replicant_group" {
  description = "The replicants' Auto Scaling group."
  value       = module.replicants.autoscaling_group_name
}

output "ssm_prefix" {
  description = "Where the cluster's secrets live in SSM Parameter Store."
  value       = local.ssm_prefix
}
