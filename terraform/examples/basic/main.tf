# The whole meshmq cluster in one root module: network, cores, replicants, load balancer,
# monitoring. Secrets (cluster CA, node certificates, API keys, Grafana's password) are put
# into SSM Parameter Store under /meshmq/<name> by terraform/scripts/put-secrets before the
# first apply, so none of them is in the Terraform state; or, with secrets_in_terraform,
# made here by modules/aws/secrets_tls (and then all of them are in the state).

locals {
  ssm_prefix = "/meshmq/${var.name}"
  arch       = var.architecture == "arm64" ? "aarch64" : "x86_64"
  release_url = replace(replace(var.release_url_template, "{version}", var.meshmq_version),
  "{arch}", local.arch)
}

data "aws_ssm_parameter" "al2023" {
  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-${var.architecture}"
}

data "aws_ssm_parameter" "al2023_x86" {
  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

module "secrets" {
  source     = "../../modules/aws/secrets_tls"
  count      = var.secrets_in_terraform ? 1 : 0
  core_count = var.core_count
  ssm_prefix = local.ssm_prefix
  kms_key_id = var.kms_key_arn
}

module "core" {
  source                    = "../../modules/aws/core"
  depends_on                = [module.secrets]
  name                      = var.name
  core_count                = var.core_count
  vpc_id                    = aws_vpc.this.id
  subnet_ids                = aws_subnet.private[*].id
  instance_type             = var.instance_types.core
  ami_id                    = data.aws_ssm_parameter.al2023.insecure_value
  meshmq_version            = var.meshmq_version
  release_url               = local.release_url
  release_sha256            = var.release_sha256
  dns_zone_id               = aws_route53_zone.private.zone_id
  dns_zone_name             = aws_route53_zone.private.name
  ssm_prefix                = local.ssm_prefix
  kms_key_arn               = var.kms_key_arn
  enable_session_manager    = var.enable_session_manager
  client_security_group_ids = [module.replicants.security_group_id, module.monitoring.security_group_id]
}

module "replicants" {
  source                        = "../../modules/aws/replicant_group"
  depends_on                    = [module.secrets]
  name                          = var.name
  vpc_id                        = aws_vpc.this.id
  subnet_ids                    = aws_subnet.private[*].id
  instance_type                 = var.instance_types.replicant
  ami_id                        = data.aws_ssm_parameter.al2023.insecure_value
  meshmq_version                = var.meshmq_version
  release_url                   = local.release_url
  release_sha256                = var.release_sha256
  core_addresses                = module.core.core_addresses
  ssm_prefix                    = local.ssm_prefix
  kms_key_arn                   = var.kms_key_arn
  enable_session_manager        = var.enable_session_manager
  min_size                      = var.replicant_min
  desired_capacity              = var.replicant_desired
  max_size                      = var.replicant_max
  lb_security_group_id          = module.load_balancer.security_group_id
  proxy_trusted_cidrs           = module.load_balancer.subnet_cidrs
  monitoring_security_group_ids = [module.monitoring.security_group_id]
  api_security_group_ids        = var.api_enabled ? [module.load_balancer.security_group_id] : []
  tls_mode                      = var.tls_mode
  allow_anonymous               = var.allow_anonymous
  target_connections_per_node   = var.target_connections_per_node
}

module "load_balancer" {
  source                      = "../../modules/aws/load_balancer"
  name                        = var.name
  vpc_id                      = aws_vpc.this.id
  subnet_ids                  = aws_subnet.public[*].id
  allowed_cidrs               = var.allowed_cidrs
  api_allowed_cidrs           = var.api_enabled ? var.admin_cidrs : []
  autoscaling_group_name      = module.replicants.autoscaling_group_name
  replicant_security_group_id = module.replicants.security_group_id
  replicant_ports             = module.replicants.ports
  tls_mode                    = var.tls_mode
  acm_certificate_arn         = var.acm_certificate_arn
}

module "monitoring" {
  source                 = "../../modules/aws/monitoring"
  depends_on             = [module.secrets]
  name                   = var.name
  vpc_id                 = aws_vpc.this.id
  subnet_id              = aws_subnet.public[0].id
  instance_type          = var.instance_types.monitoring
  ami_id                 = data.aws_ssm_parameter.al2023_x86.insecure_value
  allowed_cidrs          = var.admin_cidrs
  ssm_prefix             = local.ssm_prefix
  kms_key_arn            = var.kms_key_arn
  enable_session_manager = var.enable_session_manager
  dashboard_json         = file("${path.module}/../../../deploy/grafana/meshmq.json")
}
