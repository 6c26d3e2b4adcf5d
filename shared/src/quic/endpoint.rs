//! quinn endpoints of a node: transport settings, server and client configurations, and a
//! connect bounded in time.
//!
//! Owns the QUIC transport policy (keep-alive, idle timeout, stream limits, flow-control
//! windows sized for [`MAX_FRAME`]-sized messages). It creates endpoints but never accepts
//! on them, never spawns a task of its own and never retries: accept loops, connection
//! caches and retry policies belong to the node crates.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};

use super::SERVER_NAME;
use super::frame::MAX_FRAME;
use super::tls::{self, Identity, TlsError};

/// Interval of keep-alive packets on an idle connection: the peer's acknowledgements are
/// what a replicant's follow task sees of a live core between heartbeats (it takes a
/// connection silent for 1 s for dead).
const KEEP_ALIVE: Duration = Duration::from_millis(500);
/// A connection with no packet from the peer for this long is closed (milliseconds).
const IDLE_TIMEOUT_MS: u32 = 5_000;
/// Bidirectional streams a peer may have open at once (one per in-flight request).
const MAX_BIDI_STREAMS: u32 = 4_096;
/// Unidirectional streams a peer may have open at once (unused by meshmq, kept small).
const MAX_UNI_STREAMS: u32 = 16;
/// Per-stream receive window: a whole maximum-size frame plus its length prefix, so one
/// message never waits for the reader to make room.
const STREAM_WINDOW: u32 = (MAX_FRAME + (1 << 20)) as u32;
/// Per-connection receive window and send window: two maximum-size messages in flight.
const CONNECTION_WINDOW: u32 = 2 * STREAM_WINDOW;

/// Errors creating endpoints and connecting.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// The TLS configuration could not be built from the identity.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The rustls configuration lacks the cipher suite QUIC needs for its initial packets.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Crypto(#[from] NoInitialCipherSuite),
    /// The UDP socket could not be bound (address in use, no tokio runtime...).
    #[error("cannot bind QUIC endpoint on {addr}: {error}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system (or quinn) said.
        #[source]
        error: std::io::Error,
    },
    /// quinn refused to start a connection (no client configuration, endpoint closed,
    /// invalid address).
    #[error("cannot connect to {addr}: {error}")]
    Connect {
        /// The address dialed.
        addr: SocketAddr,
        /// quinn's reason.
        #[source]
        error: quinn::ConnectError,
    },
    /// The handshake failed: the peer refused our certificate or ALPN, its certificate was
    /// refused, or the connection was lost or timed out at the QUIC level.
    #[error("handshake with {addr} failed: {error}")]
    Handshake {
        /// The address dialed.
        addr: SocketAddr,
        /// The connection error.
        #[source]
        error: quinn::ConnectionError,
    },
    /// The handshake did not complete within the caller's timeout.
    #[error("handshake with {addr} timed out after {after:?}")]
    Timeout {
        /// The address dialed.
        addr: SocketAddr,
        /// The timeout that expired.
        after: Duration,
    },
}

/// The transport settings of every meshmq connection: keep-alive 1 s, idle timeout 5 s,
/// 4 096 concurrent bidirectional streams, flow-control windows sized for 64 MiB messages.
pub fn transport() -> TransportConfig {
    let mut config = TransportConfig::default();
    config
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(IDLE_TIMEOUT_MS))))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_BIDI_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(MAX_UNI_STREAMS))
        .stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW))
        .send_window(u64::from(CONNECTION_WINDOW));
    config
}

/// The quinn server configuration of `id`, accepting only `alpn` and only clients with a
/// certificate signed by the CA.
pub fn server_config(id: &Identity, alpn: &[u8]) -> Result<quinn::ServerConfig, QuicError> {
    let crypto = QuicServerConfig::try_from(tls::server_crypto(id, alpn)?)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport()));
    Ok(config)
}

/// The quinn client configuration of `id`: offers `alpn`, presents `id`'s certificate and
/// verifies the server against the CA under [`SERVER_NAME`].
pub fn client_config(id: &Identity, alpn: &[u8]) -> Result<quinn::ClientConfig, QuicError> {
    let crypto = QuicClientConfig::try_from(tls::client_crypto(id, alpn)?)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport()));
    Ok(config)
}

/// A server endpoint on `addr` (port 0 picks one: read it back with `local_addr`) accepting
/// `alpn`, which can also dial out with the same identity and ALPN (its default client
/// configuration). Must be called inside a tokio runtime.
pub fn bind(addr: SocketAddr, id: &Identity, alpn: &[u8]) -> Result<quinn::Endpoint, QuicError> {
    let server = server_config(id, alpn)?;
    let client = client_config(id, alpn)?;
    let mut endpoint =
        quinn::Endpoint::server(server, addr).map_err(|error| QuicError::Bind { addr, error })?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

/// A client-only endpoint for dialing addresses like `family_of`: bound to port 0 on the
/// loopback address of that family when `family_of` is a loopback address (127.0.0.1:0 or
/// [::1]:0), on the unspecified address of that family otherwise (0.0.0.0:0 or [::]:0), so
/// that it can reach non-local peers. Must be called inside a tokio runtime.
pub fn client(
    id: &Identity,
    alpn: &[u8],
    family_of: SocketAddr,
) -> Result<quinn::Endpoint, QuicError> {
    let ip = match (family_of, family_of.ip().is_loopback()) {
        (SocketAddr::V4(_), true) => Ipv4Addr::LOCALHOST.into(),
        (SocketAddr::V4(_), false) => Ipv4Addr::UNSPECIFIED.into(),
        (SocketAddr::V6(_), true) => Ipv6Addr::LOCALHOST.into(),
        (SocketAddr::V6(_), false) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let addr = SocketAddr::new(ip, 0);
    let mut endpoint =
        quinn::Endpoint::client(addr).map_err(|error| QuicError::Bind { addr, error })?;
    endpoint.set_default_client_config(client_config(id, alpn)?);
    Ok(endpoint)
}

/// Connects `ep` (with its default client configuration) to `addr`, verifying the server as
/// [`SERVER_NAME`]; the whole handshake is bounded by `timeout`.
///
/// With TLS 1.3 the client finishes its handshake before the server has checked the client
/// certificate: a refused client may get a connection here that is closed at its first use.
pub async fn connect(
    ep: &quinn::Endpoint,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<quinn::Connection, QuicError> {
    let connecting = ep
        .connect(addr, SERVER_NAME)
        .map_err(|error| QuicError::Connect { addr, error })?;
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(QuicError::Handshake { addr, error }),
        Err(_) => Err(QuicError::Timeout {
            addr,
            after: timeout,
        }),
    }
}

/// The common name of the peer's leaf certificate on `conn` (verified against the cluster
/// CA by the handshake), `None` when it has none usable.
pub fn certified_name(conn: &quinn::Connection) -> Option<Arc<str>> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    let leaf = certs.first()?;
    crate::tls::identity::common_name(leaf.as_ref()).map(Arc::from)
}
