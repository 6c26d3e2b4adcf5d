variable "core_count" {
  description = "Core nodes to issue certificates for (core-1 .. core-N)."
  type        = number
  validation {
    condition     = contains([3, 5], var.core_count)
    error_message = "core_count must be 3 or 5."
  }
}

variable "ssm_prefix" {
  description = "SSM Parameter Store path the instances read (/meshmq/<name>)."
  type        = string
}

variable "kms_key_id" {
  description = "KMS key of the SecureString parameters (empty: the account's aws/ssm key)."
  type        = string
  default     = ""
}

variable "ca_validity_hours" {
  description = "Validity of the cluster CA."
  type        = number
  default     = 87600
}

variable "node_validity_hours" {
  description = "Validity of the node certificates (re-issued when Terraform sees them near expiry, see early_renewal_hours)."
  type        = number
  default     = 17520
}
