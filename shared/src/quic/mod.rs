//! QUIC with mutual TLS between meshmq nodes, and the message framing used on it.
//!
//! Cores talk to each other, and replicants to cores and to one another, over QUIC (quinn)
//! with mutual TLS 1.3 (rustls with the `ring` provider, always passed explicitly: the
//! process-wide default provider is never installed or relied on). This module owns:
//!
//! - [`certs`]: the cluster CA and the per-node certificates on disk (generation for a
//!   cluster, and the dev/standalone "create what is missing" path);
//! - [`tls`]: a node's [`Identity`] (CA, certificate chain, private key) and the rustls
//!   server/client configurations built from it (client certificates are required between
//!   nodes; optional, but verified when presented, on a core's admin HTTPS);
//! - [`endpoint`]: the quinn transport settings, endpoints and a bounded `connect`;
//! - [`frame`]: one protobuf message per length-delimited frame (u32 big-endian length, then
//!   the bytes) and the one-request-one-response helper.
//!
//! Every node certificate names [`SERVER_NAME`] and clients always connect with it, so any
//! node can be dialed by IP address; trust comes from the cluster CA alone (every holder of a
//! certificate signed by it is a cluster member).
//!
//! What it never does: spawn tasks or own sockets beyond the quinn endpoint itself (accept
//! loops and per-connection tasks belong to the node crates), retry anything, or know what a
//! message means (no business logic: Raft, Transact, Follow and peer traffic live elsewhere).

pub mod certs;
pub mod endpoint;
pub mod frame;
pub mod tls;

pub use certs::{CertError, CertPaths};
pub use endpoint::QuicError;
pub use frame::{FrameError, MAX_FRAME};
pub use tls::{Identity, TlsError};

/// ALPN of the core endpoint (Raft RPCs, Transact, Follow, leases).
pub const ALPN_CORE: &[u8] = b"meshmq-core/1";

/// ALPN of the replicant-to-replicant endpoint (forwarding, session takeover).
pub const ALPN_PEER: &[u8] = b"meshmq-peer/1";

/// The DNS name every node certificate carries and every client verifies, whatever address
/// it dialed.
pub const SERVER_NAME: &str = "meshmq.cluster";

/// Application close code a node uses when it shuts down after finishing every stream it
/// had accepted: a request left without an answer on such a connection was never processed
/// and may be sent again elsewhere.
pub const CLOSE_SHUTDOWN: u32 = 0x5d;

/// Whether `conn` was closed by its peer with [`CLOSE_SHUTDOWN`].
pub fn closed_by_shutdown(conn: &quinn::Connection) -> bool {
    matches!(
        conn.close_reason(),
        Some(quinn::ConnectionError::ApplicationClosed(c))
            if c.error_code == quinn::VarInt::from_u32(CLOSE_SHUTDOWN)
    )
}
