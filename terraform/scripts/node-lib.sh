# shellcheck shell=bash
# node-lib.sh: shell functions shared by the meshmq instance user data (core, replicant,
# monitoring). Terraform inlines this file into each user-data script (templatefile), so it
# is plain bash with no Terraform interpolation. It installs and configures; it never
# starts a service by itself and never prints a secret.

# IMDSv2: a session token, then GET of a metadata path under latest/.
imds() {
  local token
  token=$(curl -fsS --max-time 5 --retry 5 --retry-connrefused -X PUT \
    http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
  curl -fsS --max-time 5 --retry 5 -H "X-aws-ec2-metadata-token: $token" \
    "http://169.254.169.254/latest/$1"
}

# fetch_param NAME FILE MODE: an SSM parameter (SecureString decrypted) into FILE, owned by
# root:meshmq, written through a temporary file so a failure leaves nothing half-written.
fetch_param() {
  local name=$1 file=$2 mode=$3 attempt
  install -d -m 0750 -o root -g meshmq "$(dirname "$file")"
  # Up to about ten minutes: the parameters may be written in the same apply.
  for attempt in $(seq 1 12); do
    # umask 077: the temporary file holds the secret before chmod; no one else may read it.
    if (umask 077 && aws ssm get-parameter --with-decryption --name "$name" --query Parameter.Value \
      --output text --cli-connect-timeout 5 --cli-read-timeout 20 > "$file.tmp"); then
      chown root:meshmq "$file.tmp"
      chmod "$mode" "$file.tmp"
      mv "$file.tmp" "$file"
      return 0
    fi
    echo "user-data: cannot read parameter $name (attempt $attempt)" >&2
    sleep $((attempt < 6 ? attempt * 5 : 60))
  done
  rm -f "$file.tmp"
  return 1
}

# issue_node_cert DIR NAME CA_KEY: a certificate and key for node NAME, signed by the cluster
# CA (DIR/ca.pem and the key in the file CA_KEY), written as DIR/NAME.pem and DIR/NAME.key
# (root:meshmq, 0640). The shape `core-node gen-certs` issues: ECDSA P-256 (PKCS#8 key),
# CN=NAME, O=meshmq, DNS names meshmq.cluster (the name nodes verify each other by),
# localhost and NAME, IPs 127.0.0.1 and ::1, server and client auth. Peers accept a
# replicant's calls only under a certificate whose CN is its node name. openssl rather than
# gen-certs: it signs with any CA (gen-certs rebuilds the issuer name from its own fixed
# form and refuses a CA made by the Terraform tls provider, see secrets_tls). The result
# is verified against ca.pem before it is kept. Never prints or copies the CA key.
issue_node_cert() (
  set -euo pipefail
  local dir=$1 name=$2 ca_key=$3 tmp serial
  # Beside the result, so that the final moves are renames on one file system.
  tmp=$(mktemp -d "$dir/.issue.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  serial=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/key.pem"
  openssl req -new -key "$tmp/key.pem" -subj "/CN=$name/O=meshmq" -out "$tmp/csr.pem"
  cat > "$tmp/ext.cnf" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:meshmq.cluster, DNS:localhost, IP:127.0.0.1, IP:::1, DNS:$name
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
  openssl x509 -req -in "$tmp/csr.pem" -CA "$dir/ca.pem" -CAkey "$ca_key" -set_serial "0x$serial" \
    -days 3650 -sha256 -extfile "$tmp/ext.cnf" -out "$tmp/cert.pem"
  openssl verify -CAfile "$dir/ca.pem" -purpose sslclient "$tmp/cert.pem" >/dev/null
  chown root:meshmq "$tmp/key.pem" "$tmp/cert.pem"
  chmod 0640 "$tmp/key.pem" "$tmp/cert.pem"
  mv "$tmp/key.pem" "$dir/$name.key"
  mv "$tmp/cert.pem" "$dir/$name.pem"
)

# install_release VERSION URL SHA256: the release tarball into /opt/meshmq/VERSION (its
# core-node and replicant-node, wherever the tarball keeps them), checked against SHA256
# when given, and /opt/meshmq/current pointing at it.
install_release() {
  local version=$1 url=$2 sha=$3 tmp bin
  tmp=$(mktemp -d)
  curl -fsSL --max-time 300 --retry 5 -o "$tmp/release.tar.gz" "$url"
  if [ -n "$sha" ]; then
    echo "$sha  $tmp/release.tar.gz" | sha256sum -c - >/dev/null
  fi
  tar -xzf "$tmp/release.tar.gz" -C "$tmp"
  install -d -m 0755 "/opt/meshmq/$version"
  for bin in core-node replicant-node; do
    install -m 0755 "$(find "$tmp" -type f -name "$bin" | head -n1)" "/opt/meshmq/$version/$bin"
  done
  ln -sfn "/opt/meshmq/$version" /opt/meshmq/current
  rm -rf "$tmp"
}

# The unprivileged account every meshmq service runs as.
ensure_user() {
  id meshmq >/dev/null 2>&1 || useradd --system --home-dir /var/lib/meshmq --shell /sbin/nologin meshmq
  install -d -m 0750 -o meshmq -g meshmq /var/lib/meshmq
}

# Raises the limits a broker needs (one descriptor per connection).
tune_kernel() {
  cat > /etc/sysctl.d/90-meshmq.conf <<'SYSCTL'
fs.file-max = 2097152
net.core.somaxconn = 32768
net.ipv4.tcp_max_syn_backlog = 16384
net.ipv4.ip_local_port_range = 1024 65535
SYSCTL
  sysctl --system >/dev/null
}
