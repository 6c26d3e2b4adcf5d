variable "name" {
  description = "Cluster name: prefix of every resource name, value of the meshmq:cluster tag."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name: 2 to 31 characters, lower-case letters, digits and '-', starting with a letter."
  }
}

variable "core_count" {
  description = "Number of core nodes (Raft voters): 3 tolerates one loss, 5 tolerates two."
  type        = number
  default     = 3
  validation {
    condition     = contains([3, 5], var.core_count)
    error_message = "core_count must be 3 or 5 (an odd Raft group; 1 has no fault tolerance, more than 5 only slows commits)."
  }
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets, one per availability zone; core i goes into subnet_ids[i mod n]."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids: at least one subnet (three, in three zones, for zone failures)."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the cores."
  type        = string
  default     = "m7g.large"
}

variable "ami_id" {
  description = "AMI of the cores (Amazon Linux 2023 or another systemd distribution with the AWS CLI, curl and xfsprogs)."
  type        = string
}

variable "meshmq_version" {
  description = "meshmq release the cores run (a new value applies when a core is replaced: see terraform/README.md, Upgrade)."
  type        = string
}

variable "release_url" {
  description = "URL of the release tarball holding core-node and replicant-node."
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

variable "data_volume_size_gb" {
  description = "Size of each core's EBS data volume (redb: Raft log and snapshots)."
  type        = number
  default     = 50
}

variable "data_volume_type" {
  description = "EBS type of the data volumes."
  type        = string
  default     = "gp3"
}

variable "dns_zone_id" {
  description = "Route 53 private hosted zone (associated with the VPC) for the cores' names."
  type        = string
}

variable "dns_zone_name" {
  description = "Name of that zone, e.g. meshmq.internal; core i is core-<i>.<name>.<zone>."
  type        = string
}

variable "ssm_prefix" {
  description = "SSM Parameter Store path holding the cluster secrets (see terraform/scripts/put-secrets), e.g. /meshmq/prod."
  type        = string
  validation {
    condition     = can(regex("^/[A-Za-z0-9_./-]+[^/]$", var.ssm_prefix))
    error_message = "ssm_prefix: an absolute parameter path without a trailing '/'."
  }
}

variable "kms_key_arn" {
  description = "KMS key of the SecureString parameters when it is not the account's aws/ssm key (empty: aws/ssm)."
  type        = string
  default     = ""
}

variable "client_security_group_ids" {
  description = "Security groups allowed to reach the cores' QUIC (UDP 4370) and HTTP (TCP 18084) ports: replicants, monitoring. Nothing else is."
  type        = list(string)
}

variable "enable_session_manager" {
  description = "Let operators reach the instances with SSM Session Manager (a hand-written policy: the agent and its channels, no parameter reads)."
  type        = bool
  default     = false
}
