//! Unit tests of the retained store: matching by filter (wildcards, the `$` rule, expiry),
//! replacement, deletion with pruning, expiry, and very deep topics.

use meshmq_proto::tables::{RetainedDelete, RetainedExpire, op::Kind};

use super::Tables;
use super::tests::{apply_ok, op, retain};

fn matching(t: &Tables, filter: &str, now_ms: u64) -> Vec<String> {
    let mut topics = Vec::new();
    t.retained_matching(filter, now_ms, |m| topics.push(m.topic.clone()));
    topics.sort();
    topics
}

fn store() -> Tables {
    let mut t = Tables::new();
    let topics = [
        "a", "a/b", "a/b/c", "a/c", "/a", "a//b", "$SYS/x", "$SYS/x/y", "b",
    ];
    let ops: Vec<_> = topics
        .iter()
        .map(|topic| retain(topic, b"p", None))
        .collect();
    apply_ok(&mut t, &ops);
    t
}

#[test]
fn literal_and_wildcard_filters() {
    let t = store();
    assert_eq!(t.retained_count(), 9);
    assert_eq!(matching(&t, "a/b", 0), ["a/b"]);
    assert_eq!(matching(&t, "a/+", 0), ["a/b", "a/c"]);
    assert_eq!(matching(&t, "a/#", 0), ["a", "a//b", "a/b", "a/b/c", "a/c"]);
    assert_eq!(matching(&t, "+/+", 0), ["/a", "a/b", "a/c"]);
    assert_eq!(matching(&t, "a/+/b", 0), ["a//b"]);
    assert_eq!(matching(&t, "+", 0), ["a", "b"]);
    assert_eq!(matching(&t, "nope/#", 0), Vec::<String>::new());
}

#[test]
fn dollar_topics_only_match_explicitly() {
    let t = store();
    assert!(
        !matching(&t, "#", 0)
            .iter()
            .any(|topic| topic.starts_with('$'))
    );
    assert_eq!(matching(&t, "+/x", 0), Vec::<String>::new());
    assert_eq!(matching(&t, "$SYS/#", 0), ["$SYS/x", "$SYS/x/y"]);
    assert_eq!(matching(&t, "$SYS/+/y", 0), ["$SYS/x/y"]);
}

#[test]
fn expired_messages_are_skipped_then_deleted() {
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[
            retain("e/1", b"x", Some(100)),
            retain("e/2", b"x", Some(200)),
            retain("e/3", b"x", None),
        ],
    );
    assert_eq!(matching(&t, "e/+", 99), ["e/1", "e/2", "e/3"]);
    assert_eq!(matching(&t, "e/+", 100), ["e/2", "e/3"]);
    assert_eq!(matching(&t, "e/1", 150), Vec::<String>::new());
    assert!(
        t.retained("e/1").is_some(),
        "exact reads still see it until RetainedExpire"
    );
    apply_ok(
        &mut t,
        &[op(Kind::RetainedExpire(RetainedExpire { now_ms: 150 }))],
    );
    assert_eq!(t.retained_count(), 2);
    assert!(t.retained("e/1").is_none());
    apply_ok(
        &mut t,
        &[op(Kind::RetainedExpire(RetainedExpire {
            now_ms: u64::MAX,
        }))],
    );
    assert_eq!(t.retained_count(), 1);
    assert_eq!(t.retained.level_count(), 2, "expired levels are pruned");
}

#[test]
fn replace_keeps_one_message_and_fixes_the_expiry_index() {
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[retain("t", b"old", Some(10)), retain("t", b"new", None)],
    );
    assert_eq!(t.retained_count(), 1);
    apply_ok(
        &mut t,
        &[op(Kind::RetainedExpire(RetainedExpire { now_ms: 20 }))],
    );
    assert_eq!(
        t.retained("t").map(|m| m.payload.as_ref()),
        Some(&b"new"[..])
    );
}

#[test]
fn empty_payload_and_delete_remove_and_prune() {
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[
            retain("a/b/c", b"1", None),
            retain("a", b"2", None),
            retain("a/x/y", b"3", None),
        ],
    );
    assert_eq!(t.retained.level_count(), 5);
    apply_ok(&mut t, &[retain("a/b/c", b"", None)]);
    assert_eq!((t.retained_count(), t.retained.level_count()), (2, 3));
    let delete = |topic: &str| {
        op(Kind::RetainedDelete(RetainedDelete {
            topic: topic.into(),
        }))
    };
    apply_ok(&mut t, &[delete("a"), delete("a"), delete("zz")]);
    assert_eq!((t.retained_count(), t.retained.level_count()), (1, 3));
    apply_ok(&mut t, &[delete("a/x/y")]);
    assert_eq!((t.retained_count(), t.retained.level_count()), (0, 0));
}

#[test]
fn very_deep_topics_do_not_overflow_the_stack() {
    let deep = vec!["l"; 30_000].join("/");
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[op(Kind::RetainedSet(meshmq_proto::tables::RetainedSet {
            message: Some(meshmq_proto::tables::RetainedMessage {
                topic: deep.clone(),
                payload: b"x"[..].into(),
                ..Default::default()
            }),
            ..Default::default()
        }))],
    );
    assert_eq!(matching(&t, "#", 0).len(), 1);
    assert_eq!(matching(&t, &deep, 0).len(), 1);
    let snapshot = t.snapshot();
    let copy = Tables::from_snapshot(&snapshot);
    assert_eq!(copy.retained_count(), 1);
    drop(copy);
    apply_ok(
        &mut t,
        &[op(Kind::RetainedDelete(RetainedDelete { topic: deep }))],
    );
    assert_eq!(t.retained.level_count(), 0);
}

#[test]
fn a_level_is_small_so_that_an_only_child_costs_little() {
    // A level sits inline in its parent's map nodes (11 slots each, one node even for an only
    // child, as `temp` below every device in `site/S/device/D/temp`): with the message
    // inline a node was ~2.7 KB per stored message.
    let size = std::mem::size_of::<super::retained::Level>();
    assert!(size <= 48, "a level is {size} bytes");
}
