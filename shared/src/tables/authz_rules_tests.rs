//! The `authz_rules` table: set/replace/delete by (kind, key), validation (EMQX's 100 rules
//! per key, rules readable), the cache epoch bumped by every change and by
//! `AuthzCacheClear`, paging, and the snapshot round trip.

use meshmq_proto::tables::{
    AuthzCacheClear, AuthzRule, AuthzRules, AuthzRulesDelete, AuthzRulesKind, AuthzRulesSet, Op,
    RejectReason, op::Kind,
};

use super::{Tables, rejection};

fn op(kind: Kind) -> Op {
    Op { kind: Some(kind) }
}

fn rule(topic: &str) -> AuthzRule {
    AuthzRule {
        topic: topic.into(),
        permission: "allow".into(),
        action: "publish".into(),
        qos: vec![0, 1],
        retain: "all".into(),
    }
}

fn set(kind: AuthzRulesKind, key: &str, rules: Vec<AuthzRule>) -> Op {
    op(Kind::AuthzRulesSet(AuthzRulesSet {
        rules: Some(AuthzRules {
            kind: kind as i32,
            key: key.into(),
            rules,
        }),
    }))
}

#[test]
fn set_replace_delete_and_the_epoch() {
    let mut t = Tables::new();
    assert_eq!(t.authz_epoch(), 0);
    let r = t.apply(
        1,
        &set(AuthzRulesKind::Username, "alice", vec![rule("a/#")]),
    );
    assert!(rejection(&r).is_none(), "{r:?}");
    assert_eq!(t.authz_epoch(), 1);
    t.apply(
        2,
        &set(
            AuthzRulesKind::Username,
            "alice",
            vec![rule("b"), rule("c")],
        ),
    );
    let row = t
        .authz_rules(AuthzRulesKind::Username, "alice")
        .expect("row");
    assert_eq!(row.rules.len(), 2, "replaced, not appended");
    assert!(
        t.authz_rules(AuthzRulesKind::Clientid, "alice").is_none(),
        "kinds apart"
    );
    assert_eq!(t.authz_epoch(), 2);
    t.apply(3, &op(Kind::AuthzCacheClear(AuthzCacheClear {})));
    assert_eq!(t.authz_epoch(), 3);
    t.apply(
        4,
        &op(Kind::AuthzRulesDelete(AuthzRulesDelete {
            kind: AuthzRulesKind::Username as i32,
            key: "alice".into(),
        })),
    );
    assert!(t.authz_rules(AuthzRulesKind::Username, "alice").is_none());
    assert_eq!(t.authz_epoch(), 4);
}

#[test]
fn bad_rows_are_rejected_and_change_nothing() {
    let mut t = Tables::new();
    let too_many = (0..=super::authz_rules::MAX_RULES)
        .map(|i| rule(&format!("t/{i}")))
        .collect();
    let mut bad_perm = rule("t");
    bad_perm.permission = "maybe".into();
    let mut bad_qos = rule("t");
    bad_qos.qos = vec![3];
    let mut bad_retain = rule("t");
    bad_retain.retain = "sometimes".into();
    for (name, o) in [
        (
            "too many rules",
            set(AuthzRulesKind::Username, "u", too_many),
        ),
        (
            "permission",
            set(AuthzRulesKind::Username, "u", vec![bad_perm]),
        ),
        ("qos", set(AuthzRulesKind::Username, "u", vec![bad_qos])),
        (
            "retain",
            set(AuthzRulesKind::Username, "u", vec![bad_retain]),
        ),
        (
            "topic",
            set(AuthzRulesKind::Username, "u", vec![rule("a/#/b")]),
        ),
        (
            "empty key",
            set(AuthzRulesKind::Clientid, "", vec![rule("t")]),
        ),
        (
            "all with a key",
            set(AuthzRulesKind::All, "x", vec![rule("t")]),
        ),
        (
            "no kind",
            set(AuthzRulesKind::Unspecified, "x", vec![rule("t")]),
        ),
        (
            "long topic",
            set(AuthzRulesKind::Username, "u", vec![rule(&"a".repeat(5000))]),
        ),
    ] {
        let r = t.apply(1, &o);
        assert_eq!(
            rejection(&r).map(|(reason, _)| reason),
            Some(RejectReason::Invalid),
            "{name}"
        );
    }
    assert_eq!(t.authz_rules_count(AuthzRulesKind::Username), 0);
    assert_eq!(t.authz_epoch(), 0, "a rejected op bumps nothing");
}

#[test]
fn paging_and_snapshot_round_trip() {
    let mut t = Tables::new();
    for (i, name) in ["c", "a", "b"].iter().enumerate() {
        t.apply(
            i as u64 + 1,
            &set(AuthzRulesKind::Username, name, vec![rule("x")]),
        );
    }
    t.apply(4, &set(AuthzRulesKind::Clientid, "a", vec![rule("y")]));
    t.apply(5, &set(AuthzRulesKind::All, "", vec![rule("z")]));
    let keys = |skip, limit| -> Vec<String> {
        t.authz_rules_page(AuthzRulesKind::Username, skip, limit)
            .into_iter()
            .map(|r| r.key.clone())
            .collect()
    };
    assert_eq!(keys(0, 2), ["a", "b"]);
    assert_eq!(keys(2, 2), ["c"]);
    assert_eq!(t.authz_rules_count(AuthzRulesKind::Username), 3);
    assert_eq!(t.authz_rules_count(AuthzRulesKind::Clientid), 1);
    let back = Tables::from_snapshot(&t.snapshot());
    assert_eq!(back, t);
    assert_eq!(back.authz_epoch(), 5, "the epoch survives a snapshot");
    assert!(back.authz_rules(AuthzRulesKind::All, "").is_some());
}
