//! `ssl` listeners with server authentication only: a real client library (rumqttc over
//! rustls, ring provider handed in) and a raw tokio-rustls client speak MQTT through them;
//! ALPN `mqtt` is chosen; a client that does not trust the certificate, and one that never
//! starts its handshake, are dropped and counted.

use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::{Packet, ReasonCode};
use meshmq_shared::config::tls::Verify;
use tokio::io::AsyncReadExt;

use super::support::{Pki, addr, client_config, counter, raw_tls, rumqttc_tls, start_ssl};
use super::support::{tls_connect, wait_counter};
use crate::common::clients::v4;
use crate::common::raw::connect_packet;
use crate::common::{WAIT, wait_until};

#[tokio::test]
async fn rumqttc_over_rustls_publishes_and_receives() {
    let pki = Pki::new("tls-server-rumqttc");
    let b = start_ssl(pki.options(Verify::None), |_| {}, |_| {}).await;
    let ssl = addr(&b, "ssl:default");
    let config = client_config(pki.ca.ca_pem(), None, &[]);
    let transport = rumqttc_tls(config);
    let mut sub = v4::connect(ssl, "tls-sub", |o| {
        o.set_transport(transport.clone());
    })
    .await;
    sub.subscribe("tls/t", v4::QoS::AtLeastOnce).await;
    let mut publisher = v4::connect(ssl, "tls-pub", |o| {
        o.set_transport(transport);
    })
    .await;
    publisher
        .publish("tls/t", v4::QoS::AtLeastOnce, false, "over tls")
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(&p.payload[..], b"over tls");
    assert_eq!(b.listener_connections("ssl:default"), Some(2));
    assert_eq!(
        b.listener_connections("tcp:default"),
        Some(0),
        "nothing came over plain TCP"
    );
}

#[tokio::test]
async fn raw_tokio_rustls_client_gets_alpn_mqtt_and_a_connack() {
    let pki = Pki::new("tls-server-raw");
    let b = start_ssl(pki.options(Verify::None), |_| {}, |_| {}).await;
    let ssl = addr(&b, "ssl:default");
    let tls = tls_connect(
        ssl,
        "localhost",
        client_config(pki.ca.ca_pem(), None, &["mqtt"]),
    )
    .await
    .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"mqtt"[..]));
    let mut c = crate::common::raw::RawClient::over(tls);
    let (mut c, ack) = {
        c.version = V5;
        c.handshake(connect_packet(V5, "raw-tls")).await
    };
    assert_eq!(ack.code, ReasonCode::Success);
    c.ping().await;
    let gauge = counter(&b, "meshmq_connections", &[("transport", "ssl")]).await;
    assert!(
        gauge >= 1.0,
        "meshmq_connections{{transport=ssl}} = {gauge}"
    );
    c.send(&Packet::Disconnect(meshmq_shared::codec::Disconnect::new(
        ReasonCode::Success,
    )))
    .await;
    let _ = c.wait_closed(WAIT).await;
    assert!(
        wait_until(WAIT, || b.listener_connections("ssl:default") == Some(0)).await,
        "the listener's slot is released when the connection ends"
    );
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_server_is_counted() {
    let pki = Pki::new("tls-server-untrusted");
    let b = start_ssl(pki.options(Verify::None), |_| {}, |_| {}).await;
    let ssl = addr(&b, "ssl:default");
    let labels = [("listener", "ssl:default")];
    let before = counter(&b, "meshmq_tls_handshake_failures_total", &labels).await;
    let other = Pki::new("someone else");
    let refused = tls_connect(
        ssl,
        "localhost",
        client_config(other.ca.ca_pem(), None, &[]),
    )
    .await;
    assert!(refused.is_err(), "a server the client does not trust");
    wait_counter(
        &b,
        "meshmq_tls_handshake_failures_total",
        &labels,
        before + 1.0,
    )
    .await;
    // The listener still serves others.
    let ok = raw_tls(ssl, client_config(pki.ca.ca_pem(), None, &[])).await;
    let (_c, ack) = ok.handshake(connect_packet(V5, "after-failure")).await;
    assert_eq!(ack.code, ReasonCode::Success);
}

#[tokio::test]
async fn a_silent_client_is_dropped_at_the_handshake_timeout() {
    let pki = Pki::new("tls-server-silent");
    let mut options = pki.options(Verify::None);
    options.handshake_timeout_ms = 200;
    let b = start_ssl(options, |_| {}, |_| {}).await;
    let ssl = addr(&b, "ssl:default");
    let labels = [("listener", "ssl:default")];
    let before = counter(&b, "meshmq_tls_handshake_failures_total", &labels).await;
    let mut tcp = tokio::net::TcpStream::connect(ssl).await.expect("tcp");
    assert!(
        wait_until(WAIT, || b.listener_connections("ssl:default") == Some(1)).await,
        "a handshake in progress holds a slot"
    );
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .expect("closed within the deadline");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed, not answered: {read:?}"
    );
    wait_counter(
        &b,
        "meshmq_tls_handshake_failures_total",
        &labels,
        before + 1.0,
    )
    .await;
    assert!(wait_until(WAIT, || b.listener_connections("ssl:default") == Some(0)).await);
}
