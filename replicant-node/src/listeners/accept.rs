//! The accept loop of one listener: `max_conn_rate` (wait for a token before accepting, so a
//! storm queues in the kernel), then the listener's `max_connections` and the node's
//! `listeners.max_connections` (a connection over either is closed at once and counted in
//! `meshmq_connections_refused_total{reason}`), then the connection: straight to
//! `crate::connection::spawn` for plain TCP, through [`super::transport`] (its own boxed
//! task) for everything else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshmq_shared::config::ListenerKind;
use meshmq_shared::metrics as m;
use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

use super::rate::TokenBucket;
use super::{ConnMeta, Listener};
use crate::connection;
use crate::ctx::Ctx;

/// Accepts on `socket` for `listener` until shutdown; transient accept errors (out of file
/// descriptors) back off up to a second instead of spinning.
pub async fn run(ctx: Arc<Ctx>, listener: Arc<Listener>, socket: TcpListener) {
    let mut rate = listener
        .spec
        .config
        .max_conn_rate
        .map(|r| TokenBucket::new(r, tokio::time::Instant::now()));
    let mut backoff = Duration::from_millis(5);
    loop {
        if let Some(bucket) = rate.as_mut() {
            tokio::select! {
                _ = ctx.admission.shutdown.cancelled() => return,
                _ = bucket.take() => {}
            }
        }
        let accepted: std::io::Result<(TcpStream, SocketAddr)> = tokio::select! {
            _ = ctx.admission.shutdown.cancelled() => return,
            r = socket.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                admit(&ctx, &listener, stream, peer);
            }
            Err(e) => {
                warn!(listener = %listener.id, error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Admits one accepted socket under the caps, or closes it.
fn admit(ctx: &Arc<Ctx>, listener: &Arc<Listener>, stream: TcpStream, peer: SocketAddr) {
    let meta = match ConnMeta::admit(listener, &ctx.admission.conn_limit) {
        Ok(meta) => meta,
        Err(reason) => {
            metrics::counter!(m::CONNECTIONS_REFUSED_TOTAL, "reason" => reason).increment(1);
            return;
        }
    };
    metrics::counter!(m::CONNECTIONS_ACCEPTED_TOTAL).increment(1);
    let _ = stream.set_nodelay(true);
    if listener.spec.kind == ListenerKind::Tcp && !listener.spec.config.proxy_protocol {
        connection::spawn(ctx.clone(), stream, peer, meta);
        return;
    }
    // Boxed: the PROXY, TLS and WebSocket steps live in their own task until the hand-off.
    let steps = super::transport::serve(ctx.clone(), listener.clone(), stream, peer, meta);
    tokio::spawn(Box::pin(steps));
}
