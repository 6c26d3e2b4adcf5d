//! MQTT over WebSocket.
//!
//! Owns the HTTP side of the transport for one accepted connection
//! ([`serve_connection`]): the upgrade at the listener's `mqtt_path`, the
//! subprotocol, the `Origin` allow-list (`checks`), the client address behind a trusted
//! proxy (`forwarded`), frame and message limits from `mqtt.max_packet_size` and the
//! handshake deadline, all configured per listener by [`WsConfig`] (`config`). An
//! upgraded connection is handed to the caller's `on_conn` as a [`WsIo`] byte stream
//! (`io`); from there it is an ordinary MQTT connection. [`serve_with`] is a plain accept
//! loop on top, for a listener that is only WebSocket. It must never parse MQTT or hold
//! per-client state after the hand-off.

mod checks;
mod config;
mod forwarded;
mod io;
mod serve;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use config::{
    FRAME_HEADROOM, HANDSHAKE_TIMEOUT, MAX_HEADERS, MAX_REQUEST_HEAD, READ_BUFFER, WsConfig,
};
pub use io::WsIo;
pub use serve::serve_connection;

/// Serves MQTT over WebSocket on `listener` until `shutdown` is cancelled: every accepted
/// connection gets its own task running [`serve_connection`]. Accept errors (out of file
/// descriptors) back off up to a second; handshakes in progress end by their own deadline.
pub async fn serve_with(
    listener: TcpListener,
    on_conn: impl Fn(WsIo, SocketAddr) + Clone + Send + Sync + 'static,
    shutdown: CancellationToken,
    cfg: Arc<WsConfig>,
) -> std::io::Result<()> {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let _ = stream.set_nodelay(true);
                let on_conn = on_conn.clone();
                tokio::spawn(serve_connection(stream, peer, cfg.clone(), on_conn));
            }
            Err(e) => {
                warn!(error = %e, "WebSocket accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
