//! MQTT over WebSocket on its own listener.
//!
//! Owns the HTTP side of the transport: the `/mqtt` route, the upgrade with subprotocol
//! selection (`mqtt`, or `mqttv3.1` for clients that offer only that), frame and message size
//! limits, and the handshake deadline ([`handshake`]). An upgraded connection is handed to
//! the caller's `on_conn` as a [`WsIo`] byte stream ([`io`]); from there it is an ordinary
//! MQTT connection. It must never parse MQTT or hold per-client state after the hand-off.

mod handshake;
mod io;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use handshake::{HandshakeListener, Peer};
pub use io::WsIo;

/// The only path that upgrades.
pub const PATH: &str = "/mqtt";

/// Subprotocols we accept, in order of preference: the first one the client also offers is
/// echoed in `Sec-WebSocket-Protocol`. `mqtt` is MQTT 3.1.1 and 5.0; `mqttv3.1` is what
/// MQTT 3.1 clients offer.
pub const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Limits of the WebSocket listener.
#[derive(Debug, Clone, Copy)]
pub struct WsOptions {
    /// Time from TCP accept to a completed upgrade; slower connections are dropped.
    pub handshake_timeout: Duration,
    /// Largest WebSocket message (all fragments) accepted.
    pub max_message_size: usize,
    /// Largest single WebSocket frame accepted.
    pub max_frame_size: usize,
}

impl Default for WsOptions {
    /// 10 s handshake; 1 MiB (the default MQTT packet limit) plus 64 KiB headroom for a
    /// frame that also carries the start of the next packet.
    fn default() -> Self {
        let size = 1024 * 1024 + 64 * 1024;
        WsOptions {
            handshake_timeout: Duration::from_secs(10),
            max_message_size: size,
            max_frame_size: size,
        }
    }
}

/// State shared by the upgrade handler.
struct Shared<F> {
    /// Called once per upgraded connection.
    on_conn: F,
    /// Size limits applied to every upgrade.
    options: WsOptions,
}

/// Serves MQTT over WebSocket on `listener` with [`WsOptions::default`] until `shutdown`
/// is cancelled.
pub async fn serve(
    listener: TcpListener,
    on_conn: impl Fn(WsIo, SocketAddr) + Clone + Send + Sync + 'static,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, on_conn, shutdown, WsOptions::default()).await
}

/// Like [`serve`], with explicit limits.
pub async fn serve_with(
    listener: TcpListener,
    on_conn: impl Fn(WsIo, SocketAddr) + Clone + Send + Sync + 'static,
    shutdown: CancellationToken,
    options: WsOptions,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared { on_conn, options });
    let app = Router::new().route(PATH, get(upgrade)).with_state(shared);
    let listener = HandshakeListener::new(listener, options.handshake_timeout);
    axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// `GET /mqtt`: upgrades and hands the connection to `on_conn`. Requests that are not
/// WebSocket upgrades get axum's rejection (400/426).
async fn upgrade<F>(
    State(shared): State<Arc<Shared<F>>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    ws: WebSocketUpgrade,
) -> Response
where
    F: Fn(WsIo, SocketAddr) + Clone + Send + Sync + 'static,
{
    let o = shared.options;
    ws.protocols(SUBPROTOCOLS)
        .max_message_size(o.max_message_size)
        .max_frame_size(o.max_frame_size)
        .on_failed_upgrade(|e| debug!(error = %e, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            peer.upgraded();
            (shared.on_conn)(WsIo::new(socket), peer.addr);
        })
}
