//! How the link to the core group stands, as `/health` reports it: following a core,
//! lagging behind the group's commit index, or down (no follow stream).
//!
//! Owns the state rule ([`LinkHealth::judge`], pure) and the lag threshold. It reads what
//! the link already keeps (the followed core, the highest reported commit index, the
//! replica's applied index) and must never wait on the network or the tables.

use std::net::SocketAddr;

use serde::Serialize;

/// Entries behind the group's commit index beyond which a following replica counts as
/// lagging. One entry is a group commit (up to ~1 ms or 1 000 operations), so this is on
/// the order of a second of a saturated core group; a healthy replica is a few entries
/// behind at most.
pub const LAGGING_ENTRIES: u64 = 1_000;

/// The link's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// A follow stream is open and the replica is within [`LAGGING_ENTRIES`] of the
    /// commit index.
    Following,
    /// A follow stream is open but the replica is more than [`LAGGING_ENTRIES`] behind.
    Lagging,
    /// No follow stream: no core reachable, or between two attempts. Reads are served from
    /// a replica that may be stale; table writes wait for a core.
    Down,
}

/// The link's state and the numbers it was judged from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkHealth {
    /// See [`LinkState`].
    pub state: LinkState,
    /// The core being followed (`None` when down).
    pub core: Option<SocketAddr>,
    /// Highest log index applied to the local replica.
    pub applied_index: u64,
    /// Highest commit index a core reported to this link.
    pub commit_index: u64,
    /// `commit_index − applied_index` (the `meshmq_replication_lag_entries` gauge).
    pub lag: u64,
    /// Why the cores refuse this node's inter-node protocol version, while they do (left
    /// out otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wire_refused: Option<String>,
}

impl LinkHealth {
    /// Judges the link from the followed core (if any), the replica's applied index and
    /// the highest commit index reported.
    pub fn judge(core: Option<SocketAddr>, applied_index: u64, commit_index: u64) -> Self {
        let lag = commit_index.saturating_sub(applied_index);
        let state = match core {
            None => LinkState::Down,
            Some(_) if lag > LAGGING_ENTRIES => LinkState::Lagging,
            Some(_) => LinkState::Following,
        };
        LinkHealth {
            state,
            core,
            applied_index,
            commit_index,
            lag,
            wire_refused: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_without_a_core_lagging_past_the_threshold_else_following() {
        let core: Option<SocketAddr> = "127.0.0.1:4370".parse().ok();
        let h = LinkHealth::judge(core, 10, 10);
        assert_eq!((h.state, h.lag), (LinkState::Following, 0));
        let edge = LinkHealth::judge(core, 10, 10 + LAGGING_ENTRIES);
        assert_eq!(edge.state, LinkState::Following);
        let behind = LinkHealth::judge(core, 10, 11 + LAGGING_ENTRIES);
        assert_eq!(
            (behind.state, behind.lag),
            (LinkState::Lagging, LAGGING_ENTRIES + 1)
        );
        let down = LinkHealth::judge(None, 10, 5_000);
        assert_eq!(down.state, LinkState::Down);
        // Applied ahead of a stale reported commit index: no lag, no underflow.
        assert_eq!(LinkHealth::judge(core, 20, 10).lag, 0);
    }

    #[test]
    fn serializes_as_the_health_body_shows_it() {
        let core: Option<SocketAddr> = "127.0.0.1:4370".parse().ok();
        let json = serde_json::to_string(&LinkHealth::judge(core, 3, 5)).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"state":"following","core":"127.0.0.1:4370","applied_index":3,"commit_index":5,"lag":2}"#
        );
        let down = serde_json::to_string(&LinkHealth::judge(None, 3, 5)).unwrap_or_default();
        assert!(down.starts_with(r#"{"state":"down","core":null"#), "{down}");
    }
}
