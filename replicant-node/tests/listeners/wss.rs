//! `wss` listeners: WebSocket over the same TLS stack, with a real WebSocket client
//! (tokio-tungstenite over a tokio-rustls stream). `wss:default` takes `ssl:default`'s
//! certificate; MQTT flows between a WSS client and a TCP client; the client certificate
//! names the client as on `ssl`; the `Origin` allow-list holds over TLS too.

use std::sync::Arc;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use meshmq_shared::codec::ProtocolVersion::V311;
use meshmq_shared::codec::{self, Packet, QoS, ReasonCode};
use meshmq_shared::config::ListenerKind;
use meshmq_shared::config::tls::{PeerCertAs, Verify};
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::support::tls_connect;
use super::support::{Pki, add_listener, addr, client_config, counter, recording_authn, start};
use crate::common::WAIT;
use crate::common::raw::{RawClient, connect_packet};

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// Opens `wss://localhost/mqtt` on `at` (subprotocol `mqtt`, optional `Origin`): the
/// socket, or the HTTP status of the refusal.
async fn open(
    at: std::net::SocketAddr,
    config: Arc<ClientConfig>,
    origin: Option<&str>,
) -> Result<Wss, u16> {
    let tls = tls_connect(at, "localhost", config)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut req = "wss://localhost/mqtt"
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    if let Some(o) = origin {
        req.headers_mut()
            .insert("Origin", HeaderValue::from_str(o).expect("origin"));
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, tls))
        .await
        .expect("upgrade in time")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("upgrade: {e}"),
    }
}

async fn send(ws: &mut Wss, p: &Packet) {
    let mut buf = BytesMut::new();
    codec::encode(p, V311, &mut buf).expect("encode");
    ws.send(Message::Binary(buf.freeze())).await.expect("send");
}

async fn recv(ws: &mut Wss, rbuf: &mut BytesMut) -> Packet {
    loop {
        if let Some(p) = codec::decode_packet(rbuf, V311, 1 << 20).expect("decode") {
            return p;
        }
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time")
        {
            Some(Ok(Message::Binary(b))) => rbuf.extend_from_slice(&b),
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn wss_carries_mqtt_and_the_certificate_names_the_client() {
    let pki = Pki::new("wss");
    let options = pki.options(Verify::Optional);
    let (authn, asked) = recording_authn(&[("clientid", "${clientid}")]).await;
    let b = start(|c| {
        add_listener(c, ListenerKind::Ssl, "default", |l| {
            l.ssl_options = Some(options);
        });
        // No ssl_options of its own: ssl:default's certificate.
        add_listener(c, ListenerKind::Wss, "default", |l| {
            l.peer_cert_as_clientid = PeerCertAs::Cn;
        });
        c.authentication = vec![authn];
    })
    .await;
    let wss = addr(&b, "wss:default");
    let (chain, key) = pki.client("browser-1");
    let config = client_config(pki.ca.ca_pem(), Some((&chain, &key)), &["http/1.1"]);
    let mut ws = open(wss, config, None).await.expect("upgraded");
    let mut rbuf = BytesMut::new();
    send(
        &mut ws,
        &Packet::Connect(Box::new(connect_packet(V311, "claimed"))),
    )
    .await;
    match recv(&mut ws, &mut rbuf).await {
        Packet::ConnAck(a) => assert_eq!(a.code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let seen = asked.lock().last().cloned().expect("asked");
    assert_eq!(seen["clientid"], "browser-1");
    let subscribe = meshmq_shared::codec::Subscribe {
        packet_id: 1,
        filters: vec![(
            "wss/t".into(),
            crate::common::raw::sub_opts(QoS::AtMostOnce),
        )],
        properties: Default::default(),
    };
    send(&mut ws, &Packet::Subscribe(subscribe)).await;
    assert!(matches!(recv(&mut ws, &mut rbuf).await, Packet::SubAck(_)));
    let mut tcp = RawClient::connect(b.mqtt_addr(), V311, "wss-feeder").await;
    tcp.publish("wss/t", "to the browser", QoS::AtMostOnce, false)
        .await;
    match recv(&mut ws, &mut rbuf).await {
        Packet::Publish(p) => assert_eq!(&p.payload[..], b"to the browser"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    assert_eq!(b.listener_connections("wss:default"), Some(1));
    let gauge = counter(&b, "meshmq_connections", &[("transport", "wss")]).await;
    assert!(
        gauge >= 1.0,
        "meshmq_connections{{transport=wss}} = {gauge}"
    );
}

#[tokio::test]
async fn wss_origin_allowed_and_refused() {
    let pki = Pki::new("wss-origin");
    let options = pki.options(Verify::None);
    let b = start(|c| {
        add_listener(c, ListenerKind::Wss, "default", |l| {
            l.ssl_options = Some(options);
            l.websocket.check_origin_enable = true;
            l.websocket.allow_origin_absence = false;
            l.websocket.check_origins = vec!["https://app.example.test".into()];
        });
    })
    .await;
    let wss = addr(&b, "wss:default");
    let config = client_config(pki.ca.ca_pem(), None, &["http/1.1"]);
    assert!(
        open(wss, config.clone(), Some("https://app.example.test"))
            .await
            .is_ok()
    );
    assert_eq!(
        open(wss, config.clone(), Some("https://evil.example.test"))
            .await
            .err(),
        Some(403)
    );
    assert_eq!(open(wss, config, None).await.err(), Some(403));
}
