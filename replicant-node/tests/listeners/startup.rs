//! Start-up of named listeners: every enabled one is bound (and a disabled one is not), a
//! taken port names the listener's `bind` setting, a certificate file that does not load
//! names the listener and the file; nothing is served then.

use meshmq_shared::config::tls::Verify;
use meshmq_shared::config::{Config, ListenerKind};
use replicant_node::Broker;

use super::support::{Pki, add_listener, start};
use crate::common::test_config;

async fn start_error(config: Config) -> String {
    match Broker::builder(config).start().await {
        Ok(_) => panic!("the start must fail"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn every_enabled_listener_is_bound_and_a_disabled_one_is_not() {
    let pki = Pki::new("startup-all");
    let options = pki.options(Verify::None);
    let b = start(|c| {
        add_listener(c, ListenerKind::Tcp, "second", |_| {});
        add_listener(c, ListenerKind::Ssl, "default", |l| {
            l.ssl_options = Some(options)
        });
        add_listener(c, ListenerKind::Ws, "second", |_| {});
        add_listener(c, ListenerKind::Tcp, "off", |l| l.enable = false);
    })
    .await;
    for id in [
        "tcp:default",
        "tcp:second",
        "ssl:default",
        "ws:default",
        "ws:second",
    ] {
        let a = b
            .listener_addr(id)
            .unwrap_or_else(|| panic!("{id} not running"));
        assert!(
            tokio::net::TcpStream::connect(a).await.is_ok(),
            "{id} accepts at {a}"
        );
    }
    assert_eq!(b.listener_addr("tcp:off"), None);
    assert_eq!(
        b.listener_connections("tcp:off"),
        Some(0),
        "known, not running"
    );
    assert_eq!(b.mqtt_addr(), b.listener_addr("tcp:default").expect("tcp"));
    assert_eq!(b.ws_addr(), b.listener_addr("ws:default"));
}

#[tokio::test]
async fn a_taken_port_names_the_listener_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let at = taken.local_addr().expect("addr");
    let pki = Pki::new("startup-taken");
    let mut config = test_config();
    add_listener(&mut config, ListenerKind::Ssl, "default", |l| {
        l.bind = Some(at);
        l.ssl_options = Some(pki.options(Verify::None));
    });
    let err = start_error(config).await;
    assert!(err.contains("listeners.ssl.default.bind"), "{err}");
    assert!(err.contains(&at.to_string()), "{err}");
}

#[tokio::test]
async fn a_certificate_that_does_not_load_names_the_listener_and_the_file() {
    let pki = Pki::new("startup-cert");
    let mut options = pki.options(Verify::None);
    let missing = pki.path("nowhere.pem");
    options.certfile = Some(missing);
    let mut config = test_config();
    add_listener(&mut config, ListenerKind::Wss, "edge", |l| {
        l.ssl_options = Some(options);
    });
    let err = start_error(config).await;
    assert!(err.contains("wss:edge"), "{err}");
    assert!(err.contains("nowhere.pem"), "{err}");
}
