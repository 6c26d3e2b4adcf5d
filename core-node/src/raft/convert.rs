//! Conversions between openraft 0.9 types and their `meshmq.raft.v1` protobuf mirrors, used
//! both on the wire (Raft RPCs, the follow stream) and on disk (the redb log and meta rows).
//!
//! This module owns the mapping, one function per direction per type, and the checks that a
//! message from another node (or a file) is well formed. `*_to_proto` never fails;
//! `*_from_proto` returns [`ConvertError`] for a missing required field or an inconsistent
//! value and must never panic on any input. It does no I/O and holds no state.
//!
//! Encoding choices:
//! - openraft is built without `single-term-leader`, so a [`Vote`]'s leader id is
//!   `(term, node_id)` and always names a node. Should a vote ever carry no node (the
//!   `single-term-leader` form), it is written as node id [`NO_NODE`] (`u64::MAX`); node id
//!   `u64::MAX` is therefore reserved and never used as a real node id.
//! - A [`Membership`](openraft::Membership)'s voter sets are written in order, each voter set
//!   sorted; its nodes map holds every node (voters and learners) with its address. A voter
//!   missing from the nodes map is malformed (this side always writes it).
//! - A normal entry's payload is [`EntryData::batch`] as is (the encoded batch is never
//!   re-encoded).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use meshmq_proto::raft;
use openraft::{CommittedLeaderId, EntryPayload, LeaderId};

use super::types::{Entry, EntryData, LogId, Node, NodeId, SnapshotMeta, StoredMembership, Vote};

/// The membership type of our configuration.
type Membership = openraft::Membership<NodeId, Node>;

/// Node id written for a vote that names no node; see the module doc.
pub const NO_NODE: NodeId = u64::MAX;

/// A protobuf Raft message (or stored row) that cannot be turned into an openraft value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed raft message: {0}")]
pub struct ConvertError(pub String);

impl ConvertError {
    /// A required field that was absent.
    fn missing(what: &str) -> Self {
        Self(format!("missing {what}"))
    }
}

/// Writes a log id.
pub fn log_id_to_proto(log_id: &LogId) -> raft::LogId {
    raft::LogId {
        term: log_id.leader_id.term,
        node_id: log_id.leader_id.node_id,
        index: log_id.index,
    }
}

/// Reads a log id (every value is valid).
pub fn log_id_from_proto(log_id: &raft::LogId) -> LogId {
    LogId::new(
        CommittedLeaderId::new(log_id.term, log_id.node_id),
        log_id.index,
    )
}

/// Writes an optional log id (`None` stays absent).
pub fn opt_log_id_to_proto(log_id: Option<&LogId>) -> Option<raft::LogId> {
    log_id.map(log_id_to_proto)
}

/// Reads an optional log id (absent means `None`).
pub fn opt_log_id_from_proto(log_id: Option<&raft::LogId>) -> Option<LogId> {
    log_id.map(log_id_from_proto)
}

/// Writes a vote; a vote for no node is written as [`NO_NODE`].
pub fn vote_to_proto(vote: &Vote) -> raft::Vote {
    raft::Vote {
        term: vote.leader_id.term,
        node_id: vote.leader_id.voted_for().unwrap_or(NO_NODE),
        committed: vote.committed,
    }
}

/// Reads a vote; an absent vote is an error.
pub fn vote_from_proto(vote: Option<&raft::Vote>) -> Result<Vote, ConvertError> {
    let vote = vote.ok_or_else(|| ConvertError::missing("vote"))?;
    Ok(Vote {
        leader_id: LeaderId::new(vote.term, vote.node_id),
        committed: vote.committed,
    })
}

/// Writes a membership: voter sets in order (ids sorted), every node with its address.
pub fn membership_to_proto(membership: &Membership) -> raft::Membership {
    raft::Membership {
        configs: membership
            .get_joint_config()
            .iter()
            .map(|set| raft::VoterSet {
                ids: set.iter().copied().collect(),
            })
            .collect(),
        nodes: membership
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect(),
    }
}

/// Reads a membership; a voter absent from the nodes map is an error.
pub fn membership_from_proto(membership: &raft::Membership) -> Result<Membership, ConvertError> {
    let configs: Vec<BTreeSet<NodeId>> = membership
        .configs
        .iter()
        .map(|set| set.ids.iter().copied().collect())
        .collect();
    let nodes: BTreeMap<NodeId, Node> = membership
        .nodes
        .iter()
        .map(|(id, addr)| (*id, Node { addr: addr.clone() }))
        .collect();
    if let Some(id) = configs.iter().flatten().find(|id| !nodes.contains_key(id)) {
        return Err(ConvertError(format!(
            "membership voter {id} has no node address"
        )));
    }
    Ok(Membership::new(configs, nodes))
}

/// Writes a stored membership.
pub fn stored_membership_to_proto(stored: &StoredMembership) -> raft::StoredMembership {
    raft::StoredMembership {
        log_id: opt_log_id_to_proto(stored.log_id().as_ref()),
        membership: Some(membership_to_proto(stored.membership())),
    }
}

/// Reads a stored membership; an absent message or an absent membership is an error.
pub fn stored_membership_from_proto(
    stored: Option<&raft::StoredMembership>,
) -> Result<StoredMembership, ConvertError> {
    let stored = stored.ok_or_else(|| ConvertError::missing("stored membership"))?;
    let membership = stored
        .membership
        .as_ref()
        .ok_or_else(|| ConvertError::missing("stored membership's membership"))?;
    Ok(StoredMembership::new(
        opt_log_id_from_proto(stored.log_id.as_ref()),
        membership_from_proto(membership)?,
    ))
}

/// Writes a log entry.
pub fn entry_to_proto(entry: &Entry) -> raft::Entry {
    let payload = match &entry.payload {
        EntryPayload::Blank => raft::entry::Payload::Blank(raft::Blank {}),
        EntryPayload::Normal(data) => {
            raft::entry::Payload::Normal(Bytes::copy_from_slice(&data.batch))
        }
        EntryPayload::Membership(m) => raft::entry::Payload::Membership(membership_to_proto(m)),
    };
    raft::Entry {
        log_id: Some(log_id_to_proto(&entry.log_id)),
        payload: Some(payload),
    }
}

/// Reads a log entry; an absent log id or payload is an error.
pub fn entry_from_proto(entry: raft::Entry) -> Result<Entry, ConvertError> {
    let log_id = entry
        .log_id
        .as_ref()
        .map(log_id_from_proto)
        .ok_or_else(|| ConvertError::missing("entry log id"))?;
    let payload = match entry.payload {
        Some(raft::entry::Payload::Blank(_)) => EntryPayload::Blank,
        Some(raft::entry::Payload::Normal(batch)) => EntryPayload::Normal(EntryData {
            batch: Vec::from(batch),
        }),
        Some(raft::entry::Payload::Membership(m)) => {
            EntryPayload::Membership(membership_from_proto(&m)?)
        }
        None => {
            return Err(ConvertError(format!(
                "entry {} has no payload",
                log_id.index
            )));
        }
    };
    Ok(Entry { log_id, payload })
}

/// Writes snapshot metadata.
pub fn snapshot_meta_to_proto(meta: &SnapshotMeta) -> raft::SnapshotMeta {
    raft::SnapshotMeta {
        last_log_id: opt_log_id_to_proto(meta.last_log_id.as_ref()),
        last_membership: Some(stored_membership_to_proto(&meta.last_membership)),
        snapshot_id: meta.snapshot_id.clone(),
    }
}

/// Reads snapshot metadata; an absent message or membership is an error.
pub fn snapshot_meta_from_proto(
    meta: Option<&raft::SnapshotMeta>,
) -> Result<SnapshotMeta, ConvertError> {
    let meta = meta.ok_or_else(|| ConvertError::missing("snapshot meta"))?;
    Ok(SnapshotMeta {
        last_log_id: opt_log_id_from_proto(meta.last_log_id.as_ref()),
        last_membership: stored_membership_from_proto(meta.last_membership.as_ref())?,
        snapshot_id: meta.snapshot_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn log_id() -> impl Strategy<Value = LogId> {
        (any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(term, node, index)| LogId::new(CommittedLeaderId::new(term, node), index))
    }

    fn membership() -> impl Strategy<Value = Membership> {
        let ids = proptest::collection::btree_set(0u64..8, 0..4);
        let learners = proptest::collection::btree_map(8u64..12, "[a-z0-9:.]{0,12}", 0..3);
        let addrs = proptest::collection::vec("[a-z0-9:.]{0,12}", 8);
        (proptest::collection::vec(ids, 0..3), learners, addrs).prop_map(
            |(configs, learners, addrs)| {
                let mut nodes: BTreeMap<NodeId, Node> = learners
                    .into_iter()
                    .map(|(id, addr)| (id, Node { addr }))
                    .collect();
                for (id, addr) in configs.iter().flatten().zip(addrs.iter().cycle()) {
                    nodes.insert(*id, Node { addr: addr.clone() });
                }
                Membership::new(configs, nodes)
            },
        )
    }

    fn stored_membership() -> impl Strategy<Value = StoredMembership> {
        (proptest::option::of(log_id()), membership())
            .prop_map(|(id, m)| StoredMembership::new(id, m))
    }

    fn entry() -> impl Strategy<Value = Entry> {
        let payload = prop_oneof![
            Just(EntryPayload::Blank),
            proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|batch| EntryPayload::Normal(EntryData { batch })),
            membership().prop_map(EntryPayload::Membership),
        ];
        (log_id(), payload).prop_map(|(log_id, payload)| Entry { log_id, payload })
    }

    proptest! {
        #[test]
        fn log_id_round_trips(id in log_id()) {
            prop_assert_eq!(log_id_from_proto(&log_id_to_proto(&id)), id);
            prop_assert_eq!(opt_log_id_from_proto(opt_log_id_to_proto(Some(&id)).as_ref()), Some(id));
        }

        #[test]
        fn vote_round_trips(term in any::<u64>(), node in any::<u64>(), committed in any::<bool>()) {
            let vote = if committed { Vote::new_committed(term, node) } else { Vote::new(term, node) };
            prop_assert_eq!(vote_from_proto(Some(&vote_to_proto(&vote))), Ok(vote));
        }

        #[test]
        fn membership_round_trips(m in membership()) {
            prop_assert_eq!(membership_from_proto(&membership_to_proto(&m)), Ok(m));
        }

        #[test]
        fn stored_membership_round_trips(m in stored_membership()) {
            let back = stored_membership_from_proto(Some(&stored_membership_to_proto(&m)));
            prop_assert_eq!(back, Ok(m));
        }

        #[test]
        fn entry_round_trips(e in entry()) {
            prop_assert_eq!(entry_from_proto(entry_to_proto(&e)), Ok(e));
        }

        #[test]
        fn snapshot_meta_round_trips(
            last in proptest::option::of(log_id()),
            m in stored_membership(),
            id in "[a-z0-9-]{0,16}",
        ) {
            let meta = SnapshotMeta { last_log_id: last, last_membership: m, snapshot_id: id };
            prop_assert_eq!(snapshot_meta_from_proto(Some(&snapshot_meta_to_proto(&meta))), Ok(meta));
        }
    }

    #[test]
    fn none_and_defaults_round_trip() {
        assert_eq!(opt_log_id_to_proto(None), None);
        assert_eq!(opt_log_id_from_proto(None), None);
        let vote = Vote::default();
        assert_eq!(vote_from_proto(Some(&vote_to_proto(&vote))), Ok(vote));
        let stored = StoredMembership::default();
        let back = stored_membership_from_proto(Some(&stored_membership_to_proto(&stored)));
        assert_eq!(back, Ok(stored));
    }

    #[test]
    fn missing_fields_are_errors() {
        assert!(vote_from_proto(None).is_err());
        assert!(stored_membership_from_proto(None).is_err());
        assert!(stored_membership_from_proto(Some(&raft::StoredMembership::default())).is_err());
        assert!(snapshot_meta_from_proto(None).is_err());
        assert!(snapshot_meta_from_proto(Some(&raft::SnapshotMeta::default())).is_err());
        assert!(entry_from_proto(raft::Entry::default()).is_err());
        let no_payload = raft::Entry {
            log_id: Some(raft::LogId::default()),
            payload: None,
        };
        assert!(entry_from_proto(no_payload).is_err());
    }

    #[test]
    fn voter_without_address_is_an_error() {
        let m = raft::Membership {
            configs: vec![raft::VoterSet { ids: vec![1, 2] }],
            nodes: [(1, "a:1".to_owned())].into_iter().collect(),
        };
        let err = membership_from_proto(&m).err();
        assert_eq!(
            err,
            Some(ConvertError(
                "membership voter 2 has no node address".into()
            ))
        );
    }
}
