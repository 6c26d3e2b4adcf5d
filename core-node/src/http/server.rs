//! The admin HTTP server: an accept loop, one task per connection, the TLS handshake with a
//! deadline when the listener serves HTTPS, then HTTP/1.1 (hyper) over the stream. Plain HTTP
//! and HTTPS share the same bounds, so a client that opens connections and sends nothing
//! cannot hold the core's file descriptors on either.
//!
//! The rustls configuration (`meshmq_shared::quic::tls::https_server_crypto`) makes the
//! client certificate optional and verifies it against the cluster CA when one is presented,
//! so after the handshake "the peer has certificates" means "the peer's certificate
//! verified"; every request of such a connection then carries [`PeerCert`], which the
//! protected routes accept instead of a key.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections at once (the accept loop waits for a free
//! slot), [`HANDSHAKE_TIMEOUT`] for the handshake, [`HEADER_TIMEOUT`] for a request's headers,
//! and on shutdown [`DRAIN_TIMEOUT`] for requests in flight. A failed or late handshake is
//! counted in `meshmq_core_http_tls_failures_total{reason}` and the connection dropped. Owns
//! no route and decides no authorization.

use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use meshmq_shared::metrics as m;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::auth::PeerCert;

/// Most admin HTTP(S) connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Longest a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest requests in flight may run on after shutdown was asked for.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections on `listener` and serves `app` on each until `shutdown`: over TLS
/// with `tls`, plain HTTP without.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    shutdown: CancellationToken,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    warn!(error = %e, "admin HTTP accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let conn = Connection {
            acceptor: acceptor.clone(),
            app: app.clone(),
            shutdown: shutdown.clone(),
            _permit: permit,
        };
        tokio::spawn(async move {
            debug!(%peer, "admin HTTP connection");
            conn.run(tcp).await;
        });
    }
}

/// One accepted connection and what it needs.
struct Connection {
    /// The TLS side of an HTTPS listener; None: plain HTTP.
    acceptor: Option<TlsAcceptor>,
    app: Router,
    shutdown: CancellationToken,
    /// Holds a connection slot until the connection ends.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, tcp: TcpStream) {
        let Some(acceptor) = self.acceptor.clone() else {
            let (app, shutdown) = (self.app.clone(), self.shutdown.clone());
            return serve_http(tcp, app, shutdown).await;
        };
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
        let tls = tokio::select! {
            () = self.shutdown.cancelled() => return,
            r = handshake => match r {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return failed("handshake", &e),
                Err(_) => return failed("timeout", &"no TLS handshake in time"),
            },
        };
        let verified = tls
            .get_ref()
            .1
            .peer_certificates()
            .is_some_and(|c| !c.is_empty());
        let app = if verified {
            self.app.layer(Extension(PeerCert))
        } else {
            self.app
        };
        serve_http(tls, app, self.shutdown.clone()).await;
    }
}

/// HTTP/1.1 on one connection: headers within [`HEADER_TIMEOUT`], and on shutdown the request
/// in flight gets [`DRAIN_TIMEOUT`].
async fn serve_http<I>(io: I, app: Router, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(DRAIN_TIMEOUT, conn).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "admin HTTP connection ended with an error");
    }
}

fn failed(reason: &'static str, error: &dyn std::fmt::Display) {
    metrics::counter!(m::CORE_HTTP_TLS_FAILURES_TOTAL, "reason" => reason).increment(1);
    debug!(reason, %error, "admin HTTPS handshake failed");
}
