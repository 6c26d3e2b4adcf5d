variable "name_prefix" {
  description = "Prefix of the role's and the instance profile's names (e.g. \"meshmq-core-\")."
  type        = string
}

variable "policy_name" {
  description = "Name of the role's own inline policy."
  type        = string
}

variable "policy_json" {
  description = "The role's own permissions (an aws_iam_policy_document's json): all it may do besides Session Manager."
  type        = string
}

variable "enable_session_manager" {
  description = "Also allow the Session Manager agent (registration and channels only; never AmazonSSMManagedInstanceCore, which reads every SSM parameter)."
  type        = bool
  default     = false
}
