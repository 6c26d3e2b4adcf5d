//! MQTT over WebSocket (MQTT 5.0 section 6): a 3.1.1 client on `ws://.../mqtt` with the
//! `mqtt` subprotocol exchanges messages with a TCP client; MQTT packets may span WebSocket
//! frames and one frame may carry several packets. The WebSocket frame and message limits
//! follow `mqtt.max_packet_size`: a packet the MQTT limit allows passes, a frame announced
//! beyond it closes the connection before its payload is read. The `ws:default` listener's
//! `websocket` options and trusted proxies come from the configuration: its path, its
//! Origin allow-list, and the client address a trusted proxy forwards, which is the one
//! bans apply to.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use meshmq_shared::codec::ProtocolVersion::{self, V311};
use meshmq_shared::codec::{self, Packet, Publish, QoS, ReasonCode, Subscribe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::common::clients::v4;
use crate::common::raw::{RawClient, connect_packet, publish_packet, sub_opts};
use crate::common::{self, WAIT};

/// An MQTT client over a WebSocket, using our codec.
struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    rbuf: BytesMut,
    version: ProtocolVersion,
}

impl WsClient {
    /// Upgrades at `path` with extra request headers (and `mqtt` offered); the refusal's
    /// HTTP status otherwise.
    async fn open_with(
        addr: SocketAddr,
        path: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<WsClient, u16> {
        let mut req = format!("ws://{addr}{path}")
            .into_client_request()
            .expect("ws request");
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        for (k, v) in headers {
            req.headers_mut()
                .append(*k, HeaderValue::from_str(v).expect("header value"));
        }
        match tokio::time::timeout(WAIT, connect_async(req))
            .await
            .expect("ws handshake in time")
        {
            Ok((ws, _)) => Ok(WsClient {
                ws,
                rbuf: BytesMut::new(),
                version: V311,
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("ws handshake: {e}"),
        }
    }

    async fn open(addr: SocketAddr) -> WsClient {
        let mut req = format!("ws://{addr}/mqtt")
            .into_client_request()
            .expect("ws request");
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        let (ws, resp) = tokio::time::timeout(WAIT, connect_async(req))
            .await
            .expect("ws handshake in time")
            .expect("ws handshake");
        let proto = resp
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            proto,
            Some("mqtt"),
            "the broker selects the mqtt subprotocol"
        );
        WsClient {
            ws,
            rbuf: BytesMut::new(),
            version: V311,
        }
    }

    fn encode(&self, p: &Packet) -> Vec<u8> {
        let mut buf = BytesMut::new();
        codec::encode(p, self.version, &mut buf).expect("encodes");
        buf.to_vec()
    }

    async fn send_frame(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("ws send");
    }

    async fn send(&mut self, p: &Packet) {
        let bytes = self.encode(p);
        self.send_frame(bytes).await;
    }

    async fn recv(&mut self) -> Packet {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(p) =
                codec::decode_packet(&mut self.rbuf, self.version, 1 << 20).expect("decodable")
            {
                return p;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => panic!("no packet over WebSocket within {WAIT:?}"),
                Ok(None) => panic!("WebSocket closed"),
                Ok(Some(Err(e))) => panic!("WebSocket error: {e}"),
                Ok(Some(Ok(Message::Binary(b)))) => self.rbuf.extend_from_slice(&b),
                Ok(Some(Ok(Message::Close(f)))) => panic!("WebSocket closed by the broker: {f:?}"),
                Ok(Some(Ok(_))) => {} // ping/pong/text: not MQTT
            }
        }
    }
}

#[tokio::test]
async fn websocket_clients_go_through_the_authentication_chain() {
    use meshmq_shared::auth::password::{Algorithm, SaltPosition};
    use meshmq_shared::config::UserIdType;
    let b = common::start_broker(crate::authn::builtin(UserIdType::Username)).await;
    let sha = Algorithm::Sha256 {
        salt_position: SaltPosition::Suffix,
    };
    let user = common::unique("ws-user");
    crate::authn::add_user(&b, &user, "pw", &sha).await;
    let ws_addr = b.ws_addr().expect("WebSocket listener enabled");
    for (username, secret, want) in [
        (Some(user.as_str()), Some("pw"), ReasonCode::Success),
        (
            Some(user.as_str()),
            Some("bad"),
            ReasonCode::BadUserNameOrPassword,
        ),
        (None, None, ReasonCode::NotAuthorized),
    ] {
        let mut c = connect_packet(ProtocolVersion::V5, &common::unique("ws-authn"));
        c.username = username.map(str::to_owned);
        c.password = secret.map(|s| s.as_bytes().to_vec().into());
        let mut ws = WsClient::open(ws_addr).await;
        ws.version = ProtocolVersion::V5;
        ws.send(&Packet::Connect(Box::new(c))).await;
        match ws.recv().await {
            Packet::ConnAck(a) => assert_eq!(a.code, want, "{username:?} {secret:?}"),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn v5_6_0_websocket_client_talks_to_tcp_client() {
    let b = common::broker().await;
    let ws_addr = b.ws_addr().expect("WebSocket listener enabled");
    let mut tcp = v4::connect(b.mqtt_addr(), "tcp-side", |_| {}).await;
    tcp.subscribe("ws/up", v4::QoS::AtLeastOnce).await;

    let mut ws = WsClient::open(ws_addr).await;
    ws.send(&Packet::Connect(Box::new(connect_packet(V311, "ws-side"))))
        .await;
    match ws.recv().await {
        Packet::ConnAck(a) => assert_eq!(a.code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let sub = Subscribe {
        packet_id: 1,
        filters: vec![("ws/down".into(), sub_opts(QoS::AtLeastOnce))],
        properties: Default::default(),
    };
    ws.send(&Packet::Subscribe(sub)).await;
    match ws.recv().await {
        Packet::SubAck(a) => assert_eq!(a.reasons, vec![ReasonCode::GrantedQoS1]),
        other => panic!("expected SUBACK, got {other:?}"),
    }

    // WS → TCP, QoS 1.
    let mut p = publish_packet("ws/up", b"from-ws", QoS::AtLeastOnce, false);
    p.packet_id = 2;
    ws.send(&Packet::Publish(p)).await;
    match ws.recv().await {
        Packet::PubAck(a) => assert_eq!(a.packet_id, 2),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let got = tcp.recv_publish().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("ws/up", &b"from-ws"[..])
    );

    // A packet split over two frames, then two packets in one frame.
    let bytes = ws.encode(&Packet::Publish(publish_packet(
        "ws/up",
        b"split",
        QoS::AtMostOnce,
        false,
    )));
    let (a, c) = bytes.split_at(3);
    ws.send_frame(a.to_vec()).await;
    ws.send_frame(c.to_vec()).await;
    let mut two = ws.encode(&Packet::Publish(publish_packet(
        "ws/up",
        b"one",
        QoS::AtMostOnce,
        false,
    )));
    two.extend(ws.encode(&Packet::Publish(publish_packet(
        "ws/up",
        b"two",
        QoS::AtMostOnce,
        false,
    ))));
    ws.send_frame(two).await;
    for want in [&b"split"[..], b"one", b"two"] {
        assert_eq!(&tcp.recv_publish().await.payload[..], want);
    }

    // TCP → WS.
    tcp.publish("ws/down", v4::QoS::AtLeastOnce, false, "from-tcp")
        .await;
    match ws.recv().await {
        Packet::Publish(Publish {
            topic,
            payload,
            qos,
            ..
        }) => {
            assert_eq!(
                (topic.as_str(), &payload[..], qos),
                ("ws/down", &b"from-tcp"[..], QoS::AtLeastOnce)
            );
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[tokio::test]
async fn ws_limits_follow_max_packet_size_upwards() {
    // 2 MiB MQTT limit: a 1.5 MiB PUBLISH in one WebSocket message must pass (the old fixed
    // WebSocket limit of 1 MiB + 64 KiB closed the connection).
    let b = common::start_broker(|c| c.mqtt.max_packet_size = 2 * 1024 * 1024).await;
    let ws_addr = b.ws_addr().expect("WebSocket listener enabled");
    let topic = common::unique("ws/big");
    let mut sub = RawClient::connect(b.mqtt_addr(), ProtocolVersion::V5, "ws-big-sub").await;
    sub.subscribe(&topic, QoS::AtLeastOnce).await;
    let mut ws = WsClient::open(ws_addr).await;
    ws.send(&Packet::Connect(Box::new(connect_packet(V311, "ws-big"))))
        .await;
    assert!(matches!(ws.recv().await, Packet::ConnAck(a) if a.code == ReasonCode::Success));
    let payload = vec![0x5a_u8; 1536 * 1024];
    let mut p = publish_packet(&topic, &payload, QoS::AtLeastOnce, false);
    p.packet_id = 1;
    ws.send(&Packet::Publish(p)).await;
    match ws.recv().await {
        Packet::PubAck(a) => assert_eq!(a.packet_id, 1),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let got = sub.recv_publish().await;
    assert_eq!(got.payload.len(), payload.len());
}

/// Upgrades a raw TCP connection to a WebSocket on `/mqtt` (subprotocol `mqtt`) by hand, so
/// the test can then write frame bytes of its choosing.
async fn raw_ws(addr: SocketAddr) -> TcpStream {
    let mut tcp = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("tcp connect");
    let req = format!(
        "GET /mqtt HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("write upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut byte))
            .await
            .expect("upgrade answer in time")
            .expect("read upgrade answer");
        assert_eq!(n, 1, "closed during the upgrade: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

#[tokio::test]
async fn ws_frame_beyond_max_packet_size_closes_without_reading_its_payload() {
    // 8 KiB MQTT limit: a frame announcing 512 KiB (under the old fixed limit) is refused
    // from its header alone; the broker closes while the client has sent 16 bytes of it.
    let b = common::start_broker(|c| c.mqtt.max_packet_size = 8 * 1024).await;
    let mut tcp = raw_ws(b.ws_addr().expect("WebSocket listener enabled")).await;
    let len: u64 = 512 * 1024;
    let mut frame = vec![0x82, 0x80 | 127]; // FIN + binary; masked, 64-bit length
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]); // masking key
    frame.extend_from_slice(&[0u8; 16]); // the start of the payload, no more
    tcp.write_all(&frame).await.expect("write frame start");
    // Whatever the broker sends (at most a Close frame), then the end of the connection.
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Err(_) => panic!("connection still open {WAIT:?} after an oversized frame header"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
        }
    }
    // The listener keeps serving: a fitting packet still works on a new connection.
    let mut ws = WsClient::open(b.ws_addr().expect("WebSocket listener enabled")).await;
    ws.send(&Packet::Connect(Box::new(connect_packet(V311, "ws-after"))))
        .await;
    assert!(matches!(ws.recv().await, Packet::ConnAck(a) if a.code == ReasonCode::Success));
}

/// A WebSocket client that stops reading while it is sent a flood (small receive buffer)
/// holds its connection at most `listeners.send_timeout_ms`: then it is closed and its
/// session settled. Before, the WebSocket sink's flush waited for the client forever.
#[tokio::test]
async fn ws_client_that_stops_reading_is_closed_after_the_send_timeout() {
    let b = common::start_broker(|c| c.listeners.send_timeout_ms = 1_000).await;
    let ws_addr = b.ws_addr().expect("ws listener");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = tokio::time::timeout(WAIT, socket.connect(ws_addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut req = format!("ws://{ws_addr}/mqtt")
        .into_client_request()
        .expect("ws request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let (ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream))
        .await
        .expect("ws handshake");
    let mut ws = WsClient {
        ws,
        rbuf: BytesMut::new(),
        version: V311,
    };
    let topic = common::unique("ws-stuck");
    ws.send(&Packet::Connect(Box::new(connect_packet(V311, &topic))))
        .await;
    assert!(matches!(ws.recv().await, Packet::ConnAck(_)));
    ws.send(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(topic.clone(), sub_opts(QoS::AtMostOnce))],
        properties: Default::default(),
    }))
    .await;
    assert!(matches!(ws.recv().await, Packet::SubAck(_)));
    let mut publisher = RawClient::connect(b.mqtt_addr(), V311, &common::unique("ws-flood")).await;
    // Publish, paced, until the broker drops the stuck client (what is not dropped as a
    // slow consumer's QoS 0 is written until the kernel's buffers are full and a write
    // blocks); bounded in time and count.
    let payload = "x".repeat(64 * 1024);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut sent = 0;
    while b.connections() > 1 && std::time::Instant::now() < deadline && sent < 5_000 {
        publisher
            .publish(&topic, &payload, QoS::AtMostOnce, false)
            .await;
        sent += 1;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert_eq!(
        b.connections(),
        1,
        "a WebSocket client that stopped reading still holds its connection after {sent} messages"
    );
    drop(ws);
}

/// Connects over WebSocket at `path` with `headers` and returns the CONNACK's code.
async fn ws_connack(addr: SocketAddr, path: &str, headers: &[(&'static str, &str)]) -> ReasonCode {
    let mut ws = WsClient::open_with(addr, path, headers)
        .await
        .expect("upgraded");
    ws.version = ProtocolVersion::V5;
    let c = connect_packet(ProtocolVersion::V5, &common::unique("ws-fwd"));
    ws.send(&Packet::Connect(Box::new(c))).await;
    match ws.recv().await {
        Packet::ConnAck(a) => a.code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// `listeners.ws.default` with its path, an Origin allow-list and 127.0.0.1 (the tests'
/// client) as a trusted proxy when `trusted`.
fn edge_listener(trusted: bool) -> impl FnOnce(&mut meshmq_shared::config::Config) {
    use meshmq_shared::config::{ListenerConfig, WebsocketOptions};
    move |c| {
        let listener = ListenerConfig {
            proxy_protocol_trusted: if trusted {
                vec!["127.0.0.1".into()]
            } else {
                vec![]
            },
            websocket: WebsocketOptions {
                mqtt_path: "/edge".into(),
                check_origin_enable: true,
                check_origins: vec!["https://app.example.com".into()],
                ..WebsocketOptions::default()
            },
            ..ListenerConfig::default()
        };
        c.listeners.ws.insert("default".into(), listener);
    }
}

#[tokio::test]
async fn ws_listener_options_come_from_the_config_and_bans_see_the_forwarded_address() {
    let b = common::start_broker(edge_listener(true)).await;
    let addr = b.ws_addr().expect("ws listener");
    assert_eq!(
        WsClient::open_with(addr, "/mqtt", &[]).await.err(),
        Some(404)
    );
    let evil = [("Origin", "https://evil.example.net")];
    assert_eq!(
        WsClient::open_with(addr, "/edge", &evil).await.err(),
        Some(403)
    );
    let text = common::metrics_text(&b).await;
    let refused = common::metric_sum(
        &text,
        "meshmq_ws_upgrades_refused_total",
        &[("reason", "origin")],
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "counted: {refused:?}");

    crate::banned::ban(&b, "peerhost", "203.0.113.7", serde_json::Value::Null).await;
    let banned = [
        ("Origin", "https://app.example.com"),
        ("X-Forwarded-For", "203.0.113.7"),
    ];
    assert_eq!(ws_connack(addr, "/edge", &banned).await, ReasonCode::Banned);
    let other = [("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 127.0.0.1")];
    assert_eq!(
        ws_connack(addr, "/edge", &other).await,
        ReasonCode::Banned,
        "the first untrusted hop from the right"
    );
    let fine = [("X-Forwarded-For", "203.0.113.7, 198.51.100.1")];
    assert_eq!(ws_connack(addr, "/edge", &fine).await, ReasonCode::Success);
    assert_eq!(ws_connack(addr, "/edge", &[]).await, ReasonCode::Success);

    // Not a trusted proxy: the same header is ignored, the ban on that address does not
    // apply to 127.0.0.1. (One broker at a time: in rr-cluster mode clusters are serial.)
    b.shutdown().await;
    let u = common::start_broker(edge_listener(false)).await;
    crate::banned::ban(&u, "peerhost", "203.0.113.7", serde_json::Value::Null).await;
    let addr = u.ws_addr().expect("ws listener");
    assert_eq!(
        ws_connack(addr, "/edge", &banned).await,
        ReasonCode::Success
    );
    u.shutdown().await;
}
