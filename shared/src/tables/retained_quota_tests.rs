//! The retained quota on apply: a `RetainedSet` past the limits it carries is rejected with
//! `QuotaExceeded` and changes nothing; replacing with a no larger message and deleting are
//! always applied; the byte total follows sets, replacements, deletes, expiry and snapshots.

use meshmq_proto::tables::{
    RejectReason, RetainedDelete, RetainedExpire, RetainedMessage, RetainedSet, op::Kind,
};

use super::Tables;
use super::retained_quota::RetainedQuota;
use super::tests::{apply_ok, assert_rejected, op};

/// A `RetainedSet` of `payload_len` bytes on `topic` under the given limits.
fn set(
    topic: &str,
    payload_len: usize,
    max_messages: u64,
    max_bytes: u64,
) -> meshmq_proto::tables::Op {
    set_expiring(topic, payload_len, None, max_messages, max_bytes)
}

fn set_expiring(
    topic: &str,
    payload_len: usize,
    expires_at_ms: Option<u64>,
    max_messages: u64,
    max_bytes: u64,
) -> meshmq_proto::tables::Op {
    op(Kind::RetainedSet(RetainedSet {
        message: Some(RetainedMessage {
            topic: topic.into(),
            payload: vec![b'x'; payload_len].into(),
            expires_at_ms,
            ..Default::default()
        }),
        max_messages,
        max_bytes,
    }))
}

#[test]
fn a_new_topic_past_the_message_limit_is_rejected_and_changes_nothing() {
    let mut t = Tables::new();
    apply_ok(&mut t, &[set("a", 1, 2, 0), set("b", 1, 2, 0)]);
    assert_rejected(&mut t, &set("c", 1, 2, 0), RejectReason::QuotaExceeded);
    assert!(t.retained("c").is_none());
    // Another node's op with a higher limit applies: the limit is the op's, not the node's.
    apply_ok(&mut t, &[set("c", 1, 3, 0)]);
    assert_eq!(t.retained_count(), 3);
}

#[test]
fn the_byte_limit_counts_topic_and_payload() {
    let mut t = Tables::new();
    apply_ok(&mut t, &[set("a", 9, 0, 20)]); // 1 + 9 = 10 bytes
    assert_eq!(t.retained_bytes(), 10);
    assert_rejected(&mut t, &set("b", 10, 0, 20), RejectReason::QuotaExceeded);
    apply_ok(&mut t, &[set("b", 9, 0, 20)]);
    assert_eq!(t.retained_bytes(), 20);
    assert_eq!(
        t.retained_fits("c", 1, 0, 20),
        Err(RetainedQuota::Bytes),
        "the replicant's pre-check agrees"
    );
}

#[test]
fn a_full_store_can_still_be_replaced_with_smaller_and_deleted() {
    let mut t = Tables::new();
    apply_ok(&mut t, &[set("a", 9, 0, 0), set("b", 9, 0, 0)]);
    // Limits lowered below what is stored: a smaller or equal replacement still applies...
    apply_ok(&mut t, &[set("a", 9, 1, 5), set("a", 4, 1, 5)]);
    assert_eq!(t.retained_bytes(), 5 + 10);
    // ...a larger one does not, nor a new topic.
    assert_rejected(&mut t, &set("a", 5, 1, 5), RejectReason::QuotaExceeded);
    assert_rejected(&mut t, &set("c", 1, 1, 0), RejectReason::QuotaExceeded);
    // An empty payload deletes, whatever the limits.
    apply_ok(&mut t, &[set("b", 0, 1, 5)]);
    assert_eq!((t.retained_count(), t.retained_bytes()), (1, 5));
}

#[test]
fn bytes_follow_deletes_expiry_and_snapshots() {
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[
            set_expiring("a/x", 7, Some(100), 0, 0),
            set("a/y", 7, 0, 0),
            set("b", 3, 0, 0),
        ],
    );
    assert_eq!(t.retained_bytes(), 10 + 10 + 4);
    let copy = Tables::from_snapshot(&t.snapshot());
    assert_eq!(copy.retained_bytes(), t.retained_bytes());
    apply_ok(
        &mut t,
        &[
            op(Kind::RetainedExpire(RetainedExpire { now_ms: 100 })),
            op(Kind::RetainedDelete(RetainedDelete { topic: "b".into() })),
        ],
    );
    assert_eq!((t.retained_count(), t.retained_bytes()), (1, 10));
    apply_ok(&mut t, &[set("a/y", 0, 0, 0)]);
    assert_eq!((t.retained_count(), t.retained_bytes()), (0, 0));
}

#[test]
fn the_brokers_sys_topics_neither_count_nor_are_refused() {
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[set("$SYS/brokers/n/uptime", 9, 0, 0), set("a", 9, 1, 10)],
    );
    assert_eq!((t.retained_count(), t.retained_bytes()), (2, 10));
    apply_ok(&mut t, &[set("$SYS/brokers/n/version", 90, 1, 10)]);
    assert_eq!(t.retained_bytes(), 10);
}
