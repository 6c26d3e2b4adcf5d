//! The core's side of the inter-node protocol version (docs/upgrade.md, "Inter-node
//! protocol"): every request a core serves carries the sender's version and is refused
//! when its major differs from this core's (or it carries none); every answer carries this
//! core's version, and a core calling another core refuses an answer of another major.
//!
//! Owns the refusal text, the `meshmq_wire_protocol_refused_total` counting and the gated
//! warning (one line per [`LOG_PERIOD`] per kind, whatever the rate of refused attempts). It
//! never closes connections nor decides retries: callers answer `Error` or fail the RPC.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use meshmq_proto::core::{Request, request::Kind};
use meshmq_proto::tables::WireVersion as WireProto;
use meshmq_shared::log_gate::LogGate;
use meshmq_shared::metrics as m;
use meshmq_shared::wire_version::{self, WireCell, WireVersion};
use parking_lot::Mutex;
use tracing::warn;

/// At most one refusal warning per this period and direction.
pub const LOG_PERIOD: Duration = Duration::from_secs(10);

/// A core's inter-node protocol version and its refusal log gates; one per core, shared by
/// its server and its Raft client.
#[derive(Debug)]
pub struct Wire {
    /// The version this core speaks ([`WireVersion::CURRENT`] unless a test set another).
    cell: WireCell,
    /// Gates the warning for refused incoming requests.
    incoming: LogGate,
    /// Gates the warning for refused answers from other cores.
    outgoing: LogGate,
    /// The version each other core (by address) last answered this one with; bounded by
    /// the membership (addresses this core dials).
    seen: Mutex<HashMap<String, WireVersion>>,
}

impl Default for Wire {
    fn default() -> Self {
        Self {
            cell: WireCell::default(),
            incoming: LogGate::new(LOG_PERIOD),
            outgoing: LogGate::new(LOG_PERIOD),
            seen: Mutex::new(HashMap::new()),
        }
    }
}

impl Wire {
    /// A shared handle speaking [`WireVersion::CURRENT`].
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The version this core speaks now.
    pub fn version(&self) -> WireVersion {
        self.cell.get()
    }

    /// Speaks `v` from now on (tests only: a real core speaks its build's version).
    #[doc(hidden)]
    pub fn set_version(&self, v: WireVersion) {
        self.cell.set(v);
    }

    /// This core's version as carried in messages.
    pub fn proto(&self) -> Option<WireProto> {
        Some(self.version().to_proto())
    }

    /// Checks an incoming request's version. `certified`: the name the sender's certificate
    /// carries, if known. On refusal: counts, logs (gated) and returns the text to answer.
    pub fn check_request(
        &self,
        req: &Request,
        kind: &Kind,
        certified: Option<&str>,
    ) -> Result<(), String> {
        let ours = self.version();
        let theirs = WireVersion::from_proto(req.wire.as_ref());
        if wire_version::check(ours, theirs).is_ok() {
            return Ok(());
        }
        let role = sender_role(kind);
        let who = match certified.or_else(|| named_in(kind)) {
            Some(name) => format!("{role} {name}"),
            None => role.to_owned(),
        };
        let text = wire_version::refusal(&who, theirs, "core", ours);
        metrics::counter!(m::WIRE_PROTOCOL_REFUSED_TOTAL, "peer" => role).increment(1);
        if let Some(held) = self.incoming.pass() {
            warn!(refused = %text, held_back = held, "inter-node request refused: another protocol major");
        }
        Err(text)
    }

    /// Checks the version in another core's answer (`addr`: that core). On refusal: counts,
    /// logs (gated) and returns the text for the RPC error.
    pub fn check_answer(&self, theirs: Option<&WireProto>, addr: &str) -> Result<(), String> {
        let ours = self.version();
        let theirs = WireVersion::from_proto(theirs);
        {
            let mut seen = self.seen.lock();
            if seen.get(addr) != Some(&theirs) {
                seen.insert(addr.to_owned(), theirs);
            }
        }
        if wire_version::check(ours, theirs).is_ok() {
            return Ok(());
        }
        let text = wire_version::refusal(&format!("core {addr}"), theirs, "core", ours);
        metrics::counter!(m::WIRE_PROTOCOL_REFUSED_TOTAL, "peer" => "core").increment(1);
        if let Some(held) = self.outgoing.pass() {
            warn!(refused = %text, held_back = held, "answer of another core refused: another protocol major");
        }
        Err(text)
    }
}

impl Wire {
    /// The version the core at `addr` last answered this one with (`None`: it never
    /// answered this core, e.g. a follower that never asked another follower for a vote).
    pub fn seen(&self, addr: &str) -> Option<WireVersion> {
        self.seen.lock().get(addr).copied()
    }
}

/// `core` for what only cores send (Raft RPCs, forwarded transactions), else `replicant`.
fn sender_role(kind: &Kind) -> &'static str {
    match kind {
        Kind::Vote(_) | Kind::Append(_) | Kind::Snapshot(_) => "core",
        Kind::Transact(t) if t.forwarded => "core",
        _ => "replicant",
    }
}

/// The node name a request states, when it states one.
fn named_in(kind: &Kind) -> Option<&str> {
    match kind {
        Kind::Follow(f) if !f.node.is_empty() => Some(&f.node),
        Kind::Lease(l) if !l.node.is_empty() => Some(&l.node),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshmq_proto::core::{FollowRequest, StatusRequest};

    fn request(kind: Kind, wire: Option<WireVersion>) -> Request {
        Request {
            kind: Some(kind),
            wire: wire.map(WireVersion::to_proto),
        }
    }

    #[test]
    fn same_major_passes_another_is_refused_naming_both() {
        let wire = Wire::default();
        wire.set_version(WireVersion::new(1, 0));
        let kind = Kind::Follow(FollowRequest {
            node: "r1".into(),
            ..Default::default()
        });
        let ok = request(kind.clone(), Some(WireVersion::new(1, 1)));
        assert_eq!(wire.check_request(&ok, &kind, None), Ok(()));
        let bad = request(kind.clone(), Some(WireVersion::new(2, 0)));
        assert_eq!(
            wire.check_request(&bad, &kind, None),
            Err("replicant r1 speaks meshmq inter-node protocol 2.0; this core speaks 1.x".into())
        );
        let status = Kind::Status(StatusRequest {});
        let none = request(status.clone(), None);
        let text = wire
            .check_request(&none, &status, Some("r-9"))
            .err()
            .unwrap_or_default();
        assert!(
            text.starts_with("replicant r-9 sent no meshmq inter-node protocol"),
            "{text}"
        );
    }

    #[test]
    fn answers_of_another_major_are_refused() {
        let wire = Wire::default();
        assert_eq!(wire.check_answer(wire.proto().as_ref(), "c2"), Ok(()));
        let two = WireVersion::new(wire.version().major + 1, 0).to_proto();
        let text = wire
            .check_answer(Some(&two), "c2")
            .err()
            .unwrap_or_default();
        assert!(
            text.starts_with("core c2 speaks meshmq inter-node protocol"),
            "{text}"
        );
    }
}
