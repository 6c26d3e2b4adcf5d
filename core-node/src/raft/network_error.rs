//! Why a Raft RPC to another core failed below the Raft level ([`TransportError`], what
//! openraft logs) and how the network sorts failures before giving them openraft's shape
//! ([`Failure`]). Types only: the network (`super::network`) builds and counts them.

use super::convert::ConvertError;

/// Why one RPC to a peer core failed below the Raft level. Wrapped in openraft's
/// `Unreachable` or `NetworkError` (its text is what openraft logs).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The target's address (`BasicNode::addr`) did not resolve to a socket address.
    #[error("cannot resolve core address {addr:?}: {reason}")]
    Resolve {
        /// The address as in the membership.
        addr: String,
        /// Why it did not resolve.
        reason: String,
    },
    /// The QUIC/TLS handshake failed, was refused, or did not finish in time.
    #[error("cannot connect to core {addr}: {reason}")]
    Connect {
        /// The address dialed.
        addr: String,
        /// The endpoint's error, as text.
        reason: String,
    },
    /// The connection closed before the reply arrived (peer stopped or restarted).
    #[error("connection to core {addr} lost: {reason}")]
    ConnectionLost {
        /// The peer's address.
        addr: String,
        /// The close reason or stream error, as text.
        reason: String,
    },
    /// The stream failed while the connection stayed up (reset, malformed frame).
    #[error("{rpc} to core {addr}: {reason}")]
    Stream {
        /// Which RPC.
        rpc: &'static str,
        /// The peer's address.
        addr: String,
        /// The framing error, as text.
        reason: String,
    },
    /// The peer answered `Response::Error`.
    #[error("core {addr} could not serve {rpc}: {message}")]
    Remote {
        /// Which RPC.
        rpc: &'static str,
        /// The peer's address.
        addr: String,
        /// The peer's error text.
        message: String,
    },
    /// The peer answered with a response of another kind, or none.
    #[error("core {addr} answered {got} to a {rpc} request")]
    UnexpectedReply {
        /// Which RPC.
        rpc: &'static str,
        /// The peer's address.
        addr: String,
        /// The kind of response it sent.
        got: &'static str,
    },
    /// The peer speaks another inter-node protocol major (or sent no version): the text
    /// names both versions.
    #[error("{0}")]
    WireRefused(String),
    /// The request is over the core RPC frame bound; it was not sent.
    #[error("{rpc} to core {addr} not sent: {bytes} bytes, over the core RPC frame bound of {max}")]
    TooLarge {
        /// Which RPC.
        rpc: &'static str,
        /// The peer's address.
        addr: String,
        /// The encoded request's bytes.
        bytes: usize,
        /// The bound.
        max: usize,
    },
    /// The reply had the right kind but a missing or malformed field.
    #[error("malformed {rpc} reply from core {addr}: {source}")]
    Malformed {
        /// Which RPC.
        rpc: &'static str,
        /// The peer's address.
        addr: String,
        /// What was wrong with it.
        source: ConvertError,
    },
}

/// How one RPC failed, before it is given openraft's shape (which depends on the RPC).
pub(super) enum Failure {
    /// Could not reach the peer: openraft backs off before retrying.
    Unreachable(TransportError),
    /// The deadline passed with the connection up.
    Timeout,
    /// Anything else: openraft retries on its next replication round.
    Network(TransportError),
    /// Not sent: the request is over the core RPC frame bound.
    TooLarge(TransportError),
}

impl Failure {
    /// Label value of `meshmq_raft_rpc_total{result}`.
    pub(super) fn label(&self) -> &'static str {
        match self {
            Failure::Unreachable(_) => "unreachable",
            Failure::Timeout => "timeout",
            Failure::Network(TransportError::Remote { .. }) => "remote_error",
            Failure::Network(TransportError::WireRefused(_)) => "wire_refused",
            Failure::Network(TransportError::Malformed { .. })
            | Failure::Network(TransportError::UnexpectedReply { .. }) => "malformed",
            Failure::Network(_) => "network",
            Failure::TooLarge(_) => "payload_too_large",
        }
    }
}
