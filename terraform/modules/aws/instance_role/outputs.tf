output "instance_profile_name" {
  description = "The instance profile for the instances' launch."
  value       = aws_iam_instance_profile.this.name
}

output "instance_profile_arn" {
  description = "The instance profile's ARN (launch templates)."
  value       = aws_iam_instance_profile.this.arn
}
