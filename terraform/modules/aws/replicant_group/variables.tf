variable "name" {
  description = "Cluster name: prefix of every resource name, value of the meshmq:cluster tag."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets the group launches replicants into (one per availability zone)."
  type        = list(string)
}

variable "instance_type" {
  description = "EC2 instance type of the replicants."
  type        = string
  default     = "c7g.large"
}

variable "ami_id" {
  description = "AMI of the replicants (Amazon Linux 2023 or another systemd distribution with the AWS CLI, curl and HAProxy in its repositories)."
  type        = string
}

variable "meshmq_version" {
  description = "meshmq release the replicants run; changing it makes a new launch template version and an instance refresh."
  type        = string
}

variable "release_url" {
  description = "URL of the release tarball holding replicant-node."
  type        = string
}

variable "release_sha256" {
  description = "SHA-256 of the release tarball (required: the instances refuse a tarball that does not match)."
  type        = string
  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.release_sha256))
    error_message = "release_sha256: 64 lower-case hex digits (sha256sum of the release tarball)."
  }
}

variable "core_addresses" {
  description = "The cores' QUIC addresses (host:port, stable DNS names), from modules/aws/core."
  type        = list(string)
}

variable "ssm_prefix" {
  description = "SSM Parameter Store path of the cluster secrets (see terraform/scripts/put-secrets)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key of the SecureString parameters when it is not aws/ssm (empty: aws/ssm)."
  type        = string
  default     = ""
}

variable "min_size" {
  description = "Fewest replicants."
  type        = number
  default     = 2
}

variable "max_size" {
  description = "Most replicants."
  type        = number
  default     = 10
}

variable "desired_capacity" {
  description = "Replicants at creation; afterwards the scaling policies own it (changes here are ignored)."
  type        = number
  default     = 2
  validation {
    condition     = var.min_size <= var.desired_capacity && var.desired_capacity <= var.max_size
    error_message = "desired_capacity must lie between min_size and max_size."
  }
}

variable "lb_security_group_id" {
  description = "Security group of the load balancer: the only source of MQTT, WebSocket and health-check traffic."
  type        = string
}

variable "proxy_trusted_cidrs" {
  description = "Addresses the load balancer connects from (its subnets' CIDR blocks): the PROXY headers the listeners believe."
  type        = list(string)
}

variable "monitoring_security_group_ids" {
  description = "Security groups allowed to scrape /metrics on the HTTP port (18083)."
  type        = list(string)
  default     = []
}

variable "api_security_group_ids" {
  description = "Security groups allowed to reach the REST API on the HTTP port (18083), e.g. the load balancer's when it publishes the API."
  type        = list(string)
  default     = []
}

variable "tls_mode" {
  description = "\"terminate\": the load balancer ends TLS (8883, 8084) and forwards plain MQTT/WebSocket; \"passthrough\": the replicants serve TLS themselves with the certificate in SSM (<prefix>/mqtt-tls.pem, .key)."
  type        = string
  default     = "terminate"
  validation {
    condition     = contains(["terminate", "passthrough"], var.tls_mode)
    error_message = "tls_mode must be \"terminate\" or \"passthrough\"."
  }
}

variable "allow_anonymous" {
  description = "Accept MQTT clients without credentials (listeners.allow_anonymous). Off: the built-in user database authenticates (add users through the API)."
  type        = bool
  default     = false
}

variable "target_cpu_percent" {
  description = "Target average CPU utilisation of the group (target tracking)."
  type        = number
  default     = 60
}

variable "target_connections_per_node" {
  description = "Target average MQTT connections per replicant (target tracking on Meshmq/ConnectionsPerNode)."
  type        = number
  default     = 20000
}

variable "evacuation_timeout_seconds" {
  description = "How long the scale-in handler waits for the evacuation to finish (ctl ... --wait-done)."
  type        = number
  default     = 900
  validation {
    condition     = var.evacuation_timeout_seconds >= 60 && var.evacuation_timeout_seconds <= 6600
    error_message = "evacuation_timeout_seconds: 60 to 6600 (the hook's global timeout allows more, keep a margin)."
  }
}

variable "evacuation_wait_health_check" {
  description = "Seconds between the availability check turning 503 and eviction: longer than the load balancer needs to mark the node unhealthy (interval x unhealthy threshold)."
  type        = number
  default     = 30
}

variable "evacuation_wait_takeover" {
  description = "Seconds evicted clients have to reconnect elsewhere before their sessions are migrated."
  type        = number
  default     = 60
}

variable "health_check_port" {
  description = "Port of the PROXY-aware health-check shim on each replicant (see terraform/scripts/health-shim.cfg)."
  type        = number
  default     = 18093
}

variable "enable_session_manager" {
  description = "Let operators reach the instances with SSM Session Manager (a hand-written policy: the agent and its channels, no parameter reads)."
  type        = bool
  default     = false
}
