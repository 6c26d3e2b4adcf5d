//! Unit tests of the node rules, routes, shared groups, node purges, batches and snapshot
//! round trips.

use meshmq_proto::tables::{
    Batch, Evacuation, NodeState, NodeStatus, Op, RejectReason, RetainedExpire, RouteAdd,
    RouteRemove, SharedRemove, op::Kind,
};

use super::tests::{
    apply_ok, assert_rejected, claim, claimed, disconnect, first_gen, node_up, op, purge, retain,
    route, route_nodes, shared_add, subs, subscribe,
};
use super::{Tables, rejection};

#[test]
fn nodes_up_status_and_incarnations() {
    let mut t = Tables::new();
    apply_ok(&mut t, &[node_up("r1", 1)]);
    assert_eq!(
        t.node("r1").map(|n| n.status),
        Some(NodeState::Running as i32)
    );
    let evacuate = op(Kind::NodeStatus(NodeStatus {
        node: "r1".into(),
        status: NodeState::Evacuating as i32,
        ..NodeStatus::default()
    }));
    apply_ok(&mut t, &[evacuate]);
    assert_eq!(
        t.node("r1").map(|n| n.status),
        Some(NodeState::Evacuating as i32)
    );
    let unknown = op(Kind::NodeStatus(NodeStatus {
        node: "x".into(),
        status: 1,
        ..NodeStatus::default()
    }));
    assert_rejected(&mut t, &unknown, RejectReason::UnknownNode);
    let bad = op(Kind::NodeStatus(NodeStatus {
        node: "r1".into(),
        status: 42,
        ..NodeStatus::default()
    }));
    assert_rejected(&mut t, &bad, RejectReason::Invalid);
    let mut no_role = node_up("r2", 1);
    if let Some(Kind::NodeUp(up)) = &mut no_role.kind {
        up.role = 0;
    }
    assert_rejected(&mut t, &no_role, RejectReason::Invalid);
    apply_ok(&mut t, &[node_up("r1", 3)]);
    assert_rejected(&mut t, &node_up("r1", 2), RejectReason::StaleIncarnation);
}

fn status(node: &str, status: NodeState, expect: NodeState, plan: Option<Evacuation>) -> Op {
    op(Kind::NodeStatus(NodeStatus {
        node: node.into(),
        status: status as i32,
        evacuation: plan,
        expect: expect as i32,
        expect_started_ms: 0,
    }))
}

#[test]
fn an_evacuation_starts_once_survives_a_restart_and_stops() {
    let mut t = Tables::new();
    apply_ok(&mut t, &[node_up("r1", 1)]);
    let plan = Evacuation {
        conn_evict_rate: 500,
        redirect_to: "r2.example:1883".into(),
        started_ms: 42,
        ..Evacuation::default()
    };
    let start = status(
        "r1",
        NodeState::Evacuating,
        NodeState::Running,
        Some(plan.clone()),
    );
    apply_ok(&mut t, std::slice::from_ref(&start));
    assert_eq!(
        t.node("r1").and_then(|n| n.evacuation.clone()),
        Some(plan.clone())
    );
    // Started twice: the second is refused and the plan is unchanged.
    assert_rejected(&mut t, &start, RejectReason::StateConflict);
    // A write of another run (another start time) is refused.
    let mut stale = status("r1", NodeState::Running, NodeState::Evacuating, None);
    if let Some(Kind::NodeStatus(s)) = &mut stale.kind {
        s.expect_started_ms = 41;
    }
    assert_rejected(&mut t, &stale, RejectReason::StateConflict);
    // A new incarnation (the node restarted) is still evacuating, with its plan.
    apply_ok(&mut t, &[node_up("r1", 2)]);
    let row = t.node("r1").cloned().unwrap_or_default();
    assert_eq!(row.status, NodeState::Evacuating as i32);
    assert_eq!(row.evacuation, Some(plan));
    // Stop: running again, plan cleared; a progress report after the stop is refused.
    apply_ok(
        &mut t,
        &[status(
            "r1",
            NodeState::Running,
            NodeState::Evacuating,
            None,
        )],
    );
    let row = t.node("r1").cloned().unwrap_or_default();
    assert_eq!(row.status, NodeState::Running as i32);
    assert_eq!(row.evacuation, None);
    let late = status(
        "r1",
        NodeState::Evacuating,
        NodeState::Evacuating,
        Some(Evacuation::default()),
    );
    assert_rejected(&mut t, &late, RejectReason::StateConflict);
    apply_ok(&mut t, &[node_up("r1", 3)]);
    assert_eq!(
        t.node("r1").map(|n| n.status),
        Some(NodeState::Running as i32)
    );
}

#[test]
fn node_restart_drops_rows_of_the_old_incarnation() {
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[
            node_up("r1", 1),
            node_up("r2", 1),
            claim("c1", "r1", true, 0, 0),
            route("a/+", "r1"),
            route("a/+", "r2"),
        ],
    );
    apply_ok(&mut t, &[node_up("r1", 1)]);
    assert_eq!(
        route_nodes(&t, "a/b"),
        ["r1", "r2"],
        "same incarnation keeps rows"
    );
    apply_ok(&mut t, &[node_up("r1", 2)]);
    assert_eq!(route_nodes(&t, "a/b"), ["r2"]);
    assert!(t.registry("c1").is_none());
}

#[test]
fn routes_need_a_known_node_and_match_once_per_node() {
    let mut t = Tables::new();
    assert_rejected(&mut t, &route("a/b", "r1"), RejectReason::UnknownNode);
    apply_ok(&mut t, &[node_up("r1", 1), node_up("r2", 1)]);
    assert_rejected(&mut t, &route("a/#/b", "r1"), RejectReason::Invalid);
    apply_ok(
        &mut t,
        &[
            route("a/b", "r1"),
            route("a/+", "r1"),
            route("#", "r1"),
            route("a/#", "r2"),
            route("a/b", "r1"),
        ],
    );
    assert_eq!(t.route_count(), 4);
    assert_eq!(route_nodes(&t, "a/b"), ["r1", "r2"]);
    assert_eq!(route_nodes(&t, "$SYS/a"), Vec::<String>::new());
    apply_ok(
        &mut t,
        &[op(Kind::RouteRemove(RouteRemove {
            filter: "a/#".into(),
            node: "r2".into(),
            seq: 0,
        }))],
    );
    assert_eq!(route_nodes(&t, "a/b"), ["r1"]);
}

fn route_op(add: bool, filter: &str, seq: u64) -> super::Op {
    let (filter, node) = (filter.to_owned(), "r1".to_owned());
    if add {
        op(Kind::RouteAdd(RouteAdd { filter, node, seq }))
    } else {
        op(Kind::RouteRemove(RouteRemove { filter, node, seq }))
    }
}

#[test]
fn route_ops_apply_in_the_nodes_decision_order_whatever_the_commit_order() {
    let mut t = Tables::new();
    apply_ok(&mut t, &[node_up("r1", 1), route_op(true, "a/+", 1)]);
    // The node decided remove (2) then add (3); they commit in the other order.
    apply_ok(
        &mut t,
        &[route_op(true, "a/+", 3), route_op(false, "a/+", 2)],
    );
    assert_eq!(
        route_nodes(&t, "a/x"),
        ["r1"],
        "the older remove must not win"
    );
    // A newer remove does apply; seq 0 (unordered) always applies.
    apply_ok(&mut t, &[route_op(false, "a/+", 4)]);
    assert!(route_nodes(&t, "a/x").is_empty());
    apply_ok(
        &mut t,
        &[route_op(true, "a/+", 0), route_op(false, "a/+", 0)],
    );
    assert!(route_nodes(&t, "a/x").is_empty());
    // The stored seq survives a snapshot round trip.
    apply_ok(&mut t, &[route_op(true, "b/+", 7)]);
    let mut back = Tables::from_snapshot(&t.snapshot());
    apply_ok(&mut back, &[route_op(false, "b/+", 6)]);
    assert_eq!(route_nodes(&back, "b/x"), ["r1"]);
}

#[test]
fn shared_groups_keep_join_order() {
    let mut t = Tables::new();
    assert_rejected(
        &mut t,
        &shared_add("g", "a/+", "c1", "r1"),
        RejectReason::UnknownNode,
    );
    apply_ok(&mut t, &[node_up("r1", 1), node_up("r2", 1)]);
    assert_rejected(
        &mut t,
        &shared_add("g/x", "a/+", "c1", "r1"),
        RejectReason::Invalid,
    );
    apply_ok(
        &mut t,
        &[
            shared_add("g", "a/+", "c2", "r1"),
            shared_add("g", "a/+", "c1", "r2"),
            shared_add("g", "a/+", "c2", "r2"),
        ],
    );
    let members = t.shared_members("g", "a/+");
    assert_eq!(
        members,
        [
            ("c2".to_owned(), "r2".to_owned()),
            ("c1".to_owned(), "r2".to_owned())
        ]
    );
    let mut groups = Vec::new();
    t.shared_groups_matching("a/x", |g, f, m| {
        groups.push((g.to_owned(), f.to_owned(), m.len()))
    });
    assert_eq!(groups, [("g".to_owned(), "a/+".to_owned(), 2)]);
    let leave = |c: &str| {
        op(Kind::SharedRemove(SharedRemove {
            group: "g".into(),
            filter: "a/+".into(),
            client_id: c.into(),
            generation: 0,
        }))
    };
    apply_ok(&mut t, &[leave("c2"), leave("c1"), leave("c1")]);
    assert!(t.shared_members("g", "a/+").is_empty());
    t.shared_groups_matching("a/x", |_, _, _| panic!("no group left"));
}

#[test]
fn an_ended_sessions_shared_remove_spares_the_clients_newer_membership() {
    let mut t = Tables::new();
    apply_ok(&mut t, &[node_up("r1", 1), node_up("r2", 1)]);
    let old = claimed(t.apply(10, &claim("c", "r1", true, 0, 0))).generation;
    apply_ok(&mut t, &[shared_add("g", "a", "c", "r1")]);
    // The client comes back on r2 and joins again before r1's bookkeeping of the ended
    // session commits.
    let new = claimed(t.apply(11, &claim("c", "r2", true, 0, 0))).generation;
    assert!(new > old);
    apply_ok(&mut t, &[shared_add("g", "a", "c", "r2")]);
    let leave = |generation| {
        op(Kind::SharedRemove(SharedRemove {
            group: "g".into(),
            filter: "a".into(),
            client_id: "c".into(),
            generation,
        }))
    };
    assert_rejected(&mut t, &leave(old), RejectReason::StaleGeneration);
    assert_eq!(
        t.shared_members("g", "a"),
        [("c".to_owned(), "r2".to_owned())]
    );
    // The current session's own removal, and an unconditional one (UNSUBSCRIBE), apply.
    apply_ok(&mut t, &[leave(new)]);
    assert!(t.shared_members("g", "a").is_empty());
    apply_ok(&mut t, &[shared_add("g", "a", "c", "r2"), leave(0)]);
    assert!(t.shared_members("g", "a").is_empty());
}

#[test]
fn purge_keeps_subscriptions_and_drops_the_rest_of_that_node() {
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[
            node_up("r1", 1),
            node_up("r2", 1),
            claim("c1", "r1", false, 3600, 0),
            subscribe("c1", "a", 1),
            claim("c2", "r2", false, 3600, 0),
            subscribe("c2", "b", 1),
            route("a", "r1"),
            route("b", "r2"),
            shared_add("g", "s", "c1", "r1"),
            shared_add("g", "s", "c2", "r2"),
        ],
    );
    assert_rejected(&mut t, &purge("r1", 0), RejectReason::StaleIncarnation);
    apply_ok(&mut t, &[purge("r1", 1)]);
    assert!(t.node("r1").is_none());
    assert!(t.registry("c1").is_none());
    assert_eq!(
        subs(&t, "c1"),
        ["a"],
        "persistent subscriptions survive the purge"
    );
    assert_eq!(route_nodes(&t, "a"), Vec::<String>::new());
    assert_eq!(
        t.shared_members("g", "s"),
        [("c2".to_owned(), "r2".to_owned())]
    );
    assert!(t.registry("c2").is_some());
    assert_eq!(route_nodes(&t, "b"), ["r2"]);
    assert_rejected(&mut t, &route("a", "r1"), RejectReason::UnknownNode);
    let resumed = claimed(t.apply(99, &claim("c1", "r2", false, 3600, 5)));
    assert!(
        resumed.session_existed,
        "orphaned subscriptions are a resumable session"
    );
    assert_eq!(subs(&t, "c1"), ["a"]);
}

#[test]
fn a_purge_keeps_disconnected_rows_so_expiry_still_counts() {
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[
            node_up("r1", 1),
            claim("gone", "r1", false, 1, 0),
            subscribe("gone", "a", 1),
            disconnect("gone", first_gen(2), 1, 1_000),
            claim("kept", "r1", false, 60, 0),
            subscribe("kept", "b", 1),
            disconnect("kept", first_gen(5), 60, 1_000),
            claim("live", "r1", false, 60, 0),
        ],
    );
    apply_ok(&mut t, &[node_up("r1", 2)]);
    assert!(
        t.registry("live").is_none(),
        "connected rows die with the process"
    );
    assert!(t.registry("gone").is_some_and(|r| !r.connected));
    let expired = claimed(t.apply(50, &claim("gone", "r1", false, 1, 2_500)));
    assert!(
        !expired.session_existed,
        "expired while the node was down: no session"
    );
    assert!(subs(&t, "gone").is_empty(), "expired subscriptions cleared");
    apply_ok(&mut t, &[purge("r1", 2)]);
    let resumed = claimed(t.apply(51, &claim("kept", "r2", false, 60, 30_000)));
    assert!(resumed.session_existed, "still within its expiry");
    assert_eq!(subs(&t, "kept"), ["b"]);
}

#[test]
fn batch_gives_one_result_per_op_and_advances_the_index() {
    let mut t = Tables::new();
    let batch = Batch {
        ops: vec![node_up("r1", 1), route("a", "nope"), route("a", "r1")],
    };
    let results = t.apply_batch(7, &batch);
    let reasons: Vec<_> = results
        .iter()
        .map(|r| rejection(r).map(|(why, _)| why))
        .collect();
    assert_eq!(reasons, [None, Some(RejectReason::UnknownNode), None]);
    assert_eq!(t.applied_index(), 7);
}

#[test]
fn snapshot_round_trip_gives_equal_state_and_working_indexes() {
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[
            node_up("r1", 1),
            node_up("r2", 2),
            claim("c1", "r1", false, 60, 0),
            subscribe("c1", "a/#", 1),
            disconnect("c1", first_gen(3), 60, 9),
            route("a/+", "r1"),
            route("#", "r2"),
            shared_add("g", "s/+", "c2", "r2"),
            shared_add("g", "s/+", "c1", "r1"),
            retain("a/b", b"1", None),
            retain("a/c", b"2", Some(50)),
        ],
    );
    let snapshot = t.snapshot();
    let restored = Tables::from_snapshot(&snapshot);
    assert_eq!(restored, t);
    assert_eq!(restored.snapshot(), snapshot);
    assert_eq!(restored.applied_index(), t.applied_index());
    assert_eq!(route_nodes(&restored, "a/x"), ["r1", "r2"]);
    assert_eq!(
        restored.shared_members("g", "s/+"),
        t.shared_members("g", "s/+")
    );
    let mut topics = Vec::new();
    restored.retained_matching("a/+", 10, |m| topics.push(m.topic.clone()));
    topics.sort();
    assert_eq!(topics, ["a/b", "a/c"]);
    let mut expired = Tables::from_snapshot(&snapshot);
    apply_ok(
        &mut expired,
        &[op(Kind::RetainedExpire(RetainedExpire { now_ms: 50 }))],
    );
    assert_eq!(expired.retained_count(), 1);
}
