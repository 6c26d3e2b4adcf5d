variable "region" {
  description = "AWS region, e.g. eu-north-1."
  type        = string
  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-north-1 or us-east-1."
  }
}

variable "name" {
  description = "Cluster name: prefix of resource names, the meshmq:cluster tag, the SSM path /meshmq/<name>."
  type        = string
  default     = "meshmq"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name: 2 to 21 characters, lower-case letters, digits and '-', starting with a letter (it prefixes target group names, at most 32 characters)."
  }
}

variable "meshmq_version" {
  description = "meshmq release to run, e.g. 0.9.0. Changing it rolls the replicants (instance refresh); cores follow one at a time (README, Upgrade)."
  type        = string
  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9A-Za-z.-]+)?$", var.meshmq_version))
    error_message = "meshmq_version must be a release version such as 1.2.3 or 1.3.0-rc.1."
  }
}

variable "release_url_template" {
  description = "Where the release tarball (core-node, replicant-node) is downloaded from; {version} and {arch} (x86_64 or aarch64) are replaced."
  type        = string
  default     = "https://github.com/meshmq/meshmq/releases/download/v{version}/meshmq-{version}-{arch}-unknown-linux-musl.tar.gz"
  validation {
    condition     = startswith(var.release_url_template, "https://") && strcontains(var.release_url_template, "{version}")
    error_message = "release_url_template must be an https URL containing {version}."
  }
}

variable "release_sha256" {
  description = "SHA-256 of the release tarball (required: the instances refuse a tarball that does not match)."
  type        = string
  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.release_sha256))
    error_message = "release_sha256: 64 lower-case hex digits (sha256sum of the release tarball)."
  }
}

variable "architecture" {
  description = "CPU architecture of the core and replicant instances: x86_64 or arm64 (instance types must match)."
  type        = string
  default     = "x86_64"
  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "core_count" {
  description = "Core nodes (Raft voters): 3 or 5."
  type        = number
  default     = 3
  validation {
    condition     = var.core_count % 2 == 1 && contains([3, 5], var.core_count)
    error_message = "core_count must be odd, 3 or 5: a Raft group of an even size tolerates no more failures than one node fewer."
  }
}

variable "replicant_min" {
  description = "Fewest replicants."
  type        = number
  default     = 2
  validation {
    condition     = var.replicant_min >= 1
    error_message = "replicant_min must be at least 1 (2 or more to survive a replicant's loss)."
  }
}

variable "replicant_desired" {
  description = "Replicants at creation (the scaling policies own the count afterwards)."
  type        = number
  default     = 2
  validation {
    condition     = var.replicant_min <= var.replicant_desired && var.replicant_desired <= var.replicant_max
    error_message = "Need replicant_min <= replicant_desired <= replicant_max."
  }
}

variable "replicant_max" {
  description = "Most replicants."
  type        = number
  default     = 10
  validation {
    condition     = var.replicant_max >= var.replicant_min && var.replicant_max <= 200
    error_message = "Need replicant_min <= replicant_max <= 200."
  }
}

variable "instance_types" {
  description = "EC2 instance types: core, replicant (of var.architecture) and monitoring (x86_64)."
  type = object({
    core       = string
    replicant  = string
    monitoring = string
  })
  default = {
    core       = "m7i.large"
    replicant  = "c7i.large"
    monitoring = "t3.medium"
  }
  validation {
    condition = alltrue([
      for t in [var.instance_types.core, var.instance_types.replicant, var.instance_types.monitoring] :
      can(regex("^[a-z][a-z0-9-]*\\.[0-9]*[a-z0-9]+$", t))
    ])
    error_message = "instance_types: each must be an EC2 instance type such as c7i.large."
  }
}

variable "allowed_cidrs" {
  description = "Client networks allowed to connect to MQTT (1883, 8883) and WebSocket (8083, 8084) on the load balancer."
  type        = list(string)
  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_cidrs: at least one CIDR block, each valid (10.0.0.0/8, 203.0.113.0/24, 2001:db8::/32)."
  }
}

variable "admin_cidrs" {
  description = "Operator networks allowed to open Grafana, Prometheus and (when api_enabled) the REST API. Never the whole internet."
  type        = list(string)
  validation {
    condition = length(var.admin_cidrs) > 0 && alltrue([
      for c in var.admin_cidrs : can(cidrhost(c, 0)) && !contains(["0.0.0.0/0", "::/0"], c)
    ])
    error_message = "admin_cidrs: at least one valid CIDR block, and not 0.0.0.0/0 or ::/0."
  }
}

variable "api_enabled" {
  description = "Publish the replicants' REST API (18083) on the load balancer to admin_cidrs."
  type        = bool
  default     = false
}

variable "tls_mode" {
  description = "\"terminate\": TLS ends at the NLB with acm_certificate_arn; \"passthrough\": the replicants serve TLS with <ssm>/mqtt-tls.pem and .key."
  type        = string
  default     = "terminate"
  validation {
    condition     = contains(["terminate", "passthrough"], var.tls_mode)
    error_message = "tls_mode must be \"terminate\" or \"passthrough\"."
  }
}

variable "acm_certificate_arn" {
  description = "ACM certificate for the NLB's TLS listeners (tls_mode = \"terminate\")."
  type        = string
  default     = ""
  validation {
    condition     = var.tls_mode != "terminate" || can(regex("^arn:aws[a-z-]*:acm:", var.acm_certificate_arn))
    error_message = "tls_mode = \"terminate\" needs acm_certificate_arn (an ACM certificate ARN)."
  }
}

variable "allow_anonymous" {
  description = "Accept MQTT clients without credentials. Off: users of the built-in database (README, Connect)."
  type        = bool
  default     = false
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC this example creates."
  type        = string
  default     = "10.40.0.0/16"
  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr: an IPv4 block of /20 or larger."
  }
}

variable "dns_zone" {
  description = "Private Route 53 zone for the cores' names (core-<i>.<name>.<zone>)."
  type        = string
  default     = "meshmq.internal"
}

variable "secrets_in_terraform" {
  description = "Make the CA, certificates, API keys and Grafana password with the tls/random providers (modules/aws/secrets_tls) instead of terraform/scripts/put-secrets. Puts every private key and password in the state in clear text."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "KMS key of the SecureString parameters if not the account's aws/ssm key."
  type        = string
  default     = ""
}

variable "target_connections_per_node" {
  description = "Connections per replicant the group scales to keep."
  type        = number
  default     = 20000
  validation {
    condition     = var.target_connections_per_node >= 100
    error_message = "target_connections_per_node must be at least 100."
  }
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}

variable "enable_session_manager" {
  description = "Let operators reach the instances with SSM Session Manager (the agent and its channels only, never the managed AmazonSSMManagedInstanceCore, which reads every parameter)."
  type        = bool
  default     = false
}
