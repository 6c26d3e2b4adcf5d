//! The core nodes' metric names (Raft group, Transact, Follow, leases, the cores' admin
//! HTTP), re-exported by [`crate::metrics`]. Names only, as the rest of that module.

/// Gauge: this core's current Raft term. No labels.
pub const RAFT_TERM: &str = "meshmq_raft_term";
/// Gauge: the leader's node id as this core sees it (0: none). No labels.
pub const RAFT_LEADER_ID: &str = "meshmq_raft_leader_id";
/// Gauge: 1 on the leader, 0 elsewhere. No labels.
pub const RAFT_IS_LEADER: &str = "meshmq_raft_is_leader";
/// Gauge: index of the last log entry this core has. No labels.
pub const RAFT_LAST_LOG_INDEX: &str = "meshmq_raft_last_log_index";
/// Gauge: highest index known committed (applied on this core). No labels.
pub const RAFT_COMMIT_INDEX: &str = "meshmq_raft_commit_index";
/// Gauge: index of the last entry applied to this core's state machine. No labels.
pub const RAFT_APPLIED_INDEX: &str = "meshmq_raft_applied_index";
/// Histogram: seconds from submitting a group-commit entry to its commit. No labels.
pub const CORE_TRANSACT_SECONDS: &str = "meshmq_core_transact_seconds";
/// Histogram: ops per group-commit entry. No labels.
pub const CORE_GROUP_COMMIT_OPS: &str = "meshmq_core_group_commit_ops";
/// Histogram: transactions per group-commit entry. No labels.
pub const CORE_GROUP_COMMIT_TRANSACTIONS: &str = "meshmq_core_group_commit_transactions";
/// Counter: Transact requests served. Labels: `result` (`ok`, `not_leader`, `timeout`,
/// `rejected`, `unavailable`), `forwarded` (`true` when this core passed it to the leader).
pub const CORE_TRANSACT_TOTAL: &str = "meshmq_core_transact_total";
/// Gauge: replicants currently following this core's log. No labels.
pub const CORE_FOLLOWERS: &str = "meshmq_core_followers";
/// Counter: snapshots sent to followers because their index was purged. No labels.
pub const CORE_FOLLOW_SNAPSHOTS_SENT_TOTAL: &str = "meshmq_core_follow_snapshots_sent_total";
/// Counter: chunks of follow snapshots sent to followers. No labels.
pub const CORE_FOLLOW_SNAPSHOT_CHUNKS_SENT_TOTAL: &str =
    "meshmq_core_follow_snapshot_chunks_sent_total";
/// Counter: bytes of table rows in follow snapshot chunks sent to followers. No labels.
pub const CORE_FOLLOW_SNAPSHOT_BYTES_SENT_TOTAL: &str =
    "meshmq_core_follow_snapshot_bytes_sent_total";
/// Counter: follow snapshots sent without a build of their own, because another follower
/// was still being sent a usable one. No labels.
pub const CORE_FOLLOW_SNAPSHOT_REUSED_TOTAL: &str = "meshmq_core_follow_snapshot_reused_total";
/// Counter: projected follow snapshots sent (to replicants that hold a projection of the
/// registry). No labels.
pub const CORE_FOLLOW_PROJECTED_SNAPSHOTS_TOTAL: &str =
    "meshmq_core_follow_projected_snapshots_total";
/// Counter: times a projected follower needed the notes of an entry older than this core
/// keeps (it gets a projected snapshot). No labels.
pub const CORE_FOLLOW_NOTES_GONE_TOTAL: &str = "meshmq_core_follow_notes_gone_total";
/// Counter: entries whose notes took them past a frame, sent to a projected follower as a
/// projected snapshot past them. No labels.
pub const CORE_FOLLOW_OVERSIZED_ENTRIES_TOTAL: &str = "meshmq_core_follow_oversized_entries_total";
/// Counter: log entries streamed to followers. No labels.
pub const CORE_FOLLOW_ENTRIES_SENT_TOTAL: &str = "meshmq_core_follow_entries_sent_total";
/// Counter: requests on the core endpoint that could not be served. Labels: `reason`.
pub const CORE_REQUEST_ERRORS_TOTAL: &str = "meshmq_core_request_errors_total";
/// Counter: replicant nodes purged by the leader after their lease lapsed. No labels.
pub const CORE_LEASE_PURGES_TOTAL: &str = "meshmq_core_lease_purges_total";
/// Gauge: replicant leases the leader holds. No labels.
pub const CORE_LEASES: &str = "meshmq_core_leases";
/// Counter: requests to a core's admin HTTP refused for want of credentials. Labels:
/// `reason` (`no_credentials`: no key and no client certificate; `bad_key`: a Bearer token
/// that is not the key; `origin`: without a configured key, a request with an `Origin`
/// header; `host`: without a configured key, a `Host` that is neither an IP address nor
/// `localhost`).
pub const CORE_HTTP_DENIED_TOTAL: &str = "meshmq_core_http_denied_total";
/// Counter: connections to a core's admin HTTPS closed before a request could be read.
/// Labels: `reason` (`handshake`: the TLS handshake failed, e.g. a certificate from another
/// CA; `timeout`: no handshake within the limit).
pub const CORE_HTTP_TLS_FAILURES_TOTAL: &str = "meshmq_core_http_tls_failures_total";
/// Counter: Raft state-machine snapshots built or installed on this core. Labels: `kind`
/// (`build`, `install`).
pub const RAFT_SNAPSHOTS_TOTAL: &str = "meshmq_raft_snapshots_total";
/// Histogram: seconds to build (encode and persist) or install a Raft snapshot. Labels:
/// `kind` (`build`, `install`).
pub const RAFT_SNAPSHOT_SECONDS: &str = "meshmq_raft_snapshot_seconds";
/// Gauge: entries held in this core's Raft log (last index − first index + 1, 0 when
/// empty). No labels.
pub const RAFT_LOG_ENTRIES: &str = "meshmq_raft_log_entries";
/// Counter: Raft RPCs this core sent to another core. Labels: `rpc` (`vote`, `append`,
/// `snapshot`), `result` (`ok`, `unreachable`, `timeout`, `network`, `remote_error`,
/// `malformed`, `payload_too_large`: not sent, over the core RPC frame bound).
pub const RAFT_RPC_TOTAL: &str = "meshmq_raft_rpc_total";
/// Counter: AppendEntries requests sent with fewer entries than openraft handed over, to
/// stay within a byte bound. Labels: `bound` (`budget`: the per-request budget, `frame`:
/// the core RPC frame bound).
pub const RAFT_APPEND_TRIMMED_TOTAL: &str = "meshmq_raft_append_trimmed_total";
/// Counter: transactions a core refused whole because they do not fit one log entry.
/// Labels: `reason` (`entry_ops`, `entry_bytes`).
pub const CORE_TRANSACT_REFUSED_TOTAL: &str = "meshmq_core_transact_refused_total";
/// Counter: inter-node handshakes refused because the two nodes speak different majors of
/// the inter-node protocol (or one sent no version), counted on both ends. Labels: `peer`
/// (`core`: the other end is a core; `replicant`: the other end is a replicant).
pub const WIRE_PROTOCOL_REFUSED_TOTAL: &str = "meshmq_wire_protocol_refused_total";
