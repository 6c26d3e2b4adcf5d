//! `/api/v5/listeners`: the API key guards it; the list has every configured listener in
//! EMQX's shape with its live connection count (a disabled one as not running), a TLS
//! listener's certificate summary and never a secret; one listener by id (404 otherwise);
//! a reload that succeeds, and one whose new key does not load (400, the password never
//! shown, the old certificate kept).

use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::config::ListenerKind;
use meshmq_shared::config::tls::Verify;
use meshmq_shared::tls::dev_ca::encrypt_key_pem;
use serde_json::Value;

use super::support::{Pki, add_listener, api, client_config, mqtt_over_tls, start};
use crate::common::raw::RawClient;
use crate::common::{WAIT, wait_until};

const KEY: &str = "listeners-api-key";

#[tokio::test]
async fn the_list_shows_every_listener_with_its_connections_and_no_secret() {
    let pki = Pki::new("api");
    let mut options = pki.options(Verify::None);
    let key_path = options.keyfile.clone().expect("keyfile");
    let plain = std::fs::read_to_string(&key_path).expect("key");
    std::fs::write(
        &key_path,
        encrypt_key_pem(&plain, "hunter2-secret").expect("enc"),
    )
    .expect("write");
    options.password = Some("hunter2-secret".into());
    let b = start(|c| {
        c.listeners.api_key = Some(KEY.into());
        add_listener(c, ListenerKind::Ssl, "default", |l| {
            l.ssl_options = Some(options.clone());
            l.max_connections = Some(100);
        });
        add_listener(c, ListenerKind::Wss, "default", |l| l.enable = false);
    })
    .await;
    let (status, _) = api(&b, "GET", "/api/v5/listeners", None).await;
    assert_eq!(status, 401, "the API key is required");

    let ssl = b.listener_addr("ssl:default").expect("ssl running");
    let config = client_config(pki.ca.ca_pem(), None, &[]);
    let mut tls_clients = Vec::new();
    for i in 0..2 {
        let tls = super::support::raw_tls(ssl, config.clone()).await;
        let (c, _) = tls
            .handshake(crate::common::raw::connect_packet(V5, &format!("api-{i}")))
            .await;
        tls_clients.push(c);
    }
    let _tcp = RawClient::connect(b.mqtt_addr(), V5, "api-tcp").await;
    assert!(wait_until(WAIT, || b.listener_connections("ssl:default") == Some(2)).await);

    let (status, list) = api(&b, "GET", "/api/v5/listeners", Some(KEY)).await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|l| l["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["tcp:default", "ssl:default", "ws:default", "wss:default"]
    );
    let by_id = |id: &str| -> Value {
        list.as_array()
            .and_then(|a| a.iter().find(|l| l["id"] == id).cloned())
            .unwrap_or(Value::Null)
    };
    let ssl_json = by_id("ssl:default");
    assert_eq!(ssl_json["type"], "ssl");
    assert_eq!(ssl_json["name"], "default");
    assert_eq!(ssl_json["bind"], ssl.to_string());
    assert_eq!(ssl_json["running"], true);
    assert_eq!(ssl_json["current_connections"], 2);
    assert_eq!(ssl_json["max_connections"], 100);
    assert_eq!(ssl_json["status"]["current_connections"], 2);
    assert_eq!(ssl_json["ssl"]["verify"], "none");
    assert_eq!(ssl_json["ssl"]["certificate"]["subject_cn"], "localhost");
    assert!(ssl_json["ssl"]["certificate"]["not_after"].is_string());
    let tcp_json = by_id("tcp:default");
    assert_eq!(tcp_json["current_connections"], 1);
    assert_eq!(tcp_json["max_connections"], "infinity");
    let wss_json = by_id("wss:default");
    assert_eq!(
        (wss_json["enable"].clone(), wss_json["running"].clone()),
        (false.into(), false.into())
    );
    let text = list.to_string();
    for secret in ["hunter2", "PRIVATE KEY", KEY] {
        assert!(!text.contains(secret), "the list shows {secret:?}");
    }

    let (status, one) = api(&b, "GET", "/api/v5/listeners/ssl:default", Some(KEY)).await;
    assert_eq!((status, one["id"].clone()), (200, "ssl:default".into()));
    let (status, _) = api(&b, "GET", "/api/v5/listeners/ssl:nope", Some(KEY)).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn reload_answers_the_summary_or_why_not() {
    let pki = Pki::new("api-reload");
    let mut options = pki.options(Verify::None);
    options.reload_interval_ms = 0;
    let key_path = options.keyfile.clone().expect("keyfile");
    let plain = std::fs::read_to_string(&key_path).expect("key");
    std::fs::write(
        &key_path,
        encrypt_key_pem(&plain, "s3cr3t-pw").expect("enc"),
    )
    .expect("w");
    options.password = Some("s3cr3t-pw".into());
    let b = super::support::start_ssl(options, |_| {}, |_| {}).await;
    let (status, body) = api(&b, "POST", "/api/v5/listeners/ssl:default/reload", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"], false, "nothing changed on disk");
    assert_eq!(body["certificate"]["subject_cn"], "localhost");

    let (status, body) = api(&b, "POST", "/api/v5/listeners/tcp:default/reload", None).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = api(&b, "POST", "/api/v5/listeners/ssl:nope/reload", None).await;
    assert_eq!(status, 404);

    // A new key encrypted with another password: it does not load.
    std::fs::write(&key_path, encrypt_key_pem(&plain, "other-pw").expect("enc")).expect("w");
    let (status, body) = api(&b, "POST", "/api/v5/listeners/ssl:default/reload", None).await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("server.key"), "names the file: {message}");
    assert!(
        !message.contains("s3cr3t") && !message.contains("other-pw"),
        "{message}"
    );
    let ssl = b.listener_addr("ssl:default").expect("ssl");
    let config = client_config(pki.ca.ca_pem(), None, &[]);
    assert!(
        mqtt_over_tls(ssl, config, "still-served").await.is_ok(),
        "the old certificate still serves"
    );
}
