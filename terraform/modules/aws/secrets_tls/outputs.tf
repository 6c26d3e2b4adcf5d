output "parameter_names" {
  description = "The SSM parameters written (names only)."
  value       = [for p in aws_ssm_parameter.secret : p.name]
}
