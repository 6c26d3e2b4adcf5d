//! The TLS handshake of an `ssl` or `wss` connection: the listener's configuration current
//! at accept time (a reload never touches a handshake under way), bounded by
//! `ssl_options.handshake_timeout_ms`. A failure is counted in
//! `meshmq_tls_handshake_failures_total{listener}` and logged at debug level with rustls'
//! reason (an alert, a certificate the CA does not vouch for), never key material or what
//! the client sent.

use std::net::SocketAddr;

use meshmq_shared::metrics as m;
use meshmq_shared::tls::ServerTls;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tracing::debug;

use super::PeerCertInfo;

/// Runs the server side of the handshake on `io`; the stream and the client's verified
/// certificate (the leaf, if it sent one). `None` when it failed or took too long (counted).
pub async fn handshake<I>(
    tls: &ServerTls,
    listener: &str,
    io: I,
    peer: SocketAddr,
) -> Option<(TlsStream<I>, Option<Box<PeerCertInfo>>)>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let acceptor = tls.acceptor();
    let reason = match tokio::time::timeout(tls.handshake_timeout(), acceptor.accept(io)).await {
        Ok(Ok(stream)) => {
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| {
                    Box::new(PeerCertInfo {
                        leaf_der: leaf.to_vec(),
                    })
                });
            return Some((stream, cert));
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_owned(),
    };
    metrics::counter!(m::TLS_HANDSHAKE_FAILURES_TOTAL, "listener" => listener.to_owned())
        .increment(1);
    debug!(listener, %peer, %reason, "TLS handshake failed");
    None
}
