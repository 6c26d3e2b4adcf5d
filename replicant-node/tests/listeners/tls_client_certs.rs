//! Client certificates and the rest of `ssl_options` with real TLS clients: mutual TLS
//! required (no certificate refused) and optional (in both ways; a certificate from another
//! CA refused), a revoked certificate refused through a CRL, SNI choosing the certificate,
//! and an encrypted private key (a wrong password stops the start, without showing it).

use meshmq_shared::codec::ReasonCode;
use meshmq_shared::config::tls::{SniCertificate, Verify};
use meshmq_shared::config::{Config, ListenerKind};
use meshmq_shared::tls::dev_ca::encrypt_key_pem;
use replicant_node::Broker;

use super::support::{
    Pki, add_listener, addr, client_config, mqtt_over_tls, server_cn, start_ssl, tls_connect,
};
use crate::common::test_config;

#[tokio::test]
async fn mutual_tls_required_refuses_a_client_without_a_certificate() {
    let pki = Pki::new("mtls-required");
    let b = start_ssl(pki.options(Verify::Required), |_| {}, |_| {}).await;
    let ssl = addr(&b, "ssl:default");
    let (chain, key) = pki.client("device-1");
    let with = client_config(pki.ca.ca_pem(), Some((&chain, &key)), &[]);
    assert_eq!(
        mqtt_over_tls(ssl, with, "with-cert").await,
        Ok(ReasonCode::Success)
    );
    let without = client_config(pki.ca.ca_pem(), None, &[]);
    let refused = mqtt_over_tls(ssl, without, "without-cert").await;
    assert!(refused.is_err(), "no certificate, no CONNACK: {refused:?}");
}

#[tokio::test]
async fn mutual_tls_optional_lets_both_in_but_not_a_foreign_certificate() {
    let pki = Pki::new("mtls-optional");
    let b = start_ssl(pki.options(Verify::Optional), |_| {}, |_| {}).await;
    let ssl = addr(&b, "ssl:default");
    let (chain, key) = pki.client("device-2");
    let with = client_config(pki.ca.ca_pem(), Some((&chain, &key)), &[]);
    assert_eq!(
        mqtt_over_tls(ssl, with, "opt-with").await,
        Ok(ReasonCode::Success)
    );
    let without = client_config(pki.ca.ca_pem(), None, &[]);
    assert_eq!(
        mqtt_over_tls(ssl, without, "opt-without").await,
        Ok(ReasonCode::Success)
    );
    let other = Pki::new("another CA");
    let (chain, key) = other.client("device-2");
    let foreign = client_config(pki.ca.ca_pem(), Some((&chain, &key)), &[]);
    let refused = mqtt_over_tls(ssl, foreign, "opt-foreign").await;
    assert!(
        refused.is_err(),
        "a certificate the CA did not issue: {refused:?}"
    );
}

#[tokio::test]
async fn a_revoked_certificate_is_refused() {
    let pki = Pki::new("mtls-crl");
    let (revoked_chain, revoked_key) = pki.client("stolen");
    let (good_chain, good_key) = pki.client("good");
    let crl = pki
        .ca
        .write_crl(pki.dir.path(), "ca", &[&revoked_chain])
        .expect("CRL");
    let mut options = pki.options(Verify::Required);
    options.crlfile = vec![crl];
    let b = start_ssl(options, |_| {}, |_| {}).await;
    let ssl = addr(&b, "ssl:default");
    let good = client_config(pki.ca.ca_pem(), Some((&good_chain, &good_key)), &[]);
    assert_eq!(
        mqtt_over_tls(ssl, good, "crl-good").await,
        Ok(ReasonCode::Success)
    );
    let revoked = client_config(pki.ca.ca_pem(), Some((&revoked_chain, &revoked_key)), &[]);
    let refused = mqtt_over_tls(ssl, revoked, "crl-revoked").await;
    assert!(refused.is_err(), "a revoked certificate: {refused:?}");
}

#[tokio::test]
async fn sni_chooses_the_certificate() {
    let pki = Pki::new("sni");
    let mut options = pki.options(Verify::None);
    let (a_cert, a_key) = pki
        .ca
        .write_server(pki.dir.path(), "a", &["a.example.test"])
        .expect("a");
    let (w_cert, w_key) = pki
        .ca
        .write_server(pki.dir.path(), "wild", &["x.wild.test"])
        .expect("wild");
    options.sni = vec![
        SniCertificate {
            server_name: "a.example.test".into(),
            certfile: Some(a_cert),
            keyfile: Some(a_key),
            password: None,
        },
        SniCertificate {
            server_name: "*.wild.test".into(),
            certfile: Some(w_cert),
            keyfile: Some(w_key),
            password: None,
        },
    ];
    let b = start_ssl(options, |_| {}, |_| {}).await;
    let ssl = addr(&b, "ssl:default");
    let config = client_config(pki.ca.ca_pem(), None, &[]);
    for (name, cn) in [
        ("a.example.test", "a.example.test"),
        ("x.wild.test", "x.wild.test"),
        ("localhost", "localhost"),
    ] {
        let tls = tls_connect(ssl, name, config.clone())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(server_cn(&tls).as_deref(), Some(cn), "SNI {name}");
    }
    let summary = super::support::api(&b, "GET", "/api/v5/listeners/ssl:default", None).await;
    assert_eq!(
        summary.1["ssl"]["certificate"]["sni"],
        serde_json::json!(["a.example.test", "*.wild.test"])
    );
}

#[tokio::test]
async fn an_encrypted_key_loads_with_its_password_and_a_wrong_one_names_no_secret() {
    let pki = Pki::new("encrypted-key");
    let mut options = pki.options(Verify::None);
    let key_path = options.keyfile.clone().expect("keyfile");
    let plain = std::fs::read_to_string(&key_path).expect("key");
    let encrypted = encrypt_key_pem(&plain, "correct horse").expect("encrypt");
    let enc_path = pki.path("server.enc.key");
    std::fs::write(&enc_path, encrypted).expect("write");
    options.keyfile = Some(enc_path);
    options.password = Some("correct horse".into());
    let b = start_ssl(options.clone(), |_| {}, |_| {}).await;
    let ssl = addr(&b, "ssl:default");
    let config = client_config(pki.ca.ca_pem(), None, &[]);
    assert_eq!(
        mqtt_over_tls(ssl, config, "enc").await,
        Ok(ReasonCode::Success)
    );
    b.shutdown().await;

    options.password = Some("battery staple".into());
    let mut config: Config = test_config();
    add_listener(&mut config, ListenerKind::Ssl, "default", |l| {
        l.ssl_options = Some(options);
    });
    let err = match Broker::builder(config).start().await {
        Ok(_) => panic!("a wrong password must stop the start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("ssl:default"), "names the listener: {err}");
    assert!(err.contains("server.enc.key"), "names the file: {err}");
    assert!(!err.contains("battery"), "never the password: {err}");
}
