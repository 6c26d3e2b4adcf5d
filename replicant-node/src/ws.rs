//! MQTT over WebSocket on its own listener.
//!
//! Owns the HTTP side of the transport: the `/mqtt` route, the upgrade with subprotocol
//! selection (`mqtt`, or `mqttv3.1` for clients that offer only that), frame and message size
//! limits (derived from `mqtt.max_packet_size`, [`WsOptions::for_max_packet_size`]), and the
//! handshake deadline ([`handshake`]). An upgraded connection is handed to
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

/// Room above the MQTT packet limit in a WebSocket frame or message: a client may put the
/// end of one packet and the start of the next in one frame. What passes the WebSocket
/// limit still meets the MQTT decoder's `mqtt.max_packet_size` (DISCONNECT 0x95).
pub const FRAME_HEADROOM: usize = 64 * 1024;

/// Limits of the WebSocket listener.
#[derive(Debug, Clone, Copy)]
pub struct WsOptions {
    /// Time from TCP accept to a completed upgrade; slower connections are dropped.
    pub handshake_timeout: Duration,
    /// Largest WebSocket message (all fragments) accepted. A message announced or grown
    /// past it closes the connection; the frame's payload is not read into memory first.
    pub max_message_size: usize,
    /// Largest single WebSocket frame accepted (checked against the frame header's length
    /// before its payload is read).
    pub max_frame_size: usize,
}

impl WsOptions {
    /// Limits that follow the MQTT packet limit (`mqtt.max_packet_size`): a frame and a
    /// message may each carry one largest packet plus [`FRAME_HEADROOM`]; 10 s handshake.
    pub fn for_max_packet_size(max_packet_size: u32) -> Self {
        let size = usize::try_from(max_packet_size)
            .unwrap_or(usize::MAX)
            .saturating_add(FRAME_HEADROOM);
        WsOptions {
            handshake_timeout: Duration::from_secs(10),
            max_message_size: size,
            max_frame_size: size,
        }
    }
}

impl Default for WsOptions {
    /// The limits for the default MQTT packet limit (1 MiB); see
    /// [`WsOptions::for_max_packet_size`].
    fn default() -> Self {
        WsOptions::for_max_packet_size(1024 * 1024)
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
