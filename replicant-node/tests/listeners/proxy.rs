//! PROXY protocol on `tcp`, `ssl` and `ws` listeners: v1 and v2 headers from a trusted
//! source name the client for authentication (`${peerhost}`), bans and authorization by
//! address; v2 LOCAL keeps the socket's address; a connection from an untrusted source, one
//! without a header, one with a malformed header and one whose header does not arrive in
//! time are closed and counted in `meshmq_proxy_protocol_total{result}`. On `ssl` the
//! header comes before the TLS handshake, on `ws` before the HTTP upgrade.

use std::net::SocketAddr;

use bytes::BytesMut;
use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{self, Packet, QoS, ReasonCode};
use meshmq_shared::config::tls::Verify;
use meshmq_shared::config::{AuthorizationConfig, ListenerKind};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::support::{
    Asked, Pki, add_listener, addr, ban, client_config, counter, proxy_v1, proxy_v2,
    recording_authn, start, tls_over, wait_counter,
};
use crate::common::raw::{RawClient, connect_packet};
use crate::common::{WAIT, wait_until};

const LB: &str = "127.0.0.0/8";

/// Opens a TCP connection to `at` and sends `header` (nothing else yet).
async fn with_header(at: SocketAddr, header: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(at).await.expect("connect");
    tcp.write_all(header).await.expect("header");
    tcp
}

/// Connects through a header naming `client` (v1 or v2) and sends CONNECT `id`; the
/// CONNACK's code and the client.
async fn connect_as(at: SocketAddr, header: Vec<u8>, id: &str) -> (RawClient, ReasonCode) {
    let c = RawClient::over(with_header(at, &header).await);
    let (c, ack) = c.handshake(connect_packet(V5, id)).await;
    (c, ack.code)
}

/// The `peerhost` the authenticator was last asked with.
fn last_peerhost(asked: &Asked) -> String {
    asked
        .lock()
        .last()
        .and_then(|f| f.get("peerhost").cloned())
        .unwrap_or_default()
}

fn dest() -> SocketAddr {
    "10.0.0.1:1883".parse().expect("addr")
}

#[tokio::test]
async fn headers_from_a_trusted_source_name_the_client() {
    let (authn, asked) = recording_authn(&[("peerhost", "${peerhost}")]).await;
    let b = start(|c| {
        add_listener(c, ListenerKind::Tcp, "lb", |l| {
            l.proxy_protocol = true;
            l.proxy_protocol_trusted = vec![LB.into()];
        });
        c.authentication = vec![authn];
    })
    .await;
    let lb = addr(&b, "tcp:lb");
    let ok = [("result", "ok")];
    let before = counter(&b, "meshmq_proxy_protocol_total", &ok).await;
    for (header, client) in [
        (
            proxy_v1("203.0.113.7:4000".parse().expect("a"), dest()),
            "203.0.113.7",
        ),
        (
            proxy_v2("198.51.100.9:4001".parse().expect("a"), dest()),
            "198.51.100.9",
        ),
        (
            proxy_v2(
                "[2001:db8::5]:4002".parse().expect("a"),
                "[::1]:1883".parse().expect("a"),
            ),
            "2001:db8::5",
        ),
        (
            proxy_v2(
                "[::ffff:192.0.2.44]:5".parse().expect("a"),
                "[::1]:1883".parse().expect("a"),
            ),
            "192.0.2.44",
        ),
    ] {
        let (_c, code) = connect_as(lb, header, client).await;
        assert_eq!(code, ReasonCode::Success, "{client}");
        assert_eq!(last_peerhost(&asked), client);
    }
    // A header and the client's CONNECT in one write: nothing after the header is lost.
    let mut both = proxy_v1("203.0.113.9:1".parse().expect("a"), dest());
    let mut connect = BytesMut::new();
    codec::encode(
        &Packet::Connect(Box::new(connect_packet(V311, "one-write"))),
        V311,
        &mut connect,
    )
    .expect("encode");
    both.extend_from_slice(&connect);
    let mut c = RawClient::over(with_header(lb, &both).await);
    match c.recv().await {
        Ok(Packet::ConnAck(a)) => assert_eq!(a.code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert_eq!(last_peerhost(&asked), "203.0.113.9");
    // v2 LOCAL (a balancer's health check): the socket's own address.
    let mut local = proxy_v2("198.51.100.1:1".parse().expect("a"), dest());
    local[12] = 0x20;
    let (_c, code) = connect_as(lb, local, "local").await;
    assert_eq!(code, ReasonCode::Success);
    assert_eq!(last_peerhost(&asked), "127.0.0.1");
    wait_counter(&b, "meshmq_proxy_protocol_total", &ok, before + 6.0).await;
}

#[tokio::test]
async fn bans_and_authorization_use_the_address_of_the_header() {
    let authz: AuthorizationConfig = serde_json::from_value(json!({ "sources": [
        { "type": "file", "rules": [
            { "permission": "deny", "who": { "ipaddr": "198.51.100.0/24" },
              "action": "publish", "topics": ["x/#"] } ] }
    ]}))
    .expect("authorization");
    let b = start(|c| {
        add_listener(c, ListenerKind::Tcp, "lb", |l| {
            l.proxy_protocol = true;
            l.proxy_protocol_trusted = vec![LB.into()];
        });
        c.authorization = authz;
    })
    .await;
    let lb = addr(&b, "tcp:lb");
    ban(&b, "peerhost", "203.0.113.66").await;
    let (_c, code) = connect_as(
        lb,
        proxy_v1("203.0.113.66:1".parse().expect("a"), dest()),
        "b1",
    )
    .await;
    assert_eq!(code, ReasonCode::Banned, "the header's address is banned");
    let (_c, code) = connect_as(
        lb,
        proxy_v2("203.0.113.67:1".parse().expect("a"), dest()),
        "b2",
    )
    .await;
    assert_eq!(code, ReasonCode::Success);
    let (mut denied, _) = connect_as(
        lb,
        proxy_v2("198.51.100.20:1".parse().expect("a"), dest()),
        "z1",
    )
    .await;
    assert_eq!(
        denied.publish("x/1", "no", QoS::AtLeastOnce, false).await,
        ReasonCode::NotAuthorized
    );
    let (mut allowed, _) = connect_as(
        lb,
        proxy_v2("203.0.113.8:1".parse().expect("a"), dest()),
        "z2",
    )
    .await;
    assert_eq!(
        allowed.publish("x/1", "yes", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );
}

/// Whether the broker closes `tcp` (EOF or reset) within [`WAIT`] without answering.
async fn closed_silently(tcp: TcpStream) -> bool {
    let mut c = RawClient::over(tcp);
    match c.read_to_close(WAIT).await {
        Ok(n) => n == 0,
        Err(e) => e.kind() != std::io::ErrorKind::TimedOut,
    }
}

#[tokio::test]
async fn untrusted_missing_invalid_and_late_headers_close_the_connection() {
    let b = start(|c| {
        add_listener(c, ListenerKind::Tcp, "strict", |l| {
            l.proxy_protocol = true;
            l.proxy_protocol_trusted = vec!["10.0.0.0/8".into()];
        });
        add_listener(c, ListenerKind::Tcp, "lb", |l| {
            l.proxy_protocol = true;
            l.proxy_protocol_trusted = vec![LB.into()];
            l.proxy_protocol_timeout_ms = 200;
        });
    })
    .await;
    let (strict, lb) = (addr(&b, "tcp:strict"), addr(&b, "tcp:lb"));
    let client: SocketAddr = "203.0.113.7:4000".parse().expect("a");
    let mut connect = BytesMut::new();
    codec::encode(
        &Packet::Connect(Box::new(connect_packet(V311, "pp"))),
        V311,
        &mut connect,
    )
    .expect("encode");
    let results = ["untrusted", "missing", "invalid", "timeout"];
    let mut before = Vec::new();
    for result in results {
        before.push(counter(&b, "meshmq_proxy_protocol_total", &[("result", result)]).await);
    }
    // Untrusted source: closed even with a good header.
    let mut header = proxy_v1(client, dest());
    header.extend_from_slice(&connect);
    assert!(
        closed_silently(with_header(strict, &header).await).await,
        "untrusted"
    );
    // Trusted source without a header.
    assert!(
        closed_silently(with_header(lb, &connect).await).await,
        "missing"
    );
    // A malformed header.
    assert!(
        closed_silently(with_header(lb, b"PROXY TCP4 not an address\r\n").await).await,
        "invalid"
    );
    // A header that never ends.
    assert!(
        closed_silently(with_header(lb, b"PROXY TCP4 203.0.113.7").await).await,
        "timeout"
    );
    for (i, result) in results.iter().enumerate() {
        wait_counter(
            &b,
            "meshmq_proxy_protocol_total",
            &[("result", result)],
            before[i] + 1.0,
        )
        .await;
    }
    assert!(wait_until(WAIT, || b.listener_connections("tcp:lb") == Some(0)).await);
}

#[tokio::test]
async fn on_ssl_the_header_comes_before_the_handshake_and_on_ws_before_the_upgrade() {
    let pki = Pki::new("proxy-tls");
    let options = pki.options(Verify::None);
    let (authn, asked) = recording_authn(&[("peerhost", "${peerhost}")]).await;
    let b = start(|c| {
        add_listener(c, ListenerKind::Ssl, "lb", |l| {
            l.ssl_options = Some(options);
            l.proxy_protocol = true;
            l.proxy_protocol_trusted = vec![LB.into()];
        });
        add_listener(c, ListenerKind::Ws, "lb", |l| {
            l.proxy_protocol = true;
            l.proxy_protocol_trusted = vec![LB.into()];
        });
        c.authentication = vec![authn];
    })
    .await;
    let header = proxy_v2("192.0.2.10:7000".parse().expect("a"), dest());
    let tcp = with_header(addr(&b, "ssl:lb"), &header).await;
    let tls = tls_over(tcp, "localhost", client_config(pki.ca.ca_pem(), None, &[]))
        .await
        .expect("TLS after the header");
    let (_c, ack) = RawClient::over(tls)
        .handshake(connect_packet(V5, "ssl-pp"))
        .await;
    assert_eq!(ack.code, ReasonCode::Success);
    assert_eq!(last_peerhost(&asked), "192.0.2.10");

    let header = proxy_v1("192.0.2.11:7001".parse().expect("a"), dest());
    let tcp = with_header(addr(&b, "ws:lb"), &header).await;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        "ws://localhost/mqtt",
    )
    .expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tokio_tungstenite::tungstenite::http::HeaderValue::from_static("mqtt"),
    );
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, tcp))
        .await
        .expect("in time")
        .expect("upgrade after the header");
    let mut buf = BytesMut::new();
    codec::encode(
        &Packet::Connect(Box::new(connect_packet(V311, "ws-pp"))),
        V311,
        &mut buf,
    )
    .expect("encode");
    futures_util::SinkExt::send(
        &mut ws,
        tokio_tungstenite::tungstenite::Message::Binary(buf.freeze()),
    )
    .await
    .expect("send");
    let frame = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut ws))
        .await
        .expect("CONNACK in time");
    assert!(
        matches!(frame, Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(ref b))) if b[..] == [0x20, 2, 0, 0]),
        "{frame:?}"
    );
    assert_eq!(last_peerhost(&asked), "192.0.2.11");
}
