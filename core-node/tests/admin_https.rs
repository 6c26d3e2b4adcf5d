//! The core's admin HTTP over TLS (`--http-tls`), on a real core, with real TLS clients
//! (tokio-rustls): a client certificate from the cluster CA is let in without a key, one from
//! another CA is refused, and without a certificate the API key is needed (or, with no key
//! configured, nothing gets in). `/health` stays open.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use core_node::http::auth::ApiKey;
use core_node::http::{self, HttpConfig};
use meshmq_shared::quic::SERVER_NAME;
use meshmq_shared::quic::certs::{self, CertPaths};
use meshmq_shared::quic::tls::{Identity, https_server_crypto};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

#[path = "common/admin.rs"]
mod admin;
use admin::{counter, members, request};

const KEY: &str = "another-admin-k3y";

fn tls_config(dir: &Path, key: Option<&str>) -> HttpConfig {
    let id = Identity::load(&CertPaths::in_dir(&dir.join("certs"), "core-1")).unwrap();
    HttpConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        api_key: key.map(|k| ApiKey::new(k).unwrap()),
        metrics_auth: false,
        tls: Some(Arc::new(https_server_crypto(&id).unwrap())),
    }
}

/// A client trusting the cluster CA in `dir/certs`, presenting `cert` (node name in
/// `cert_dir`) if given.
fn client(dir: &Path, cert: Option<(&Path, &str)>) -> tokio_rustls::TlsConnector {
    let mut roots = RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(dir.join("certs").join(certs::CA_CERT_FILE)).unwrap();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match cert {
        Some((cert_dir, name)) => {
            let paths = CertPaths::in_dir(cert_dir, name);
            let chain = CertificateDer::pem_file_iter(&paths.cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(&paths.key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One request over a new TLS connection; an error when the handshake or the connection
/// fails before an answer.
async fn https(
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(SERVER_NAME).unwrap();
    let stream = tokio::time::timeout(admin::WAIT, tls.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))??;
    request(stream, method, path, headers, "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_certificate_or_the_key_opens_the_api_over_tls() {
    let _ = core_node::prometheus::prometheus_handle();
    let dir = tempfile::tempdir().unwrap();
    let core = admin::single_core(dir.path(), &["core-1", "admin"]).await;
    let other_ca = dir.path().join("other");
    certs::generate(&other_ca, &["admin".into()]).unwrap();
    let api = http::serve(core.clone(), tls_config(dir.path(), Some(KEY)))
        .await
        .unwrap();
    let cluster = "/api/v5/cluster";
    let with_cert = client(dir.path(), Some((&dir.path().join("certs"), "admin")));
    let foreign = client(dir.path(), Some((&other_ca, "admin")));
    let anonymous = client(dir.path(), None);

    // A certificate from the cluster CA: in, without a key, for reads and membership changes.
    let (status, body) = https(api, &with_cert, "GET", cluster, &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"members\""), "{body}");
    let (status, body) = https(api, &with_cert, "DELETE", "/api/v5/cluster/cores/9", &[])
        .await
        .unwrap();
    assert_ne!(status, 401, "the handler ran: {body}");

    // No certificate: the key decides.
    let (status, body) = https(api, &anonymous, "GET", cluster, &[]).await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("BAD_API_KEY_OR_SECRET"), "{body}");
    let wrong = [("authorization", "Bearer wrong")];
    let (status, _) = https(api, &anonymous, "GET", cluster, &wrong)
        .await
        .unwrap();
    assert_eq!(status, 401);
    let bearer = format!("Bearer {KEY}");
    let right = [("authorization", bearer.as_str())];
    let (status, body) = https(api, &anonymous, "GET", cluster, &right)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    // A certificate from another CA: the handshake fails (or, at worst, a 401).
    let failures = r#"meshmq_core_http_tls_failures_total{reason="handshake"}"#;
    let before = counter(failures);
    match https(api, &foreign, "GET", cluster, &[]).await {
        Err(_) => {}
        Ok((status, body)) => assert_eq!(status, 401, "a foreign certificate: {body}"),
    }
    admin::wait_until("the failed handshake counted", || {
        counter(failures) > before
    })
    .await;

    // /health needs nothing, even over TLS.
    let (status, _) = https(api, &anonymous, "GET", "/health", &[]).await.unwrap();
    assert_eq!(status, 200);
    // Plain HTTP to the TLS port gets no answer.
    let plain = tokio::net::TcpStream::connect(api).await.unwrap();
    assert!(request(plain, "GET", cluster, &right, "").await.is_err());

    assert_eq!(members(&core), vec![1]);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_a_key_lets_in_only_cluster_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let core = admin::single_core(dir.path(), &["core-1", "admin"]).await;
    let api = http::serve(core.clone(), tls_config(dir.path(), None))
        .await
        .unwrap();
    let anonymous = client(dir.path(), None);
    let with_cert = client(dir.path(), Some((&dir.path().join("certs"), "admin")));
    let add = "/api/v5/cluster/cores";

    let (status, _) = https(api, &anonymous, "GET", "/api/v5/cluster", &[])
        .await
        .unwrap();
    assert_eq!(status, 401);
    let guess = [("authorization", "Bearer anything")];
    let (status, _) = https(api, &anonymous, "POST", add, &guess).await.unwrap();
    assert_eq!(status, 401);
    let (status, _) = https(api, &anonymous, "DELETE", "/api/v5/cluster/cores/1", &[])
        .await
        .unwrap();
    assert_eq!(status, 401);
    assert_eq!(members(&core), vec![1], "nothing changed");

    let (status, body) = https(api, &with_cert, "GET", "/api/v5/cluster", &[])
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    core.shutdown().await;
}
