//! MQTT over WebSocket transport: the real `ws::serve` listener on 127.0.0.1:0 with an echo
//! `on_conn`, driven by a tokio-tungstenite client. The bytes are opaque here: the transport
//! must carry a byte stream whatever the frame boundaries.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use replicant_node::ws::{self, WsIo, WsOptions};
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

async fn start(options: WsOptions) -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, peers) = mpsc::unbounded_channel();
    let on_conn = move |io: WsIo, peer: SocketAddr| {
        let _ = tx.send(peer);
        tokio::spawn(echo(io));
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(ws::serve_with(listener, on_conn, shutdown.clone(), options));
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
    let mut echo = start(WsOptions::default()).await;
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
    let echo = start(WsOptions::default()).await;
    let (_c, selected) = connect(echo.addr, "/mqtt", Some("mqttv3.1")).await;
    assert_eq!(selected.as_deref(), Some("mqttv3.1"));
    let (_c, selected) = connect(echo.addr, "/mqtt", Some("mqttv3.1, mqtt")).await;
    assert_eq!(
        selected.as_deref(),
        Some("mqtt"),
        "our preference wins among offered ones"
    );
    let (mut c, selected) = connect(echo.addr, "/mqtt", None).await;
    assert_eq!(selected, None, "no subprotocol offered: none echoed");
    c.send(Message::binary(vec![0xc0, 0x00])).await.unwrap();
    assert_eq!(read_bytes(&mut c, 2).await, vec![0xc0, 0x00]);
}

#[tokio::test]
async fn wrong_path_is_404() {
    let echo = start(WsOptions::default()).await;
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
    let echo = start(WsOptions::default()).await;
    let (mut client, _) = connect(echo.addr, "/mqtt", Some("mqtt")).await;
    client.send(Message::text("CONNECT please")).await.unwrap();
    let code = expect_closed(&mut client).await;
    assert_eq!(code, Some(1003), "closed with 'unsupported data'");
}

#[tokio::test]
async fn message_over_the_size_limit_closes_the_connection() {
    let options = WsOptions {
        max_message_size: 1024,
        max_frame_size: 1024,
        ..WsOptions::default()
    };
    let echo = start(options).await;
    let (mut client, _) = connect(echo.addr, "/mqtt", Some("mqtt")).await;
    let _ = client.send(Message::binary(vec![0u8; 4096])).await;
    expect_closed(&mut client).await;
}

#[tokio::test]
async fn silent_client_is_dropped_after_the_handshake_timeout() {
    let options = WsOptions {
        handshake_timeout: Duration::from_millis(200),
        ..WsOptions::default()
    };
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
    let options = WsOptions {
        handshake_timeout: Duration::from_millis(100),
        ..WsOptions::default()
    };
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
