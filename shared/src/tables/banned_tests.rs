//! The `banned` table: add, duplicate refusal (and replacement of an ended ban), matching by
//! every kind, expiry, purge, delete and clear, refusals that change nothing, paging and
//! snapshots.

use std::net::IpAddr;

use meshmq_proto::tables::{
    BannedAdd, BannedAs, BannedDelete, BannedPurge, BannedRow, RejectReason, op::Kind,
};

use super::Tables;
use super::banned::IpNet;
use super::tests::op;

fn row(kind: BannedAs, who: &str, until: u64) -> BannedRow {
    BannedRow {
        kind: kind as i32,
        who: who.into(),
        by: "test".into(),
        reason: "because".into(),
        at: 100,
        until,
    }
}

fn add(t: &mut Tables, index: u64, r: BannedRow, now_s: u64) -> Option<RejectReason> {
    let add = BannedAdd {
        row: Some(r),
        now_s,
    };
    let res = t.apply(index, &op(Kind::BannedAdd(add)));
    super::rejection(&res).map(|(reason, _)| reason)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn each_kind_matches_its_clients_only() {
    let mut t = Tables::new();
    assert_eq!(add(&mut t, 1, row(BannedAs::Clientid, "c1", 0), 100), None);
    assert_eq!(add(&mut t, 2, row(BannedAs::Username, "u1", 0), 100), None);
    assert_eq!(
        add(&mut t, 3, row(BannedAs::Peerhost, "10.0.0.1", 0), 100),
        None
    );
    assert_eq!(
        add(
            &mut t,
            4,
            row(BannedAs::PeerhostNet, "192.168.0.0/16", 0),
            100
        ),
        None
    );
    assert_eq!(
        add(&mut t, 5, row(BannedAs::PeerhostNet, "fd00::/8", 0), 100),
        None
    );
    let other = ip("172.16.0.1");
    let hit = |t: &Tables, c: &str, u: Option<&str>, p: IpAddr| {
        t.banned_match(c, u, p, 200)
            .map(|r| (r.kind, r.who.clone()))
    };
    assert_eq!(hit(&t, "x", None, other), None);
    assert_eq!(hit(&t, "c1", None, other), Some((1, "c1".into())));
    assert_eq!(hit(&t, "x", Some("u1"), other), Some((2, "u1".into())));
    assert_eq!(hit(&t, "x", Some("u2"), other), None);
    assert_eq!(
        hit(&t, "x", None, ip("10.0.0.1")),
        Some((3, "10.0.0.1".into()))
    );
    assert_eq!(hit(&t, "x", None, ip("10.0.0.2")), None);
    let v4net = Some((4, "192.168.0.0/16".into()));
    assert_eq!(hit(&t, "x", None, ip("192.168.44.3")), v4net);
    // An IPv4-mapped IPv6 peer is its IPv4 address.
    assert_eq!(hit(&t, "x", None, ip("::ffff:192.168.1.1")), v4net);
    assert_eq!(
        hit(&t, "x", None, ip("::ffff:10.0.0.1")),
        Some((3, "10.0.0.1".into()))
    );
    assert_eq!(hit(&t, "x", None, ip("192.169.0.1")), None);
    assert_eq!(
        hit(&t, "x", None, ip("fd12::1")),
        Some((4, "fd00::/8".into()))
    );
    assert_eq!(hit(&t, "x", None, ip("fe80::1")), None);
    assert_eq!(t.banned_count(), 5);
}

#[test]
fn a_ban_holds_until_its_end_and_a_purge_removes_it() {
    let mut t = Tables::new();
    assert_eq!(
        add(&mut t, 1, row(BannedAs::Clientid, "c1", 150), 100),
        None
    );
    assert_eq!(add(&mut t, 2, row(BannedAs::Clientid, "c2", 0), 100), None);
    let local = ip("127.0.0.1");
    assert!(t.banned_match("c1", None, local, 149).is_some());
    assert!(
        t.banned_match("c1", None, local, 150).is_none(),
        "ended at until"
    );
    assert!(!t.banned_any_ended(149));
    assert!(t.banned_any_ended(150));
    let purge = |now_s| op(Kind::BannedPurge(BannedPurge { now_s }));
    t.apply(3, &purge(149));
    assert_eq!(t.banned_count(), 2, "nothing ended at 149");
    t.apply(4, &purge(150));
    t.apply(5, &purge(150)); // idempotent
    assert_eq!(t.banned_count(), 1);
    assert!(t.banned(BannedAs::Clientid, "c1").is_none());
    assert!(
        t.banned_match("c2", None, local, u64::MAX - 1).is_some(),
        "no end"
    );
    assert!(!t.banned_any_ended(u64::MAX));
}

#[test]
fn a_ban_in_force_is_not_added_twice_but_an_ended_one_is_replaced() {
    let mut t = Tables::new();
    assert_eq!(add(&mut t, 1, row(BannedAs::Username, "u", 150), 100), None);
    assert_eq!(
        add(&mut t, 2, row(BannedAs::Username, "u", 0), 120),
        Some(RejectReason::StateConflict)
    );
    assert_eq!(
        t.banned(BannedAs::Username, "u").map(|r| r.until),
        Some(150)
    );
    assert_eq!(add(&mut t, 3, row(BannedAs::Username, "u", 500), 150), None);
    assert_eq!(
        t.banned(BannedAs::Username, "u").map(|r| r.until),
        Some(500)
    );
    // The old end left the index with its row: a purge at 150 keeps the new ban.
    t.apply(4, &op(Kind::BannedPurge(BannedPurge { now_s: 150 })));
    assert_eq!(t.banned_count(), 1);
}

#[test]
fn malformed_rows_are_refused_and_change_nothing() {
    let mut t = Tables::new();
    let long = "x".repeat(super::banned::MAX_WHO_LEN + 1);
    let bad = [
        row(BannedAs::Clientid, "", 0),
        row(BannedAs::Clientid, &long, 0),
        row(BannedAs::Unspecified, "c", 0),
        BannedRow {
            kind: 99,
            ..row(BannedAs::Clientid, "c", 0)
        },
        row(BannedAs::Peerhost, "not-an-ip", 0),
        row(BannedAs::Peerhost, "::0001", 0), // not canonical
        row(BannedAs::PeerhostNet, "10.0.0.1", 0),
        row(BannedAs::PeerhostNet, "10.0.0.1/8", 0), // host bits
        row(BannedAs::PeerhostNet, "10.0.0.0/33", 0),
        row(BannedAs::PeerhostNet, "::/129", 0),
        BannedRow {
            reason: "r".repeat(super::banned::MAX_REASON_LEN + 1),
            ..row(BannedAs::Clientid, "c", 0)
        },
        BannedRow {
            by: "b".repeat(super::banned::MAX_BY_LEN + 1),
            ..row(BannedAs::Clientid, "c", 0)
        },
        row(BannedAs::Clientid, "c", super::banned::MAX_TIME + 1),
    ];
    for (i, r) in bad.into_iter().enumerate() {
        let who = r.who.chars().take(20).collect::<String>();
        assert_eq!(
            add(&mut t, i as u64 + 1, r, 0),
            Some(RejectReason::Invalid),
            "{who}"
        );
    }
    let no_row = BannedAdd {
        row: None,
        now_s: 0,
    };
    let r = t.apply(50, &op(Kind::BannedAdd(no_row)));
    assert!(super::rejection(&r).is_some());
    assert_eq!(t.banned_count(), 0);
}

#[test]
fn delete_one_and_clear_all() {
    let mut t = Tables::new();
    add(&mut t, 1, row(BannedAs::Clientid, "c", 0), 0);
    add(&mut t, 2, row(BannedAs::Peerhost, "::1", 0), 0);
    add(&mut t, 3, row(BannedAs::PeerhostNet, "10.0.0.0/8", 9), 0);
    let del = |kind: BannedAs, who: &str, all| {
        op(Kind::BannedDelete(BannedDelete {
            kind: kind as i32,
            who: who.into(),
            all,
        }))
    };
    t.apply(4, &del(BannedAs::Username, "c", false)); // other kind: nothing
    assert_eq!(t.banned_count(), 3);
    t.apply(5, &del(BannedAs::PeerhostNet, "10.0.0.0/8", false));
    assert_eq!(t.banned_count(), 2);
    assert!(t.banned_match("x", None, ip("10.1.1.1"), 0).is_none());
    assert!(!t.banned_any_ended(u64::MAX), "the end went with the row");
    t.apply(6, &del(BannedAs::Unspecified, "", true));
    assert_eq!(t.banned_count(), 0);
}

#[test]
fn paging_and_snapshots_follow_as_then_who() {
    let mut t = Tables::new();
    add(&mut t, 1, row(BannedAs::PeerhostNet, "10.0.0.0/8", 0), 0);
    add(&mut t, 2, row(BannedAs::Clientid, "b", 7), 0);
    add(&mut t, 3, row(BannedAs::Username, "a", 0), 0);
    add(&mut t, 4, row(BannedAs::Clientid, "a", 0), 0);
    let order: Vec<_> = t.banned_page(0, 10).iter().map(|r| r.who.clone()).collect();
    assert_eq!(order, ["a", "b", "a", "10.0.0.0/8"]);
    let page: Vec<_> = t.banned_page(1, 2).iter().map(|r| r.who.clone()).collect();
    assert_eq!(page, ["b", "a"]);
    assert!(t.banned_page(4, 10).is_empty());
    let snap = t.snapshot();
    assert_eq!(snap.banned.len(), 4);
    let back = Tables::from_snapshot(&snap);
    assert_eq!(back, t);
    assert!(back.banned_match("x", None, ip("10.2.3.4"), 0).is_some());
    assert!(back.banned_any_ended(7), "the ends index is rebuilt");
    // A snapshot from another node: bad rows are skipped, never a panic.
    let mut bad = snap.clone();
    bad.banned.push(row(BannedAs::Peerhost, "nope", 0));
    assert_eq!(Tables::from_snapshot(&bad).banned_count(), 4);
}

#[test]
fn networks_parse_as_cidr() {
    assert!(IpNet::parse("0.0.0.0/0").is_ok_and(|n| n.contains(ip("8.8.8.8"))));
    assert!(IpNet::parse("::/0").is_ok_and(|n| !n.contains(ip("8.8.8.8"))));
    assert!(IpNet::parse("10.1.2.3/32").is_ok_and(|n| n.contains(ip("10.1.2.3"))));
    assert!(IpNet::parse("10.0.0.0/x").is_err());
    assert!(IpNet::parse("10.0.0/8").is_err());
    // IPv4-mapped networks would never match (peers are matched as IPv4): refused.
    assert!(IpNet::parse("::ffff:10.0.0.0/104").is_err());
}
