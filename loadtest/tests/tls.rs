//! `--tls` against a fake broker behind rustls (a certificate made by rcgen for the test):
//! the CA file is trusted, `--insecure` accepts it without one, and without either the
//! handshake fails and is counted as a connect failure.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::{FakeBroker, Faults, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_ca_file_insecure_and_untrusted() {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ck.cert.pem()).unwrap();
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let broker = FakeBroker::start_with(Faults::default(), Some(acceptor)).await;
    let port = broker.port.to_string();

    let f = run(&[
        "conn",
        "--tls",
        "--cafile",
        ca.to_str().unwrap(),
        "-h",
        "localhost",
        "-p",
        &port,
        "-c",
        "3",
        "-i",
        "0",
        "--duration",
        "0.2",
    ])
    .await;
    assert_eq!(f.connected, 3, "{:?}", f.error_messages);

    let sub = tokio::spawn({
        let port = port.clone();
        async move {
            run(&[
                "sub",
                "--tls",
                "--insecure",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-c",
                "1",
                "-t",
                "s/#",
                "-L",
                "10",
            ])
            .await
        }
    });
    let ok = broker
        .wait_for(std::time::Duration::from_secs(10), |s| {
            s.subscribed.load(std::sync::atomic::Ordering::Relaxed) == 1
        })
        .await;
    assert!(ok);
    let p = run(&[
        "pub",
        "--tls",
        "--cafile",
        ca.to_str().unwrap(),
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-c",
        "1",
        "-t",
        "s/1",
        "-I",
        "0",
        "-L",
        "10",
    ])
    .await;
    assert_eq!(p.published, 10, "{:?}", p.error_messages);
    assert!(p.errors.is_empty(), "{:?}", p.error_messages);
    let s = sub.await.unwrap();
    assert_eq!(s.received, 10, "{:?}", s.error_messages);

    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let wrong = dir.path().join("wrong.pem");
    std::fs::write(&wrong, other.cert.pem()).unwrap();
    let f = run(&[
        "conn",
        "--tls",
        "--cafile",
        wrong.to_str().unwrap(),
        "-h",
        "localhost",
        "-p",
        &port,
        "-c",
        "1",
        "--duration",
        "0.2",
    ])
    .await;
    assert_eq!((f.connected, f.connect_failed), (0, 1));
    assert_eq!(f.connect_failures.get("tls"), Some(&1), "{f:?}");
}
