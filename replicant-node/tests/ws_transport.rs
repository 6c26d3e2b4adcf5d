//! MQTT over WebSocket transport: the real `ws::serve_with` listener on 127.0.0.1:0 (and
//! `ws::serve_connection` on an in-memory stream) with an echo `on_conn`, driven by a
//! tokio-tungstenite client. The bytes are opaque here: the transport must carry a byte
//! stream whatever the frame boundaries. The upgrade options (path, subprotocols, origin,
//! forwarding headers from trusted proxies) are checked against what the client sees (the
//! status, the echoed subprotocol) and what `on_conn` is given (the client address).
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;

use meshmq_shared::config::WebsocketOptions;
use replicant_node::ws::{self, WsConfig, WsIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(10);

type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A running listener whose `on_conn` echoes every byte back and reports the peer address.
struct Echo {
    addr: SocketAddr,
    peers: mpsc::UnboundedReceiver<SocketAddr>,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

async fn echo(mut io: WsIo) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if io.write_all(&buf[..n]).await.is_err() || io.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The listener's settings: the default options, with `f` applied.
fn config(f: impl FnOnce(&mut WebsocketOptions)) -> WsConfig {
    let mut o = WebsocketOptions::default();
    f(&mut o);
    WsConfig::new(&o, &[], 1024 * 1024).unwrap()
}

async fn start(options: WsConfig) -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, peers) = mpsc::unbounded_channel();
    let on_conn = move |io: WsIo, peer: SocketAddr| {
        let _ = tx.send(peer);
        tokio::spawn(echo(io));
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(ws::serve_with(
        listener,
        on_conn,
        shutdown.clone(),
        Arc::new(options),
    ));
    Echo {
        addr,
        peers,
        shutdown,
        task,
    }
}

async fn connect(
    addr: SocketAddr,
    path: &str,
    protocols: Option<&str>,
) -> (Client, Option<String>) {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(p) = protocols {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
    }
    let (client, resp) = timeout(DEADLINE, tokio_tungstenite::connect_async(req))
        .await
        .unwrap()
        .unwrap();
    let selected = resp
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_string());
    (client, selected)
}

/// Reads binary frames until `n` bytes arrived.
async fn read_bytes(client: &mut Client, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        match timeout(DEADLINE, client.next()).await.unwrap() {
            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected binary data, got {other:?}"),
        }
    }
    got
}

/// A v3.1.1 PINGREQ, a PUBLISH (QoS 0, topic "a/b", payload "hello") and a DISCONNECT.
fn packets() -> (Vec<u8>, Vec<u8>) {
    let publish = vec![
        0x30, 0x0c, 0x00, 0x03, b'a', b'/', b'b', b'h', b'e', b'l', b'l', b'o', b'!', b'!',
    ];
    let ping_and_disconnect = vec![0xc0, 0x00, 0xe0, 0x00];
    (publish, ping_and_disconnect)
}

#[tokio::test]
async fn selects_mqtt_subprotocol_and_carries_split_and_coalesced_packets() {
    let mut echo = start(config(|_| {})).await;
    let (mut client, selected) = connect(echo.addr, "/mqtt", Some("mqtt")).await;
    assert_eq!(selected.as_deref(), Some("mqtt"));

    // The on_conn callback saw the client's real address.
    let peer = timeout(DEADLINE, echo.peers.recv()).await.unwrap().unwrap();
    assert_eq!(peer.ip(), echo.addr.ip());
    assert_ne!(peer.port(), echo.addr.port());

    // One packet split over two frames.
    let (publish, two) = packets();
    let (a, b) = publish.split_at(5);
    client.send(Message::binary(a.to_vec())).await.unwrap();
    client.send(Message::binary(b.to_vec())).await.unwrap();
    assert_eq!(read_bytes(&mut client, publish.len()).await, publish);

    // Two packets in one frame.
    client.send(Message::binary(two.clone())).await.unwrap();
    assert_eq!(read_bytes(&mut client, two.len()).await, two);

    // Pings are answered by the library, the stream keeps working.
    client
        .send(Message::Ping(vec![1, 2, 3].into()))
        .await
        .unwrap();
    client.send(Message::binary(publish.clone())).await.unwrap();
    assert_eq!(read_bytes(&mut client, publish.len()).await, publish);

    echo.shutdown.cancel();
    drop(client);
    timeout(DEADLINE, echo.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn answers_with_the_subprotocol_the_client_offered() {
    let echo = start(config(|_| {})).await;
    let (_c, selected) = connect(echo.addr, "/mqtt", Some("mqttv3.1")).await;
    assert_eq!(selected.as_deref(), Some("mqttv3.1"));
    let (_c, selected) = connect(echo.addr, "/mqtt", Some("mqttv3.1, mqtt")).await;
    assert_eq!(
        selected.as_deref(),
        Some("mqtt"),
        "our preference wins among offered ones"
    );
}

#[tokio::test]
async fn wrong_path_is_404() {
    let echo = start(config(|_| {})).await;
    let req = format!("ws://{}/not-mqtt", echo.addr)
        .into_client_request()
        .unwrap();
    let err = timeout(DEADLINE, tokio_tungstenite::connect_async(req))
        .await
        .unwrap()
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 404),
        other => panic!("expected an HTTP 404, got {other:?}"),
    }
}

/// Waits until the server closes: a Close frame, the end of the stream or an error.
async fn expect_closed(client: &mut Client) -> Option<u16> {
    loop {
        match timeout(DEADLINE, client.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(other)) => panic!("expected the connection to close, got {other:?}"),
            None | Some(Err(_)) => return None,
        }
    }
}

#[tokio::test]
async fn text_frame_closes_the_connection() {
    let echo = start(config(|_| {})).await;
    let (mut client, _) = connect(echo.addr, "/mqtt", Some("mqtt")).await;
    client.send(Message::text("CONNECT please")).await.unwrap();
    let code = expect_closed(&mut client).await;
    assert_eq!(code, Some(1003), "closed with 'unsupported data'");
}

#[tokio::test]
async fn message_over_the_size_limit_closes_the_connection() {
    let options = config(|_| {}).with_max_sizes(1024, 1024);
    let echo = start(options).await;
    let (mut client, _) = connect(echo.addr, "/mqtt", Some("mqtt")).await;
    let _ = client.send(Message::binary(vec![0u8; 4096])).await;
    expect_closed(&mut client).await;
}

#[tokio::test]
async fn silent_client_is_dropped_after_the_handshake_timeout() {
    let options = config(|_| {}).with_handshake_timeout(Duration::from_millis(200));
    let echo = start(options).await;
    let mut tcp = TcpStream::connect(echo.addr).await.unwrap();
    // Half a request, then silence.
    tcp.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = timeout(DEADLINE, tcp.read(&mut buf))
        .await
        .expect("server should close the connection");
    assert!(matches!(n, Ok(0) | Err(_)), "expected EOF, got {n:?}");
}

#[tokio::test]
async fn upgraded_connection_outlives_the_handshake_timeout() {
    let options = config(|_| {}).with_handshake_timeout(Duration::from_millis(100));
    let echo = start(options).await;
    let (mut client, _) = connect(echo.addr, "/mqtt", Some("mqtt")).await;
    // Exchange until well past the handshake deadline, waiting on a timer, not a sleep:
    // each round trip must succeed.
    let until = tokio::time::Instant::now() + Duration::from_millis(400);
    while tokio::time::Instant::now() < until {
        client
            .send(Message::binary(vec![0xc0, 0x00]))
            .await
            .unwrap();
        assert_eq!(read_bytes(&mut client, 2).await, vec![0xc0, 0x00]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `serve_connection` on a stream that is not a TCP socket (as a TLS stream is): the
/// upgrade works, and the call returns once the connection is handed off, so nothing of
/// the HTTP connection outlives the upgrade; the WebSocket keeps working after it.
#[tokio::test]
async fn serve_connection_returns_at_the_hand_off_on_any_stream() {
    let (server, client) = tokio::io::duplex(64 * 1024);
    let peer: SocketAddr = "192.0.2.9:4711".parse().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let served = tokio::spawn(ws::serve_connection(
        server,
        peer,
        Arc::new(config(|_| {})),
        move |io: WsIo, addr: SocketAddr| {
            assert_eq!(io.protocol(), Some("mqtt"));
            let _ = tx.send(addr);
            tokio::spawn(echo(io));
        },
    ));
    let mut req = "ws://meshmq.test/mqtt".into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let (mut ws, resp) = timeout(DEADLINE, tokio_tungstenite::client_async(req, client))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(timeout(DEADLINE, rx.recv()).await.unwrap(), Some(peer));
    timeout(DEADLINE, served)
        .await
        .expect("serve_connection returns after the hand-off")
        .unwrap();
    ws.send(Message::binary(vec![0xc0, 0x00])).await.unwrap();
    let got = match timeout(DEADLINE, ws.next()).await.unwrap() {
        Some(Ok(Message::Binary(b))) => b.to_vec(),
        other => panic!("expected the echo, got {other:?}"),
    };
    assert_eq!(got, vec![0xc0, 0x00]);
}

/// A request head beyond the limit is answered 431 and closed, not buffered.
#[tokio::test]
async fn oversized_request_head_is_refused() {
    let echo = start(config(|_| {})).await;
    let mut tcp = TcpStream::connect(echo.addr).await.unwrap();
    let filler = "a".repeat(ws::MAX_REQUEST_HEAD);
    let req = format!("GET /mqtt HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n\r\n");
    // The server may close before it read everything: ignore a write error.
    let _ = timeout(DEADLINE, tcp.write_all(req.as_bytes()))
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = timeout(DEADLINE, tcp.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

/// A listener with `trusted` proxies and the options `f` sets.
async fn start_with(trusted: &[&str], f: impl FnOnce(&mut WebsocketOptions)) -> Echo {
    let mut o = WebsocketOptions::default();
    f(&mut o);
    let trusted: Vec<String> = trusted.iter().map(|t| t.to_string()).collect();
    start(WsConfig::new(&o, &trusted, 1024 * 1024).unwrap()).await
}

/// Upgrades with extra request headers: the echoed subprotocol, or the refusal's status.
async fn try_upgrade(
    addr: SocketAddr,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<(Client, Option<String>), u16> {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut()
            .append(*k, HeaderValue::from_str(v).unwrap());
    }
    match timeout(DEADLINE, tokio_tungstenite::connect_async(req))
        .await
        .unwrap()
    {
        Ok((client, resp)) => {
            let selected = resp
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_string());
            Ok((client, selected))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(other) => panic!("expected an upgrade or an HTTP refusal, got {other:?}"),
    }
}

const MQTT: (&str, &str) = ("Sec-WebSocket-Protocol", "mqtt");

#[tokio::test]
async fn the_path_is_configurable_and_no_other_path_upgrades() {
    let echo = start_with(&[], |o| o.mqtt_path = "/custom/mqtt".into()).await;
    let (_c, selected) = try_upgrade(echo.addr, "/custom/mqtt", &[MQTT])
        .await
        .unwrap();
    assert_eq!(selected.as_deref(), Some("mqtt"));
    let (_c, _) = try_upgrade(echo.addr, "/custom/mqtt?x=1", &[MQTT])
        .await
        .unwrap();
    for other in ["/mqtt", "/custom/mqtt/", "/custom", "/CUSTOM/MQTT"] {
        let status = try_upgrade(echo.addr, other, &[MQTT]).await.err();
        assert_eq!(status, Some(404), "{other}");
    }
}

#[tokio::test]
async fn subprotocol_required_or_optional() {
    // fail_if_no_subprotocol = true (the default): none offered, or none we support: 400.
    let strict = start(config(|_| {})).await;
    assert_eq!(
        try_upgrade(strict.addr, "/mqtt", &[]).await.err(),
        Some(400)
    );
    let wamp = [("Sec-WebSocket-Protocol", "wamp, MQTT")];
    assert_eq!(
        try_upgrade(strict.addr, "/mqtt", &wamp).await.err(),
        Some(400)
    );
    // false: accepted without a Sec-WebSocket-Protocol answer, and the stream works.
    let lax = start(config(|o| o.fail_if_no_subprotocol = false)).await;
    let (mut c, selected) = try_upgrade(lax.addr, "/mqtt", &[]).await.unwrap();
    assert_eq!(selected, None, "no subprotocol offered: none echoed");
    c.send(Message::binary(vec![0xc0, 0x00])).await.unwrap();
    assert_eq!(read_bytes(&mut c, 2).await, vec![0xc0, 0x00]);
    // Offered but unsupported: the server answers 101 without a subprotocol (which this
    // client, as RFC 6455 says, then refuses on its side).
    let mut req = format!("ws://{}/mqtt", lax.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("wamp"));
    let r = timeout(DEADLINE, tokio_tungstenite::connect_async(req))
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            Err(tokio_tungstenite::tungstenite::Error::Protocol(
                tokio_tungstenite::tungstenite::error::ProtocolError::SecWebSocketSubProtocolError(
                    tokio_tungstenite::tungstenite::error::SubProtocolError::NoSubProtocol
                )
            ))
        ),
        "{r:?}"
    );
    // Only the configured subprotocols, in the configured order.
    let only31 = start(config(|o| {
        o.supported_subprotocols = vec!["mqttv3.1".into()]
    }))
    .await;
    let both = [("Sec-WebSocket-Protocol", "mqtt, mqttv3.1")];
    let (_c, selected) = try_upgrade(only31.addr, "/mqtt", &both).await.unwrap();
    assert_eq!(selected.as_deref(), Some("mqttv3.1"));
    assert_eq!(
        try_upgrade(only31.addr, "/mqtt", &[MQTT]).await.err(),
        Some(400)
    );
}

#[tokio::test]
async fn origin_allowed_refused_and_absent() {
    let origins = |absence: bool| {
        move |o: &mut WebsocketOptions| {
            o.check_origin_enable = true;
            o.allow_origin_absence = absence;
            o.check_origins = vec!["https://app.example.com".into()];
        }
    };
    let strict = start_with(&[], origins(false)).await;
    for ok in ["https://app.example.com", "HTTPS://App.Example.Com"] {
        let r = try_upgrade(strict.addr, "/mqtt", &[MQTT, ("Origin", ok)]).await;
        assert!(r.is_ok(), "{ok}: {:?}", r.err());
    }
    for bad in [
        "https://evil.example.net",
        "https://app.example.com/",
        "https://app.example.com.evil.net",
        "http://app.example.com",
        "null",
    ] {
        let r = try_upgrade(strict.addr, "/mqtt", &[MQTT, ("Origin", bad)]).await;
        assert_eq!(r.err(), Some(403), "{bad}");
    }
    assert_eq!(
        try_upgrade(strict.addr, "/mqtt", &[MQTT]).await.err(),
        Some(403),
        "absent"
    );
    let two = [
        MQTT,
        ("Origin", "https://app.example.com"),
        ("Origin", "https://evil.example.net"),
    ];
    assert_eq!(
        try_upgrade(strict.addr, "/mqtt", &two).await.err(),
        Some(403),
        "two origins"
    );
    let lax = start_with(&[], origins(true)).await;
    assert!(
        try_upgrade(lax.addr, "/mqtt", &[MQTT]).await.is_ok(),
        "absent allowed"
    );
    let r = try_upgrade(
        lax.addr,
        "/mqtt",
        &[MQTT, ("Origin", "https://evil.example.net")],
    )
    .await;
    assert_eq!(
        r.err(),
        Some(403),
        "a wrong origin is refused even when absence is allowed"
    );
    // Check off (the default): any origin.
    let off = start(config(|_| {})).await;
    let r = try_upgrade(
        off.addr,
        "/mqtt",
        &[MQTT, ("Origin", "https://evil.example.net")],
    )
    .await;
    assert!(r.is_ok());
}

/// The client address `on_conn` gets for one upgrade with `headers`.
async fn peer_seen(echo: &mut Echo, headers: &[(&'static str, &str)]) -> SocketAddr {
    let (_c, _) = try_upgrade(echo.addr, "/mqtt", headers).await.unwrap();
    timeout(DEADLINE, echo.peers.recv()).await.unwrap().unwrap()
}

#[tokio::test]
async fn forwarded_address_only_from_a_trusted_proxy() {
    let xff = [
        MQTT,
        ("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 10.1.2.3"),
        ("X-Forwarded-Port", "4711"),
    ];
    // 127.0.0.1 (the test client) and 10.0.0.0/8 are proxies: the first untrusted hop from
    // the right is the client; the spoofable leftmost entry is not taken.
    let mut trusted = start_with(&["127.0.0.1", "10.0.0.0/8"], |_| {}).await;
    let seen = peer_seen(&mut trusted, &xff).await;
    assert_eq!(seen, "203.0.113.7:4711".parse().unwrap());
    // Without the port header the connection's own port stays.
    let seen = peer_seen(&mut trusted, &[MQTT, ("X-Forwarded-For", "2001:db8::7")]).await;
    assert_eq!(
        seen.ip(),
        "2001:db8::7".parse::<std::net::IpAddr>().unwrap()
    );
    assert_ne!(seen.port(), 0);
    // Malformed from a trusted proxy: the proxy's own address, but never a loopback one
    // (a client spoiling the header of a proxy on this host must not become local).
    let seen = peer_seen(&mut trusted, &[MQTT, ("X-Forwarded-For", "unknown")]).await;
    assert!(trusted.addr.ip().is_loopback());
    assert!(seen.ip().is_unspecified(), "{seen}");
    // No header: the peer.
    let seen = peer_seen(&mut trusted, &[MQTT]).await;
    assert_eq!(seen.ip(), trusted.addr.ip());
    // From an untrusted peer the headers are ignored.
    let mut untrusted = start_with(&["10.0.0.0/8"], |_| {}).await;
    let seen = peer_seen(&mut untrusted, &xff).await;
    assert_eq!(seen.ip(), untrusted.addr.ip());
    assert_ne!(seen.port(), 4711);
    // Other header names when configured; the standard ones are then ignored.
    let mut named = start_with(&["127.0.0.1"], |o| {
        o.proxy_address_header = "X-Real-IP".into();
        o.proxy_port_header = "X-Real-Port".into();
    })
    .await;
    let headers = [
        MQTT,
        ("X-Real-IP", "192.0.2.44"),
        ("X-Real-Port", "99"),
        xff[1],
    ];
    assert_eq!(
        peer_seen(&mut named, &headers).await,
        "192.0.2.44:99".parse().unwrap()
    );
}
