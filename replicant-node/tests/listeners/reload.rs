//! Certificate reloads of a running `ssl` listener: through the API (a live connection keeps
//! working, new ones get the new certificate, a bad file is answered 400 and changes
//! nothing), by the file poll (a certificate written before its key, a mismatched pair for a
//! moment, keeps the old pair until the key arrives), and on SIGHUP.

use std::path::Path;
use std::sync::Arc;

use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::{QoS, ReasonCode};
use meshmq_shared::config::tls::{SslOptions, Verify};
use rustls::ClientConfig;

use super::support::{
    Pki, addr, api, client_config, connect_over_tls, counter, server_cn, start_ssl, tls_connect,
    wait_counter,
};
use crate::common::raw::connect_packet;
use crate::common::{WAIT, wait_until_async};

/// The CN of the certificate a new connection to `at` gets (a full handshake: a resumed
/// session would show the certificate it was first made with).
async fn cn_now(at: std::net::SocketAddr, config: &Arc<ClientConfig>) -> Option<String> {
    let mut fresh = (**config).clone();
    fresh.resumption = rustls::client::Resumption::disabled();
    let tls = tls_connect(at, "localhost", Arc::new(fresh)).await.ok()?;
    server_cn(&tls)
}

/// A new server certificate whose CN is `cn` (SANs `cn`, localhost and 127.0.0.1):
/// (chain, key) PEM.
fn new_pair(pki: &Pki, cn: &str) -> (String, String) {
    pki.ca
        .server(&[cn, "localhost", "127.0.0.1"])
        .expect("server certificate")
}

/// The certificate and key files of `options`.
fn paths(options: &SslOptions) -> (&Path, &Path) {
    (
        options.certfile.as_deref().expect("certfile"),
        options.keyfile.as_deref().expect("keyfile"),
    )
}

#[tokio::test]
async fn api_reload_under_live_connections_and_a_bad_file_keeps_the_old_certificate() {
    let pki = Pki::new("reload-api");
    let mut options = pki.options(Verify::None);
    options.reload_interval_ms = 0;
    let b = start_ssl(options.clone(), |_| {}, |_| {}).await;
    let ssl = addr(&b, "ssl:default");
    let config = client_config(pki.ca.ca_pem(), None, &[]);
    assert_eq!(cn_now(ssl, &config).await.as_deref(), Some("localhost"));
    let (mut live, ack) = connect_over_tls(ssl, config.clone(), connect_packet(V5, "live"))
        .await
        .expect("live connection");
    assert_eq!(ack.code, ReasonCode::Success);
    live.subscribe("reload/t", QoS::AtLeastOnce).await;

    let (cert, key) = new_pair(&pki, "renewed.test");
    let (cert_path, key_path) = paths(&options);
    std::fs::write(cert_path, cert).expect("write cert");
    std::fs::write(key_path, key).expect("write key");
    let (status, body) = api(&b, "POST", "/api/v5/listeners/ssl:default/reload", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"], true);
    assert_eq!(body["certificate"]["subject_cn"], "renewed.test");
    assert_eq!(cn_now(ssl, &config).await.as_deref(), Some("renewed.test"));

    // The connection made before the reload still works both ways.
    let (mut publisher, _) = connect_over_tls(ssl, config.clone(), connect_packet(V5, "pub"))
        .await
        .expect("new connection");
    publisher
        .publish("reload/t", "after reload", QoS::AtLeastOnce, false)
        .await;
    let p = live.recv_publish().await;
    assert_eq!(&p.payload[..], b"after reload");
    live.ping().await;

    // A bad file: 400 with the reason, the renewed certificate stays.
    let errors = [("listener", "ssl:default"), ("result", "error")];
    let before = counter(&b, "meshmq_tls_reload_total", &errors).await;
    std::fs::write(cert_path, "not a certificate").expect("write garbage");
    let (status, body) = api(&b, "POST", "/api/v5/listeners/ssl:default/reload", None).await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("server.pem"), "names the file: {message}");
    assert!(message.contains("previous certificate"), "{message}");
    wait_counter(&b, "meshmq_tls_reload_total", &errors, before + 1.0).await;
    assert_eq!(cn_now(ssl, &config).await.as_deref(), Some("renewed.test"));
    live.ping().await;
}

#[tokio::test]
async fn a_half_written_update_keeps_the_old_pair_until_the_key_arrives() {
    let pki = Pki::new("reload-poll");
    let mut options = pki.options(Verify::None);
    options.reload_interval_ms = 50;
    let b = start_ssl(options.clone(), |_| {}, |_| {}).await;
    let ssl = addr(&b, "ssl:default");
    let config = client_config(pki.ca.ca_pem(), None, &[]);
    assert_eq!(cn_now(ssl, &config).await.as_deref(), Some("localhost"));
    let errors = [("listener", "ssl:default"), ("result", "error")];
    let before = counter(&b, "meshmq_tls_reload_total", &errors).await;

    let (cert, key) = new_pair(&pki, "next.test");
    let (cert_path, key_path) = paths(&options);
    // The certificate first: it does not match the old key. The poll refuses the pair.
    std::fs::write(cert_path, cert).expect("write cert");
    wait_counter(&b, "meshmq_tls_reload_total", &errors, before + 1.0).await;
    assert_eq!(
        cn_now(ssl, &config).await.as_deref(),
        Some("localhost"),
        "a mismatched pair is never served"
    );
    // Then the key: the poll takes the new pair.
    std::fs::write(key_path, key).expect("write key");
    let renewed = wait_until_async(WAIT, || async {
        cn_now(ssl, &config).await.as_deref() == Some("next.test")
    })
    .await;
    assert!(renewed, "the poll loaded the new pair");
    let ok = [("listener", "ssl:default"), ("result", "ok")];
    assert!(counter(&b, "meshmq_tls_reload_total", &ok).await >= 1.0);
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_certificates() {
    let pki = Pki::new("reload-sighup");
    let mut options = pki.options(Verify::None);
    options.reload_interval_ms = 0;
    let b = start_ssl(options.clone(), |_| {}, |_| {}).await;
    let ssl = addr(&b, "ssl:default");
    let config = client_config(pki.ca.ca_pem(), None, &[]);
    let (mut live, _) = connect_over_tls(ssl, config.clone(), connect_packet(V5, "hup-live"))
        .await
        .expect("live");
    let (cert, key) = new_pair(&pki, "hup.test");
    let (cert_path, key_path) = paths(&options);
    std::fs::write(cert_path, cert).expect("write cert");
    std::fs::write(key_path, key).expect("write key");
    assert_eq!(
        cn_now(ssl, &config).await.as_deref(),
        Some("localhost"),
        "no poll: nothing changes before the signal"
    );
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let renewed = wait_until_async(WAIT, || async {
        cn_now(ssl, &config).await.as_deref() == Some("hup.test")
    })
    .await;
    assert!(renewed, "SIGHUP reloaded the listener");
    live.ping().await;
}
