//! [`SnapshotSource`](super::SnapshotSource): a source captured at one moment builds the
//! snapshot of that moment, byte for byte, however the live tables move on after it.

use meshmq_proto::tables::{
    AuthzCacheClear, AuthzRule, AuthzRules, AuthzRulesKind, AuthzRulesSet, BannedAdd, BannedAs,
    BannedRow, Op, RegistryRemove, RetainedDelete, RouteRemove, SettingDelete, SettingRow,
    SettingSet, SharedRemove, SubscriptionRemove, op::Kind,
};
use prost::Message;

use super::Tables;
use super::tests::{
    apply_ok, claim, disconnect, first_gen, node_up, op, retain, route, shared_add, subscribe,
};

fn ban(who: &str) -> Op {
    op(Kind::BannedAdd(BannedAdd {
        row: Some(BannedRow {
            kind: BannedAs::Clientid as i32,
            who: who.into(),
            by: "test".into(),
            reason: "because".into(),
            at: 100,
            until: 200,
        }),
        now_s: 100,
    }))
}

fn setting(key: &str, value: &'static [u8]) -> Op {
    op(Kind::SettingSet(SettingSet {
        row: Some(SettingRow {
            ns: "test".into(),
            key: key.into(),
            value: value.into(),
            version: 0,
        }),
        expect_version: None,
    }))
}

fn authz(key: &str, topic: &str) -> Op {
    op(Kind::AuthzRulesSet(AuthzRulesSet {
        rules: Some(AuthzRules {
            kind: AuthzRulesKind::Username as i32,
            key: key.into(),
            rules: vec![AuthzRule {
                topic: topic.into(),
                permission: "allow".into(),
                action: "publish".into(),
                qos: vec![0, 1],
                retain: "all".into(),
            }],
        }),
    }))
}

/// Rows in every table (enough registry rows that the persistent maps have inner nodes).
fn first_ops() -> Vec<Op> {
    let mut ops = vec![node_up("n1", 1), node_up("n2", 1)];
    for i in 0..300 {
        ops.push(claim(&format!("c{i:03}"), "n1", false, 60, 1_000));
    }
    ops.extend([
        subscribe("c001", "a/+", 1),
        subscribe("c001", "b/#", 0),
        subscribe("c002", "a/+", 2),
        route("a/+", "n1"),
        route("b/#", "n2"),
        shared_add("g", "s/+", "c003", "n1"),
        shared_add("g", "s/+", "c004", "n2"),
        retain("r/1", b"one", None),
        retain("r/2", b"two", Some(9_000)),
        ban("bad"),
        authz("alice", "t/#"),
        setting("a", b"1"),
        setting("b", b"2"),
    ]);
    ops
}

/// Changes to every table, after the capture.
fn later_ops() -> Vec<Op> {
    let mut ops = vec![node_up("n3", 1)];
    for i in 300..400 {
        ops.push(claim(&format!("c{i:03}"), "n2", false, 60, 2_000));
    }
    ops.extend([
        disconnect("c005", first_gen(8), 60, 2_000),
        op(Kind::RegistryRemove(RegistryRemove {
            client_id: "c006".into(),
            generation: first_gen(9),
        })),
        op(Kind::SubscriptionRemove(SubscriptionRemove {
            client_id: "c001".into(),
            filter: "a/+".into(),
        })),
        subscribe("c002", "z", 0),
        op(Kind::RouteRemove(RouteRemove {
            filter: "b/#".into(),
            node: "n2".into(),
            seq: 0,
        })),
        route("c/d", "n3"),
        op(Kind::SharedRemove(SharedRemove {
            group: "g".into(),
            filter: "s/+".into(),
            client_id: "c003".into(),
            generation: 0,
        })),
        shared_add("h", "s/#", "c007", "n3"),
        op(Kind::RetainedDelete(RetainedDelete {
            topic: "r/1".into(),
        })),
        retain("r/2", b"two again", None),
        retain("r/3", b"three", None),
        ban("worse"),
        authz("bob", "u/#"),
        setting("a", b"1 again"),
        op(Kind::SettingDelete(SettingDelete {
            ns: "test".into(),
            key: "b".into(),
            expect_version: None,
        })),
        op(Kind::AuthzCacheClear(AuthzCacheClear {})),
    ]);
    ops
}

#[test]
fn a_source_builds_the_snapshot_of_its_capture_while_the_tables_move_on() {
    let mut live = Tables::new();
    apply_ok(&mut live, &first_ops());
    // A twin that stops at the capture: the state the source must reproduce.
    let mut twin = Tables::new();
    apply_ok(&mut twin, &first_ops());
    let at_capture = twin.snapshot().encode_to_vec();

    let source = live.snapshot_source();
    apply_ok(&mut live, &later_ops());

    assert_eq!(source.applied_index(), twin.applied_index());
    assert_eq!(source.snapshot().encode_to_vec(), at_capture);
    assert_eq!(source.encode(), at_capture, "encoded one table at a time");
    // The live tables did move on, in every table the ops touched.
    let now = live.snapshot();
    let then = twin.snapshot();
    assert_eq!(now.registry.len(), then.registry.len() + 100 - 1);
    assert_ne!(now.nodes, then.nodes);
    assert_ne!(now.subscriptions, then.subscriptions);
    assert_ne!(now.routes, then.routes);
    assert_ne!(now.shared, then.shared);
    assert_ne!(now.retained, then.retained);
    assert_ne!(now.banned, then.banned);
    assert_ne!(now.authz_rules, then.authz_rules);
    assert_ne!(now.authz_epoch, then.authz_epoch);
    assert_ne!(now.settings, then.settings);
    // A source taken now builds the new state; the old one still builds the old.
    assert_eq!(live.snapshot_source().snapshot(), now);
    assert_eq!(source.snapshot().encode_to_vec(), at_capture);
    assert_eq!(source.encode(), at_capture);
}

#[test]
fn a_source_outlives_the_tables_and_restores_to_equal_tables() {
    let mut live = Tables::new();
    apply_ok(&mut live, &first_ops());
    let mut source = live.snapshot_source();
    let expected = live.snapshot();
    drop(live);
    assert_eq!(source.snapshot(), expected);
    assert_eq!(
        Tables::from_snapshot(&source.snapshot()).snapshot(),
        expected
    );
    source.set_applied_index(expected.applied_index + 5);
    assert_eq!(source.snapshot().applied_index, expected.applied_index + 5);
}

fn rules(kind: AuthzRulesKind, key: &str) -> Op {
    op(Kind::AuthzRulesSet(AuthzRulesSet {
        rules: Some(AuthzRules {
            kind: kind as i32,
            key: key.into(),
            rules: vec![AuthzRule {
                topic: "t/#".into(),
                permission: "allow".into(),
                action: "all".into(),
                qos: vec![],
                retain: "all".into(),
            }],
        }),
    }))
}

#[test]
fn pages_walk_the_captured_rows_once_whatever_the_live_tables_do() {
    let mut live = Tables::new();
    let topics = ["$SYS/x", "a", "a/b", "b", "c/d/e"];
    for t in topics {
        apply_ok(&mut live, &[retain(t, b"p", None)]);
    }
    apply_ok(
        &mut live,
        &[
            rules(AuthzRulesKind::Username, "u1"),
            rules(AuthzRulesKind::Username, "u2"),
            rules(AuthzRulesKind::Clientid, "c1"),
            rules(AuthzRulesKind::All, ""),
        ],
    );
    let source = live.snapshot_source();
    // The live tables move on: the source keeps what it captured.
    apply_ok(
        &mut live,
        &[
            op(Kind::RetainedDelete(RetainedDelete { topic: "a".into() })),
            retain("a/c", b"p", None),
        ],
    );
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = source.retained_page(after.as_deref(), 2);
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        after = page.last().map(|m| m.topic.clone());
        seen.extend(page.into_iter().map(|m| m.topic));
    }
    assert_eq!(seen, topics);

    let mut keys = Vec::new();
    let mut after: Option<(i32, String)> = None;
    loop {
        let page = source.authz_rules_page(after.as_ref().map(|(k, s)| (*k, s.as_str())), 3);
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| (r.kind, r.key.clone()));
        keys.extend(page.into_iter().map(|r| (r.kind, r.key)));
    }
    let want: Vec<(i32, String)> = source
        .table(super::Table::AuthzRules)
        .authz_rules
        .into_iter()
        .map(|r| (r.kind, r.key))
        .collect();
    assert_eq!(keys, want);
    assert_eq!(keys.len(), 4);
    assert!(source.auth_users_page(None, 10).is_empty());
}
