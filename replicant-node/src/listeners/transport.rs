//! The steps between an accepted socket and an MQTT connection, in order: the PROXY header
//! (listeners with `proxy_protocol`), the TLS handshake (`ssl`, `wss`), the WebSocket
//! upgrade (`ws`, `wss`); then `crate::connection::spawn`. Each step has its own deadline
//! and closes the socket on failure. The client address a PROXY header names replaces the
//! socket's peer from then on: the TLS and WebSocket steps, and the connection, see only it.
//!
//! Runs in a task of its own that ends at the hand-off, so the connection's task never
//! carries these steps' state. A plain TCP listener without PROXY protocol does not come
//! here ([`super::accept`] spawns its connections directly).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use meshmq_shared::config::ListenerKind;
use tokio::net::TcpStream;
use tracing::debug;

use super::prefixed::Socket;
use super::proxy_read::{count, read_header};
use super::{ConnMeta, Listener};
use crate::connection;
use crate::ctx::Ctx;

/// Takes `stream` from `peer` through the listener's steps and starts its connection.
pub async fn serve(
    ctx: Arc<Ctx>,
    listener: Arc<Listener>,
    stream: TcpStream,
    peer: SocketAddr,
    mut meta: ConnMeta,
) {
    let (socket, peer) = if listener.spec.config.proxy_protocol {
        if !listener.trusts(peer.ip()) {
            // A header from anyone could claim any address: only the configured balancers
            // may connect to a PROXY protocol listener.
            count("untrusted");
            debug!(listener = %listener.id, %peer, "not a trusted PROXY protocol source");
            return;
        }
        let timeout =
            std::time::Duration::from_millis(listener.spec.config.proxy_protocol_timeout_ms);
        match read_header(stream, timeout).await {
            Ok((socket, source)) => {
                let client = source.map_or(peer, canonical);
                debug!(listener = %listener.id, via = %peer, %client, "PROXY protocol header");
                (socket, client)
            }
            Err(e) => {
                debug!(listener = %listener.id, %peer, error = %e, "PROXY protocol header refused");
                return;
            }
        }
    } else {
        (Socket::new(stream, Bytes::new()), peer)
    };
    match listener.spec.kind {
        ListenerKind::Tcp => connection::spawn(ctx, socket, peer, meta),
        ListenerKind::Ssl => {
            let Some(tls) = listener.tls.as_ref() else {
                return;
            };
            let Some((stream, cert)) = super::tls::handshake(tls, &listener.id, socket, peer).await
            else {
                return;
            };
            meta.cert = cert;
            connection::spawn(ctx, stream, peer, meta);
        }
        ListenerKind::Ws => {
            let Some(ws) = listener.ws.clone() else {
                return;
            };
            crate::ws::serve_connection(socket, peer, ws, move |io, client| {
                connection::spawn(ctx, io, client, meta);
            })
            .await;
        }
        ListenerKind::Wss => {
            let (Some(tls), Some(ws)) = (listener.tls.as_ref(), listener.ws.clone()) else {
                return;
            };
            let Some((stream, cert)) = super::tls::handshake(tls, &listener.id, socket, peer).await
            else {
                return;
            };
            meta.cert = cert;
            crate::ws::serve_connection(stream, peer, ws, move |io, client| {
                connection::spawn(ctx, io, client, meta);
            })
            .await;
        }
    }
}

/// An IPv4-mapped IPv6 address as IPv4 (bans and rules match peers in IPv4 form).
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}
