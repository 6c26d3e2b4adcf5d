//! The replicant's side of the inter-node protocol version towards the cores
//! (docs/upgrade.md, "Inter-node protocol"): the version sent with every request, the
//! check of the version every core answer carries, and the refusal state `/health` and the
//! availability check report.
//!
//! A refusal (the core refused this node's version, or answered with another major, or
//! with none) is counted in `meshmq_wire_protocol_refused_total{peer="core"}`, logged as one
//! error per [`LOG_PERIOD`] (the attempts in between are counted, not logged), and kept as
//! [`WireGuard::refused`] until a core accepts this node again. It never retries on its
//! own: the follow task and `transact` keep their back-off.

use std::time::Duration;

use meshmq_proto::tables::WireVersion as WireProto;
use meshmq_shared::log_gate::LogGate;
use meshmq_shared::metrics as m;
use meshmq_shared::wire_version::{self, WireVersion};
use parking_lot::Mutex;
use tracing::error;

/// At most one refusal error line per this period.
pub const LOG_PERIOD: Duration = Duration::from_secs(10);

/// This node's version and the last refusal.
#[derive(Debug)]
pub struct WireGuard {
    /// The version this node speaks.
    version: WireVersion,
    /// Why the cores refused this node, while they do.
    refused: Mutex<Option<String>>,
    /// Gates the refusal error line.
    gate: LogGate,
}

impl WireGuard {
    /// A guard for a node speaking `version`.
    pub fn new(version: WireVersion) -> Self {
        Self {
            version,
            refused: Mutex::new(None),
            gate: LogGate::new(LOG_PERIOD),
        }
    }

    /// The version this node speaks.
    pub fn version(&self) -> WireVersion {
        self.version
    }

    /// This node's version as carried in requests.
    pub fn proto(&self) -> Option<WireProto> {
        Some(self.version.to_proto())
    }

    /// Checks the version a core's answer carries (`core`: its address). `said`: the
    /// core's own error text, if it answered with one (a core that refused this node names
    /// both versions). On refusal: counted, logged (gated), remembered; the text is returned.
    pub fn check(
        &self,
        theirs: Option<&WireProto>,
        core: &str,
        said: Option<&str>,
    ) -> Result<(), String> {
        let theirs = WireVersion::from_proto(theirs);
        if wire_version::check(self.version, theirs).is_ok() {
            return Ok(());
        }
        let ours =
            wire_version::refusal(&format!("core {core}"), theirs, "replicant", self.version);
        let text = match said {
            Some(said) => format!("refused by core {core}: {said}"),
            None => ours,
        };
        self.refuse(&text);
        Err(text)
    }

    /// Records a refusal: counted, logged (gated), remembered.
    pub fn refuse(&self, text: &str) {
        metrics::counter!(m::WIRE_PROTOCOL_REFUSED_TOTAL, "peer" => "core").increment(1);
        if let Some(held) = self.gate.pass() {
            error!(refused = %text, held_back = held, "the cores refuse this node's inter-node protocol version; retrying");
        }
        *self.refused.lock() = Some(text.to_owned());
    }

    /// A core accepted this node's version: the refusal is over.
    pub fn accepted(&self) {
        self.refused.lock().take();
    }

    /// Why the cores refuse this node, while they do.
    pub fn refused(&self) -> Option<String> {
        self.refused.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_remembered_until_accepted() {
        let g = WireGuard::new(WireVersion::new(1, 3));
        assert_eq!(
            g.check(Some(&WireVersion::new(1, 0).to_proto()), "c", None),
            Ok(())
        );
        assert_eq!(g.refused(), None);
        let two = WireVersion::new(2, 0).to_proto();
        let text = g
            .check(Some(&two), "10.0.0.1:5369", None)
            .err()
            .unwrap_or_default();
        assert_eq!(
            text,
            "core 10.0.0.1:5369 speaks meshmq inter-node protocol 2.0; this replicant speaks 1.x"
        );
        assert_eq!(g.refused(), Some(text));
        let said = g
            .check(None, "c", Some("replicant r1 ..."))
            .err()
            .unwrap_or_default();
        assert_eq!(said, "refused by core c: replicant r1 ...");
        g.accepted();
        assert_eq!(g.refused(), None);
    }
}
