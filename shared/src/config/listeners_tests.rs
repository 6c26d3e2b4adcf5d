//! `[listeners]` through the normal loading path: the named listeners in EMQX's shape, the
//! flat keys of earlier versions, and each refused form named by its key.

use std::net::SocketAddr;

use super::{ConfigError, Overrides, load_with_env};
use crate::config::tls::{ClientAuth, Verify};
use crate::config::{Config, ListenerKind};

fn load_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "meshmq-listeners-config-{}-{}.toml",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, text).expect("write temp config");
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let loaded = load_with_env(Some(&path), &env, &Overrides::default());
    let _ = std::fs::remove_file(&path);
    loaded
}

fn load(text: &str) -> Result<Config, ConfigError> {
    load_env(text, &[])
}

fn refused_key(text: &str) -> String {
    match load(text) {
        Err(ConfigError::Listener { key, .. }) => key,
        other => panic!("expected a listener error, got {other:?}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// (id, bind, enabled) of every resolved listener.
fn listed(c: &Config) -> Vec<(String, SocketAddr, bool)> {
    c.listeners
        .resolve()
        .expect("resolves")
        .into_iter()
        .map(|s| (s.id(), s.bind, s.config.enable))
        .collect()
}

#[test]
fn defaults_are_tcp_and_ws_on_loopback() {
    let c = load("").expect("loads");
    assert_eq!(
        listed(&c),
        vec![
            ("tcp:default".into(), addr("127.0.0.1:1883"), true),
            ("ws:default".into(), addr("127.0.0.1:8083"), true),
        ]
    );
}

#[test]
fn flat_keys_keep_working_and_conflicts_name_the_new_key() {
    let c = load("[listeners]\nmqtt_bind = \"127.0.0.1:2883\"\nws_bind = \"127.0.0.1:9083\"\n")
        .expect("loads");
    assert_eq!(listed(&c)[0].1, addr("127.0.0.1:2883"));
    assert_eq!(listed(&c)[1].1, addr("127.0.0.1:9083"));
    // The new key alone.
    let c = load("[listeners.tcp.default]\nbind = \"127.0.0.1:3883\"\n").expect("loads");
    assert_eq!(listed(&c)[0].1, addr("127.0.0.1:3883"));
    // Both, saying different things.
    let text = "[listeners]\nmqtt_bind = \"127.0.0.1:2883\"\n\
                [listeners.tcp.default]\nbind = \"127.0.0.1:3883\"\n";
    let err = load(text).expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains("listeners.tcp.default.bind"), "{msg}");
    assert!(msg.contains("listeners.mqtt_bind"), "{msg}");
}

#[test]
fn named_listeners_need_an_address_and_can_be_disabled() {
    let text = "[listeners.tcp.internal]\nbind = \"127.0.0.1:11883\"\nmax_connections = 10\n\
                max_conn_rate = 100\n\
                [listeners.ws.default]\nenable = false\n";
    let c = load(text).expect("loads");
    assert_eq!(
        listed(&c),
        vec![
            ("tcp:default".into(), addr("127.0.0.1:1883"), true),
            ("tcp:internal".into(), addr("127.0.0.1:11883"), true),
            ("ws:default".into(), addr("127.0.0.1:8083"), false),
        ]
    );
    assert_eq!(
        refused_key("[listeners.tcp.other]\nmax_connections = 5\n"),
        "listeners.tcp.other.bind"
    );
    assert_eq!(
        refused_key("[listeners.tcp.x]\nbind = \"127.0.0.1:1883\"\n"),
        "listeners.tcp.x.bind",
        "two listeners on one address"
    );
    assert_eq!(
        refused_key("[listeners.tcp.default]\nmax_connections = 0\n"),
        "listeners.tcp.default.max_connections"
    );
}

#[test]
fn environment_sets_named_listener_keys() {
    let c = load_env(
        "",
        &[
            ("MESHMQ_LISTENERS__TCP__EDGE__BIND", "127.0.0.1:21883"),
            ("MESHMQ_LISTENERS__TCP__EDGE__PROXY_PROTOCOL", "true"),
            (
                "MESHMQ_LISTENERS__TCP__EDGE__PROXY_PROTOCOL_TRUSTED",
                "[\"10.0.0.0/8\"]",
            ),
            (
                "MESHMQ_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__CERTFILE",
                "/etc/meshmq/cert.pem",
            ),
            (
                "MESHMQ_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__KEYFILE",
                "/etc/meshmq/key.pem",
            ),
        ],
    )
    .expect("loads");
    let edge = &c.listeners.tcp["edge"];
    assert_eq!(edge.bind, Some(addr("127.0.0.1:21883")));
    assert!(edge.proxy_protocol);
    assert_eq!(edge.proxy_protocol_trusted, vec!["10.0.0.0/8".to_owned()]);
    let ids: Vec<_> = listed(&c).into_iter().map(|l| l.0).collect();
    assert!(ids.contains(&"ssl:default".to_owned()), "{ids:?}");
}

const SSL: &str = r#"
[listeners.ssl.default]
bind = "0.0.0.0:8883"
[listeners.ssl.default.ssl_options]
certfile = "/etc/meshmq/server.pem"
keyfile = "/etc/meshmq/server.key"
password = "hunter2"
cacertfile = "/etc/meshmq/ca.pem"
verify = "verify_peer"
fail_if_no_peer_cert = true
[listeners.wss.default]
bind = "0.0.0.0:8084"
"#;

#[test]
fn ssl_options_read_as_emqx_writes_them_and_wss_default_inherits() {
    let text = format!(
        "{SSL}\n[[authentication]]\nmechanism = \"password_based\"\nbackend = \"built_in_database\"\n"
    );
    let c = load(&text).expect("loads");
    let specs = c.listeners.resolve().expect("resolves");
    let ssl = specs
        .iter()
        .find(|s| s.kind == ListenerKind::Ssl)
        .expect("ssl listener");
    let tls = ssl.config.ssl_options.as_ref().expect("ssl_options");
    assert_eq!(tls.verify, Verify::Optional);
    assert_eq!(tls.client_auth(), ClientAuth::Required);
    assert_eq!(ssl.bind, addr("0.0.0.0:8883"));
    let wss = specs
        .iter()
        .find(|s| s.kind == ListenerKind::Wss)
        .expect("wss listener");
    assert_eq!(wss.config.ssl_options.as_ref(), Some(tls), "inherited");
    // The key password never shows in Debug output.
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn tls_listeners_need_a_certificate_and_a_ca_for_client_certificates() {
    assert_eq!(
        refused_key("[listeners.ssl.default]\n"),
        "listeners.ssl.default.ssl_options.certfile"
    );
    assert_eq!(
        refused_key("[listeners.wss.default]\n"),
        "listeners.wss.default.ssl_options.certfile"
    );
    let text = "[listeners.ssl.default.ssl_options]\ncertfile = \"c\"\nkeyfile = \"k\"\n\
                verify = \"required\"\n";
    assert_eq!(
        refused_key(text),
        "listeners.ssl.default.ssl_options.cacertfile"
    );
    let text = "[listeners.ssl.default.ssl_options]\ncertfile = \"c\"\nkeyfile = \"k\"\n\
                versions = [\"tlsv1.1\"]\n";
    assert_eq!(
        refused_key(text),
        "listeners.ssl.default.ssl_options.versions"
    );
    // TLS-only settings on a plain listener.
    let text = "[listeners.tcp.default.ssl_options]\ncertfile = \"c\"\nkeyfile = \"k\"\n";
    assert_eq!(refused_key(text), "listeners.tcp.default.ssl_options");
    let text = "[listeners.tcp.default]\npeer_cert_as_username = \"cn\"\n";
    assert_eq!(
        refused_key(text),
        "listeners.tcp.default.peer_cert_as_username"
    );
    // An identity from the certificate needs certificates.
    let text = "[listeners.ssl.default]\npeer_cert_as_username = \"cn\"\n\
                [listeners.ssl.default.ssl_options]\ncertfile = \"c\"\nkeyfile = \"k\"\n";
    assert_eq!(
        refused_key(text),
        "listeners.ssl.default.peer_cert_as_username"
    );
}

#[test]
fn proxy_protocol_needs_trusted_sources() {
    assert_eq!(
        refused_key("[listeners.tcp.default]\nproxy_protocol = true\n"),
        "listeners.tcp.default.proxy_protocol_trusted"
    );
    let text = "[listeners.tcp.default]\nproxy_protocol = true\n\
                proxy_protocol_trusted = [\"10.0.0.0/33\"]\n";
    assert_eq!(
        refused_key(text),
        "listeners.tcp.default.proxy_protocol_trusted"
    );
    let text = "[listeners.tcp.default]\nproxy_protocol = true\n\
                proxy_protocol_trusted = [\"10.0.0.0/8\", \"127.0.0.1\"]\n";
    load(text).expect("loads");
}

#[test]
fn websocket_options_only_on_websocket_listeners() {
    let text = "[listeners.tcp.default.websocket]\nmqtt_path = \"/x\"\n";
    assert_eq!(refused_key(text), "listeners.tcp.default.websocket");
    let text = "[listeners.ws.default.websocket]\nmqtt_path = \"x\"\n";
    assert_eq!(
        refused_key(text),
        "listeners.ws.default.websocket.mqtt_path"
    );
    let text = "[listeners.ws.default.websocket]\nmqtt_path = \"/mqtt-ws\"\n\
                check_origin_enable = true\ncheck_origins = [\"https://app.example.com\"]\n";
    let c = load(text).expect("loads");
    assert_eq!(c.listeners.ws["default"].websocket.mqtt_path, "/mqtt-ws");
}

#[test]
fn open_listeners_need_authentication_or_required_certificates() {
    // A public plain listener without an authenticator is refused ...
    let err = load("[listeners.tcp.default]\nbind = \"0.0.0.0:1883\"\n").expect_err("open");
    assert!(err.to_string().contains("allow_anonymous"), "{err}");
    // ... and so is one that skips authentication while others have it.
    let text = "[[authentication]]\nmechanism = \"password_based\"\nbackend = \"built_in_database\"\n\
                [listeners.tcp.public]\nbind = \"0.0.0.0:1884\"\nenable_authn = false\n";
    assert!(load(text).is_err());
    // Required client certificates are authentication enough.
    let text = r#"
[listeners]
ws_bind = "127.0.0.1:8083"
[listeners.ssl.default]
bind = "0.0.0.0:8883"
[listeners.ssl.default.ssl_options]
certfile = "c"
keyfile = "k"
cacertfile = "ca"
verify = "required"
"#;
    load(text).expect("mutual TLS on a public address");
}

#[test]
fn the_http_api_key_never_shows_in_debug_output() {
    let c = load("[listeners]\napi_key = \"k3y-never-shown-anywhere\"\n").expect("loads");
    assert_eq!(
        c.listeners.api_key.as_deref(),
        Some("k3y-never-shown-anywhere")
    );
    for shown in [format!("{c:?}"), format!("{:?}", c.listeners)] {
        assert!(!shown.contains("k3y-never-shown"), "{shown}");
        assert!(shown.contains("api_key"), "the field is listed: {shown}");
    }
    let none = load("").expect("loads");
    assert!(format!("{:?}", none.listeners).contains("api_key: None"));
}
