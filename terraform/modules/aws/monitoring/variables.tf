variable "name" {
  description = "Cluster name: the meshmq:cluster tag value Prometheus discovers nodes by."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_id" {
  description = "Subnet of the monitoring instance (a public one to reach Grafana from allowed_cidrs directly)."
  type        = string
}

variable "associate_public_ip" {
  description = "Give the instance a public address (it is in a public subnet)."
  type        = bool
  default     = true
}

variable "instance_type" {
  description = "EC2 instance type of the Prometheus + Grafana instance."
  type        = string
  default     = "t3.medium"
}

variable "ami_id" {
  description = "AMI (Amazon Linux 2023, x86_64: the Prometheus and Grafana downloads are amd64)."
  type        = string
}

variable "allowed_cidrs" {
  description = "Networks allowed to open Grafana (3000) and Prometheus (9090)."
  type        = list(string)
  validation {
    condition = length(var.allowed_cidrs) > 0 && alltrue([
      for c in var.allowed_cidrs : can(cidrhost(c, 0)) && !contains(["0.0.0.0/0", "::/0"], c)
    ])
    error_message = "allowed_cidrs: at least one valid CIDR block, and not 0.0.0.0/0 or ::/0."
  }
}

variable "ssm_prefix" {
  description = "SSM Parameter Store path of the cluster secrets; Grafana's admin password is <prefix>/grafana-admin-password."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key of the SecureString parameters when it is not aws/ssm (empty: aws/ssm)."
  type        = string
  default     = ""
}

variable "core_metrics_port" {
  description = "The cores' HTTP port (/metrics)."
  type        = number
  default     = 18084
}

variable "replicant_metrics_port" {
  description = "The replicants' HTTP port (/metrics)."
  type        = number
  default     = 18083
}

variable "prometheus_version" {
  description = "Prometheus release installed from github.com/prometheus/prometheus."
  type        = string
  default     = "2.55.1"
}

variable "grafana_version" {
  description = "Grafana OSS release installed from dl.grafana.com."
  type        = string
  default     = "11.3.1"
}

variable "dashboard_json" {
  description = "The Grafana dashboard (deploy/grafana/meshmq.json), provisioned as it is."
  type        = string
}

variable "retention" {
  description = "Prometheus retention (--storage.tsdb.retention.time)."
  type        = string
  default     = "15d"
}

variable "enable_session_manager" {
  description = "Let operators reach the instances with SSM Session Manager (a hand-written policy: the agent and its channels, no parameter reads)."
  type        = bool
  default     = false
}
