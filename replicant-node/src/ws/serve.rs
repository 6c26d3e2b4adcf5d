//! [`serve_connection`]: HTTP/1.1 on one accepted stream (plain or TLS) up to the WebSocket
//! upgrade, then the hand-off of the upgraded connection.
//!
//! Owns the upgrade request's handling, in this order: the path (404), the `Origin` check
//! (403), the WebSocket handshake headers (axum's rejection: 400/405/426), the subprotocol
//! (400 when required and none matches), the client address behind a trusted proxy; and the
//! bounds on all of it: one request per connection (every refusal says
//! `Connection: close`), a request head of at
//! most [`MAX_REQUEST_HEAD`] bytes and [`MAX_HEADERS`] headers (431), and the whole
//! handshake within the handshake timeout. When it returns, the HTTP connection (its
//! buffers, the service) is gone; an upgraded connection lives on only as the [`WsIo`]
//! handed to `on_conn`. It must never read MQTT.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::http::{Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use meshmq_shared::metrics as m;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tracing::debug;

use super::checks::{choose_subprotocol, origin_allowed};
use super::config::{MAX_HEADERS, MAX_REQUEST_HEAD, READ_BUFFER, WsConfig};
use super::forwarded::{Source, client_addr};
use super::io::WsIo;

/// An upgraded WebSocket and the client address it was accepted for.
type Upgraded = (WebSocket, SocketAddr);

/// What the request handler of one connection needs.
struct ConnState {
    /// The listener's settings.
    cfg: Arc<WsConfig>,
    /// The TCP peer.
    peer: SocketAddr,
    /// Where the upgraded socket goes; taken by the one request that upgrades.
    upgraded: Mutex<Option<oneshot::Sender<Upgraded>>>,
}

/// Serves HTTP/1.1 on `io` until the upgrade at the listener's path, then calls
/// `on_conn(ws_io, client_addr)`, where `client_addr` is `peer` or, when `peer` is a trusted
/// proxy, the address its forwarding headers name. Any other request is answered and the
/// connection closed; nothing is called. The whole exchange is bounded by the handshake
/// timeout; returns when the connection was handed off or dropped.
pub async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    cfg: Arc<WsConfig>,
    on_conn: impl FnOnce(WsIo, SocketAddr) + Send + 'static,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = cfg.handshake_timeout;
    let (tx, rx) = oneshot::channel();
    let state = Arc::new(ConnState {
        cfg,
        peer,
        upgraded: Mutex::new(Some(tx)),
    });
    let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
    let conn = http1::Builder::new()
        .max_buf_size(MAX_REQUEST_HEAD)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let handshake = async move {
        if let Err(e) = conn.await {
            if e.is_parse() || e.is_parse_too_large() {
                refused("bad_request");
            }
            debug!(%peer, error = %e, "WebSocket handshake failed");
            return None;
        }
        // The connection is gone; the socket comes once axum's task wrapped it.
        rx.await.ok()
    };
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Some((socket, addr))) => on_conn(WsIo::new(socket), addr),
        Ok(None) => {}
        Err(_) => {
            refused("timeout");
            debug!(%peer, ?timeout, "WebSocket handshake timed out");
        }
    }
}

/// Counts a refused or failed upgrade.
fn refused(reason: &'static str) {
    metrics::counter!(m::WS_UPGRADES_REFUSED_TOTAL, "reason" => reason).increment(1);
}

/// A refusal: `status` with a one-line reason, the connection closes after it.
fn refuse(
    state: &ConnState,
    status: StatusCode,
    reason: &'static str,
    text: &'static str,
) -> Response<Body> {
    refused(reason);
    debug!(peer = %state.peer, %status, reason, "WebSocket upgrade refused");
    let mut resp = (status, text).into_response();
    resp.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    resp
}

/// The one request of a connection.
async fn handle(
    req: Request<Incoming>,
    state: Arc<ConnState>,
) -> Result<Response<Body>, Infallible> {
    let cfg = &state.cfg;
    if req.uri().path() != cfg.path {
        return Ok(refuse(&state, StatusCode::NOT_FOUND, "path", "not found\n"));
    }
    if !origin_allowed(cfg, req.headers()) {
        return Ok(refuse(
            &state,
            StatusCode::FORBIDDEN,
            "origin",
            "origin not allowed\n",
        ));
    }
    let (mut parts, _body) = req.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws,
        Err(rejection) => {
            refused("not_websocket");
            debug!(peer = %state.peer, %rejection, "not a WebSocket upgrade");
            let mut resp = rejection.into_response();
            resp.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return Ok(resp);
        }
    };
    let protocol = choose_subprotocol(cfg, ws.requested_protocols());
    if protocol.is_none() && cfg.fail_if_no_subprotocol {
        return Ok(refuse(
            &state,
            StatusCode::BAD_REQUEST,
            "subprotocol",
            "no supported WebSocket subprotocol offered\n",
        ));
    }
    let (addr, source) = client_addr(cfg, state.peer, &parts.headers);
    if let Source::Malformed(header) = source {
        metrics::counter!(m::WS_FORWARDED_INVALID_TOTAL, "header" => header).increment(1);
        debug!(peer = %state.peer, header, "malformed forwarding header from a trusted proxy");
    }
    let Some(tx) = state.upgraded.lock().take() else {
        // Unreachable: every answer but the upgrade closes the connection.
        return Ok(refuse(
            &state,
            StatusCode::BAD_REQUEST,
            "bad_request",
            "one upgrade per connection\n",
        ));
    };
    let mut ws = ws
        .read_buffer_size(READ_BUFFER)
        // Every frame goes to the socket at once (WsIo flushes after each write anyway);
        // nothing accumulates in the library's write buffer.
        .write_buffer_size(0)
        .max_message_size(cfg.max_message_size)
        .max_frame_size(cfg.max_frame_size);
    if let Some(p) = protocol {
        ws.set_selected_protocol(p);
    }
    let peer = state.peer;
    Ok(ws
        .on_failed_upgrade(move |e| debug!(%peer, error = %e, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            let _ = tx.send((socket, addr));
        }))
}
