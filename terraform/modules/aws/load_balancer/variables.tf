variable "name" {
  description = "Cluster name: prefix of every resource name."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets of the load balancer (public ones for an internet-facing NLB). Their CIDR blocks are what the replicants trust for PROXY headers."
  type        = list(string)
}

variable "internal" {
  description = "An internal NLB (clients inside the VPC or its peers) instead of an internet-facing one."
  type        = bool
  default     = false
}

variable "allowed_cidrs" {
  description = "Client networks allowed to reach the MQTT and WebSocket listeners."
  type        = list(string)
}

variable "api_allowed_cidrs" {
  description = "Networks allowed to reach the replicants' REST API through the NLB on 18083. Empty: no API listener."
  type        = list(string)
  default     = []
  validation {
    condition = alltrue([
      for c in var.api_allowed_cidrs : can(cidrhost(c, 0)) && !contains(["0.0.0.0/0", "::/0"], c)
    ])
    error_message = "api_allowed_cidrs: valid CIDR blocks, and not 0.0.0.0/0 or ::/0 (the REST API is an admin interface)."
  }
}

variable "autoscaling_group_name" {
  description = "The replicants' Auto Scaling group: its instances are registered in every target group."
  type        = string
}

variable "replicant_security_group_id" {
  description = "The replicants' security group (the NLB's egress goes only there)."
  type        = string
}

variable "replicant_ports" {
  description = "The replicants' ports, as modules/aws/replicant_group outputs them (mqtt, mqtts, ws, wss, http, health)."
  type        = map(number)
}

variable "tls_mode" {
  description = "\"terminate\": TLS 8883/8084 end at the NLB with acm_certificate_arn and reach the replicants' plain listeners; \"passthrough\": TCP 8883/8084 to the replicants' own TLS listeners."
  type        = string
  default     = "terminate"
  validation {
    condition     = contains(["terminate", "passthrough"], var.tls_mode)
    error_message = "tls_mode must be \"terminate\" or \"passthrough\"."
  }
}

variable "acm_certificate_arn" {
  description = "ACM certificate of the TLS listeners (tls_mode = \"terminate\")."
  type        = string
  default     = ""
}

variable "ssl_policy" {
  description = "TLS policy of the TLS listeners."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "deregistration_delay" {
  description = "Seconds the NLB keeps a deregistered target's connections (evacuation has already moved them)."
  type        = number
  default     = 30
}
