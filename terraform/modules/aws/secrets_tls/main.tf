# The cluster's secrets made by Terraform instead of terraform/scripts/put-secrets: a cluster
# CA, a certificate per core and one shared by the replicants (the shape `core-node
# gen-certs` writes: ECDSA P-256, DNS names meshmq.cluster, localhost and the node name,
# server and client auth), the API keys and Grafana's password, stored as SecureString
# parameters under the same names put-secrets uses.
#
# WARNING: every private key, the CA's included, and every password is then in the
# Terraform state in clear text. Use this only with an encrypted backend whose access is as
# restricted as the secrets themselves; put-secrets keeps them out of the state.

locals {
  nodes = concat([for i in range(1, var.core_count + 1) : "core-${i}"], ["replicant"])
  # Parameter names are built without touching the secret values, so they can key for_each.
  names = concat(
    ["certs/ca.pem", "core-api-key", "replicant-api-key", "grafana-admin-password"],
    [for n in local.nodes : "certs/${n}.pem"],
    [for n in local.nodes : "certs/${n}.key"],
  )
  values = merge(
    {
      "certs/ca.pem"           = tls_self_signed_cert.ca.cert_pem
      "core-api-key"           = random_password.core_api_key.result
      "replicant-api-key"      = "admin:${random_password.replicant_api_secret.result}"
      "grafana-admin-password" = random_password.grafana.result
    },
    { for n in local.nodes : "certs/${n}.pem" => tls_locally_signed_cert.node[n].cert_pem },
    { for n in local.nodes : "certs/${n}.key" => tls_private_key.node[n].private_key_pem_pkcs8 },
  )
}

resource "tls_private_key" "ca" {
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_self_signed_cert" "ca" {
  private_key_pem       = tls_private_key.ca.private_key_pem
  is_ca_certificate     = true
  validity_period_hours = var.ca_validity_hours
  allowed_uses          = ["cert_signing", "crl_signing", "digital_signature"]
  subject {
    common_name  = "meshmq cluster CA"
    organization = "meshmq"
  }
}

resource "tls_private_key" "node" {
  for_each    = toset(local.nodes)
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_cert_request" "node" {
  for_each        = toset(local.nodes)
  private_key_pem = tls_private_key.node[each.key].private_key_pem
  # Every node verifies every other as meshmq.cluster (shared/src/quic), whatever address
  # it dialed; the node name is there for people reading the certificate.
  dns_names    = ["meshmq.cluster", "localhost", each.key]
  ip_addresses = ["127.0.0.1", "::1"]
  subject {
    common_name  = each.key
    organization = "meshmq"
  }
}

resource "tls_locally_signed_cert" "node" {
  for_each              = toset(local.nodes)
  cert_request_pem      = tls_cert_request.node[each.key].cert_request_pem
  ca_private_key_pem    = tls_private_key.ca.private_key_pem
  ca_cert_pem           = tls_self_signed_cert.ca.cert_pem
  validity_period_hours = var.node_validity_hours
  early_renewal_hours   = 720
  allowed_uses          = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]
}

# API keys: the cores' key, and the replicants' `admin:<secret>` (api_key.bootstrap_file).
resource "random_password" "core_api_key" {
  length  = 48
  special = false
}

resource "random_password" "replicant_api_secret" {
  length  = 48
  special = false
}

resource "random_password" "grafana" {
  length  = 32
  special = false
}

resource "aws_ssm_parameter" "secret" {
  for_each = toset(local.names)
  name     = "${var.ssm_prefix}/${each.key}"
  type     = "SecureString"
  key_id   = var.kms_key_id == "" ? null : var.kms_key_id
  value    = local.values[each.key]
}
