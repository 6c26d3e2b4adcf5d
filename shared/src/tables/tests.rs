//! Op builders and assertions shared by the table tests, and the unit tests of the
//! registry and subscription rules. Nodes, routes, shared groups, purges and snapshots are
//! tested in `cluster_tests.rs`, retained messages in `retained_tests.rs`.

use meshmq_proto::tables::{
    Claimed, NodePurge, NodeRole, NodeUp, Op, OpResult, RegistryClaim, RegistryDisconnect,
    RegistryRemove, RejectReason, RetainedMessage, RetainedSet, RouteAdd, SharedAdd, SubOptions,
    SubscriptionClear, SubscriptionRemove, SubscriptionSet, op::Kind, op_result::Outcome,
};

use super::{Tables, rejection};

pub(super) fn op(kind: Kind) -> Op {
    Op { kind: Some(kind) }
}

pub(super) fn node_up(node: &str, incarnation: u64) -> Op {
    op(Kind::NodeUp(NodeUp {
        node: node.into(),
        addr: format!("{node}:1883"),
        role: NodeRole::Replicant as i32,
        incarnation,
        peer_addr: String::new(),
        wire: None,
    }))
}

pub(super) fn claim(client: &str, node: &str, clean_start: bool, expiry: u32, now_ms: u64) -> Op {
    op(Kind::RegistryClaim(RegistryClaim {
        client_id: client.into(),
        node: node.into(),
        incarnation: 1,
        clean_start,
        session_expiry_secs: expiry,
        protocol_level: 5,
        now_ms,
        ..Default::default()
    }))
}

pub(super) fn disconnect(client: &str, generation: u64, expiry: u32, now_ms: u64) -> Op {
    op(Kind::RegistryDisconnect(RegistryDisconnect {
        client_id: client.into(),
        generation,
        session_expiry_secs: expiry,
        now_ms,
    }))
}

pub(super) fn subscribe(client: &str, filter: &str, qos: u32) -> Op {
    op(Kind::SubscriptionSet(SubscriptionSet {
        client_id: client.into(),
        filter: filter.into(),
        options: Some(SubOptions {
            qos,
            ..Default::default()
        }),
    }))
}

pub(super) fn route(filter: &str, node: &str) -> Op {
    op(Kind::RouteAdd(RouteAdd {
        filter: filter.into(),
        node: node.into(),
        seq: 0,
    }))
}

pub(super) fn shared_add(group: &str, filter: &str, client: &str, node: &str) -> Op {
    op(Kind::SharedAdd(SharedAdd {
        group: group.into(),
        filter: filter.into(),
        client_id: client.into(),
        node: node.into(),
    }))
}

pub(super) fn purge(node: &str, incarnation: u64) -> Op {
    op(Kind::NodePurge(NodePurge {
        node: node.into(),
        incarnation,
    }))
}

pub(super) fn retain(topic: &str, payload: &'static [u8], expires_at_ms: Option<u64>) -> Op {
    op(Kind::RetainedSet(RetainedSet {
        message: Some(RetainedMessage {
            topic: topic.into(),
            payload: payload.into(),
            expires_at_ms,
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// The generation a claim gives a client without a row when it is the first (or only)
/// op of the entry at `index` (`index × 2^16 + 1`).
pub(super) fn first_gen(index: u64) -> u64 {
    index * 65_536 + 1
}

/// Applies `ops` at increasing indexes, asserting each one applied.
pub(super) fn apply_ok(t: &mut Tables, ops: &[Op]) {
    for o in ops {
        let r = t.apply(t.applied_index() + 1, o);
        assert!(rejection(&r).is_none(), "{o:?} -> {r:?}");
    }
}

/// Applies `o`, asserts it is rejected with `reason` and changed nothing.
pub(super) fn assert_rejected(t: &mut Tables, o: &Op, reason: RejectReason) {
    let before = t.snapshot();
    let r = t.apply(before.applied_index, o);
    assert_eq!(
        rejection(&r).map(|(why, _)| why),
        Some(reason),
        "{o:?} -> {r:?}"
    );
    assert_eq!(t.snapshot(), before, "a rejected op changed the state");
}

pub(super) fn claimed(r: OpResult) -> Claimed {
    match r.outcome {
        Some(Outcome::Claimed(c)) => c,
        other => panic!("expected Claimed, got {other:?}"),
    }
}

pub(super) fn subs(t: &Tables, client: &str) -> Vec<String> {
    t.subscriptions(client).map(|(f, _)| f.to_owned()).collect()
}

pub(super) fn route_nodes(t: &Tables, topic: &str) -> Vec<String> {
    let mut nodes = Vec::new();
    t.route_nodes_matching(topic, |n| nodes.push(n.to_owned()));
    nodes.sort();
    nodes
}

#[test]
fn claim_bumps_generation_and_names_previous_owner() {
    let mut t = Tables::new();
    let first = claimed(t.apply(1, &claim("c", "r1", false, 60, 1_000)));
    assert_eq!(
        (
            first.generation,
            first.previous.is_none(),
            first.session_existed
        ),
        (first_gen(1), true, false)
    );
    let second = claimed(t.apply(2, &claim("c", "r2", false, 60, 2_000)));
    assert_eq!(second.generation, first_gen(1) + 1);
    assert!(second.session_existed);
    let prev = second.previous.expect("previous owner");
    assert_eq!(
        (prev.node.as_str(), prev.generation, prev.connected),
        ("r1", first_gen(1), true)
    );
    let row = t.registry("c").expect("row");
    assert_eq!(
        (
            row.node.as_str(),
            row.generation,
            row.connected,
            row.connected_at_ms
        ),
        ("r2", first_gen(1) + 1, true, 2_000)
    );
    // A client whose row was removed starts again above every generation it had.
    let remove = op(Kind::RegistryRemove(RegistryRemove {
        client_id: "c".into(),
        generation: first_gen(1) + 1,
    }));
    apply_ok(&mut t, &[remove]);
    let again = claimed(t.apply(3, &claim("c", "r1", false, 60, 3_000)));
    assert_eq!(again.generation, first_gen(3));
    assert!(again.generation > first_gen(1) + 1);
}

#[test]
fn stale_generation_cannot_touch_the_new_connection() {
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[
            claim("c", "r1", false, 60, 0),
            claim("c", "r2", false, 60, 0),
        ],
    );
    let (old, new) = (first_gen(1), first_gen(1) + 1);
    assert_rejected(
        &mut t,
        &disconnect("c", old, 60, 5),
        RejectReason::StaleGeneration,
    );
    let remove_old = op(Kind::RegistryRemove(RegistryRemove {
        client_id: "c".into(),
        generation: old,
    }));
    assert_rejected(&mut t, &remove_old, RejectReason::StaleGeneration);
    assert_rejected(
        &mut t,
        &disconnect("nobody", 1, 60, 5),
        RejectReason::UnknownClient,
    );
    apply_ok(&mut t, &[disconnect("c", new, 30, 5)]);
    let row = t.registry("c").expect("row");
    assert_eq!(
        (
            row.connected,
            row.disconnected_at_ms,
            row.session_expiry_secs
        ),
        (false, 5, 30)
    );
}

#[test]
fn session_exists_until_its_expiry() {
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[
            claim("c", "r1", false, 10, 0),
            subscribe("c", "a/b", 1),
            disconnect("c", first_gen(1), 10, 1_000),
        ],
    );
    let within = claimed(t.apply(9, &claim("c", "r1", false, 10, 10_999)));
    assert!(within.session_existed);
    assert_eq!(subs(&t, "c"), ["a/b"]);
    apply_ok(&mut t, &[disconnect("c", first_gen(1) + 1, 10, 20_000)]);
    let after = claimed(t.apply(10, &claim("c", "r1", false, 10, 30_000)));
    assert!(!after.session_existed);
    assert!(
        subs(&t, "c").is_empty(),
        "an expired session's subscriptions are cleared"
    );
    apply_ok(&mut t, &[disconnect("c", first_gen(1) + 2, u32::MAX, 0)]);
    assert!(claimed(t.apply(11, &claim("c", "r1", false, 0, u64::MAX))).session_existed);
}

#[test]
fn clean_start_clears_subscriptions_in_the_same_apply() {
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[
            claim("c", "r1", false, 60, 0),
            subscribe("c", "a", 0),
            subscribe("c", "$share/g/b", 2),
        ],
    );
    assert_eq!(subs(&t, "c"), ["$share/g/b", "a"]);
    let kept = claimed(t.apply(5, &claim("c", "r2", false, 60, 1)));
    assert!(kept.session_existed);
    assert_eq!(subs(&t, "c").len(), 2);
    let clean = claimed(t.apply(6, &claim("c", "r2", true, 60, 2)));
    assert!(
        clean.session_existed,
        "reports the old session; CONNACK uses !clean_start too"
    );
    assert!(subs(&t, "c").is_empty());
}

#[test]
fn remove_clears_the_session_and_subscriptions() {
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[claim("c", "r1", false, 60, 0), subscribe("c", "a", 0)],
    );
    let remove = op(Kind::RegistryRemove(RegistryRemove {
        client_id: "c".into(),
        generation: first_gen(1),
    }));
    apply_ok(&mut t, std::slice::from_ref(&remove));
    assert!(t.registry("c").is_none());
    assert!(subs(&t, "c").is_empty());
    assert_rejected(&mut t, &remove, RejectReason::UnknownClient);
}

#[test]
fn subscription_ops() {
    let mut t = Tables::new();
    assert_rejected(&mut t, &subscribe("c", "a", 0), RejectReason::UnknownClient);
    apply_ok(
        &mut t,
        &[
            claim("c", "r1", false, 60, 0),
            subscribe("c", "a/#", 1),
            subscribe("c", "b", 0),
        ],
    );
    for bad in [
        subscribe("c", "a/#/b", 0),
        subscribe("c", "a", 3),
        subscribe("c", "$share//x", 0),
        subscribe("", "a", 0),
    ] {
        assert_rejected(&mut t, &bad, RejectReason::Invalid);
    }
    apply_ok(&mut t, &[subscribe("c", "a/#", 2)]);
    let qos: Vec<u32> = t.subscriptions("c").map(|(_, o)| o.qos).collect();
    assert_eq!(
        qos,
        [2, 0],
        "set replaces the options of an existing filter"
    );
    apply_ok(
        &mut t,
        &[op(Kind::SubscriptionRemove(SubscriptionRemove {
            client_id: "c".into(),
            filter: "b".into(),
        }))],
    );
    assert_eq!(subs(&t, "c"), ["a/#"]);
    apply_ok(
        &mut t,
        &[op(Kind::SubscriptionClear(SubscriptionClear {
            client_id: "c".into(),
        }))],
    );
    assert!(subs(&t, "c").is_empty());
}

#[test]
fn malformed_ops_are_rejected_not_panics() {
    let mut t = Tables::new();
    assert_rejected(&mut t, &Op { kind: None }, RejectReason::Invalid);
    assert_rejected(&mut t, &claim("", "r1", false, 0, 0), RejectReason::Invalid);
    assert_rejected(&mut t, &retain("a/+", b"x", None), RejectReason::Invalid);
    assert_rejected(
        &mut t,
        &op(Kind::RetainedSet(RetainedSet::default())),
        RejectReason::Invalid,
    );
    assert_rejected(&mut t, &purge("", 0), RejectReason::Invalid);
}

#[test]
fn a_late_remove_of_an_ended_session_spares_the_clients_next_session() {
    let mut t = Tables::new();
    apply_ok(&mut t, &[node_up("a", 1), node_up("b", 1)]);
    let old = claimed(t.apply(3, &claim("x", "a", true, 0, 0))).generation;
    let remove_old = op(Kind::RegistryRemove(RegistryRemove {
        client_id: "x".into(),
        generation: old,
    }));
    apply_ok(&mut t, std::slice::from_ref(&remove_old));
    // The client comes back on b; then a second copy of a's removal (a resend, or the
    // original committed late) applies.
    let new = claimed(t.apply(5, &claim("x", "b", false, 300, 1))).generation;
    assert_ne!(new, old, "a generation is never given twice to one client");
    assert_rejected(&mut t, &remove_old, RejectReason::StaleGeneration);
    assert_rejected(
        &mut t,
        &disconnect("x", old, 0, 2),
        RejectReason::StaleGeneration,
    );
    assert!(
        t.registry("x")
            .is_some_and(|r| r.node == "b" && r.connected)
    );
}

/// A claim by `node` that applies only while `from` holds the client's session
/// disconnected (adoption from an evacuating node).
fn adopting_claim(client: &str, node: &str, from: &str, now_ms: u64) -> Op {
    let mut o = claim(client, node, false, 300, now_ms);
    if let Some(Kind::RegistryClaim(c)) = &mut o.kind {
        c.expect_node = from.into();
        c.expect_disconnected = true;
    }
    o
}

/// Asserts `o` is refused with STATE_CONFLICT and changes nothing; returns the detail.
fn conflict_detail(t: &mut Tables, o: &Op) -> String {
    assert_rejected(t, o, RejectReason::StateConflict);
    let r = t.apply(t.applied_index(), o);
    rejection(&r).map(|(_, d)| d.to_owned()).unwrap_or_default()
}

#[test]
fn an_adopting_claim_applies_only_while_the_expected_node_holds_the_session_offline() {
    let mut t = Tables::new();
    // No row at all: refused (an unconditional claim would create one).
    let detail = conflict_detail(&mut t, &adopting_claim("c", "r2", "r1", 10));
    assert!(detail.contains("no row"), "{detail}");
    apply_ok(&mut t, &[claim("c", "r1", false, 300, 0)]);
    let first = t.registry("c").map(|r| r.generation).unwrap_or_default();
    // Connected at r1 (its client came back there): refused, the connection stays.
    let connected = adopting_claim("c", "r2", "r1", 20);
    let detail = conflict_detail(&mut t, &connected);
    assert!(
        detail.contains("\"c\"") && detail.contains("\"r1\"") && detail.contains("connected"),
        "{detail}"
    );
    // Expecting disconnected is what refused it: the owner alone matches.
    let mut owner_only = connected.clone();
    if let Some(Kind::RegistryClaim(c)) = &mut owner_only.kind {
        c.expect_disconnected = false;
    }
    let mut probe = Tables::from_snapshot(&t.snapshot());
    let taken = claimed(probe.apply(probe.applied_index() + 1, &owner_only));
    assert_eq!(taken.generation, first + 1);
    // Disconnected, but owned by another node (its client went there and left): refused.
    apply_ok(
        &mut t,
        &[
            claim("c", "r3", false, 300, 30),
            disconnect("c", first + 1, 300, 40),
        ],
    );
    let detail = conflict_detail(&mut t, &adopting_claim("c", "r2", "r1", 50));
    assert!(
        detail.contains("\"r3\"") && detail.contains("\"r1\""),
        "{detail}"
    );
    // Held offline by the expected node: applies like any claim.
    let adopt = adopting_claim("c", "r2", "r3", 60);
    let got = claimed(t.apply(t.applied_index() + 1, &adopt));
    assert_eq!(got.generation, first + 2);
    assert!(got.session_existed);
    let prev = got.previous.unwrap_or_default();
    assert_eq!((prev.node.as_str(), prev.connected), ("r3", false));
    assert!(
        t.registry("c")
            .is_some_and(|r| r.node == "r2" && r.connected && r.generation == first + 2)
    );
}
