terraform {
  # 1.9: variable validations may refer to other variables (replicant_desired, acm_certificate_arn).
  required_version = ">= 1.9"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.70"
    }
    # Only used with secrets_in_terraform = true (modules/aws/secrets_tls).
    tls = {
      source  = "hashicorp/tls"
      version = "~> 4.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "aws" {
  region = var.region
  # Every resource is tagged; the meshmq:cluster tag is also what Prometheus discovers by.
  default_tags {
    tags = merge(var.tags, {
      "meshmq:cluster" = var.name
      "managed-by"     = "terraform"
      "project"        = "meshmq"
    })
  }
}
