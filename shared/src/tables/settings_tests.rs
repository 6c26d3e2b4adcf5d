//! The `settings` table: set and replace (versions from apply), compare-and-set, delete,
//! validation, the row and byte bounds, lookups and paging, and the snapshot round trip.

use meshmq_proto::tables::{RejectReason, SettingDelete, SettingRow, SettingSet, op::Kind};
use prost::Message;

use super::settings::{self, Limits, MAX_KEY_LEN, MAX_NS_LEN, MAX_VALUE_LEN, Settings};
use super::tests::op;
use super::{Tables, rejection};

fn row(ns: &str, key: &str, value: &[u8]) -> SettingRow {
    SettingRow {
        ns: ns.into(),
        key: key.into(),
        value: value.to_vec().into(),
        // A writer's version is ignored.
        version: 77,
    }
}

fn set_op(ns: &str, key: &str, value: &[u8], expect: Option<u64>) -> SettingSet {
    SettingSet {
        row: Some(row(ns, key, value)),
        expect_version: expect,
    }
}

/// Applies a `SettingSet`; the rejection reason, if any.
fn set(
    t: &mut Tables,
    ns: &str,
    key: &str,
    value: &[u8],
    expect: Option<u64>,
) -> Option<RejectReason> {
    let index = t.applied_index() + 1;
    let res = t.apply(index, &op(Kind::SettingSet(set_op(ns, key, value, expect))));
    rejection(&res).map(|(reason, _)| reason)
}

/// Applies a `SettingDelete`; the rejection reason, if any.
fn delete(t: &mut Tables, ns: &str, key: &str, expect: Option<u64>) -> Option<RejectReason> {
    let index = t.applied_index() + 1;
    let del = SettingDelete {
        ns: ns.into(),
        key: key.into(),
        expect_version: expect,
    };
    rejection(&t.apply(index, &op(Kind::SettingDelete(del)))).map(|(reason, _)| reason)
}

fn version(t: &Tables, ns: &str, key: &str) -> Option<u64> {
    t.setting(ns, key).map(|r| r.version)
}

#[test]
fn set_gives_version_one_then_counts_up_and_delete_removes() {
    let mut t = Tables::new();
    assert_eq!(set(&mut t, "api_keys", "k1", b"one", None), None);
    assert_eq!(
        version(&t, "api_keys", "k1"),
        Some(1),
        "the writer's 77 ignored"
    );
    assert_eq!(set(&mut t, "api_keys", "k1", b"two", None), None);
    let r = t.setting("api_keys", "k1").expect("row");
    assert_eq!((r.version, r.value.as_ref()), (2, b"two".as_ref()));
    assert_eq!(t.settings_count(), 1);
    assert_eq!(t.settings_bytes(), ("api_keys".len() + 2 + 3) as u64);
    assert_eq!(delete(&mut t, "api_keys", "k1", None), None);
    assert_eq!(t.setting("api_keys", "k1"), None);
    assert_eq!((t.settings_count(), t.settings_bytes()), (0, 0));
    // Absent: not an error, nothing changes.
    assert_eq!(delete(&mut t, "api_keys", "k1", None), None);
    // A new row after a delete starts again at 1.
    assert_eq!(set(&mut t, "api_keys", "k1", b"three", None), None);
    assert_eq!(version(&t, "api_keys", "k1"), Some(1));
}

#[test]
fn compare_and_set_applies_only_at_the_expected_version() {
    let mut t = Tables::new();
    assert_eq!(
        set(&mut t, "cfg", "a", b"x", Some(1)),
        Some(RejectReason::StateConflict)
    );
    assert_eq!(t.setting("cfg", "a"), None);
    assert_eq!(
        set(&mut t, "cfg", "a", b"x", Some(0)),
        None,
        "0: must not exist"
    );
    assert_eq!(
        set(&mut t, "cfg", "a", b"y", Some(0)),
        Some(RejectReason::StateConflict)
    );
    assert_eq!(
        set(&mut t, "cfg", "a", b"y", Some(2)),
        Some(RejectReason::StateConflict)
    );
    assert_eq!(
        t.setting("cfg", "a").map(|r| r.value.to_vec()),
        Some(b"x".to_vec())
    );
    assert_eq!(set(&mut t, "cfg", "a", b"y", Some(1)), None);
    assert_eq!(version(&t, "cfg", "a"), Some(2));

    assert_eq!(
        delete(&mut t, "cfg", "a", Some(1)),
        Some(RejectReason::StateConflict)
    );
    assert_eq!(
        version(&t, "cfg", "a"),
        Some(2),
        "a refused delete keeps the row"
    );
    assert_eq!(delete(&mut t, "cfg", "a", Some(2)), None);
    assert_eq!(t.setting("cfg", "a"), None);
    assert_eq!(
        delete(&mut t, "cfg", "a", Some(0)),
        None,
        "absent is version 0"
    );
    assert_eq!(
        delete(&mut t, "cfg", "a", Some(3)),
        Some(RejectReason::StateConflict)
    );
}

#[test]
fn bad_rows_are_refused_and_change_nothing() {
    let mut t = Tables::new();
    let long_ns = "n".repeat(MAX_NS_LEN + 1);
    let long_key = "k".repeat(MAX_KEY_LEN + 1);
    let big = vec![0u8; MAX_VALUE_LEN + 1];
    for (ns, key, value) in [
        ("", "k", &b"v"[..]),
        ("Upper", "k", b"v"),
        ("with-dash", "k", b"v"),
        ("sp ace", "k", b"v"),
        (long_ns.as_str(), "k", b"v"),
        ("ns", "", b"v"),
        ("ns", "tab\there", b"v"),
        ("ns", "nul\0", b"v"),
        ("ns", long_key.as_str(), b"v"),
        ("ns", "k", big.as_slice()),
    ] {
        assert_eq!(
            set(&mut t, ns, key, value, None),
            Some(RejectReason::Invalid),
            "{ns:?} {:.20?}",
            key
        );
    }
    let res = t.apply(99, &op(Kind::SettingSet(SettingSet::default())));
    assert_eq!(
        rejection(&res).map(|(r, _)| r),
        Some(RejectReason::Invalid),
        "no row"
    );
    assert_eq!(t.settings_count(), 0);
    // The largest allowed of each is fine.
    let ns = "a.b_c9".to_owned() + &"z".repeat(MAX_NS_LEN - 6);
    let key = "ключ/ü ".to_owned() + &"k".repeat(MAX_KEY_LEN - "ключ/ü ".len());
    assert_eq!(
        set(&mut t, &ns, &key, &vec![1u8; MAX_VALUE_LEN], None),
        None
    );
    assert_eq!(t.settings_count(), 1);
}

#[test]
fn the_byte_bound_refuses_growth_past_it_but_not_shrinking() {
    let limits = Limits {
        rows: 10,
        bytes: 30,
    };
    let mut s = Settings::default();
    let set = |s: &mut Settings, key: &str, value: &[u8]| {
        s.set(&set_op("ns", key, value, None), limits)
            .map_err(|r| RejectReason::try_from(r.reason).unwrap_or_default())
    };
    // Each row: 2 (ns) + 1 (key) + value bytes.
    assert_eq!(set(&mut s, "a", b"0123456789"), Ok(()));
    assert_eq!(set(&mut s, "b", b"0123456789"), Ok(()));
    assert_eq!(s.bytes(), 26);
    assert_eq!(
        set(&mut s, "c", b"012345"),
        Err(RejectReason::QuotaExceeded),
        "26 + 9 > 30"
    );
    assert_eq!(s.len(), 2);
    assert_eq!(
        set(&mut s, "a", b"0123456789ABCDEF"),
        Err(RejectReason::QuotaExceeded)
    );
    assert_eq!(s.bytes(), 26, "a refused write changes nothing");
    assert_eq!(
        set(&mut s, "a", b"0123456789AB"),
        Ok(()),
        "26 - 13 + 15 = 28"
    );
    assert_eq!(set(&mut s, "a", b""), Ok(()), "shrinking");
    assert_eq!(s.bytes(), 16);
    assert_eq!(set(&mut s, "c", b"0123456789"), Ok(()), "16 + 13 = 29");
    assert_eq!(s.bytes(), 29);
}

#[test]
fn the_row_bound_refuses_a_new_row_but_replaces_existing_ones() {
    let limits = Limits {
        rows: 3,
        bytes: 1_000,
    };
    let mut s = Settings::default();
    for key in ["a", "b", "c"] {
        s.set(&set_op("ns", key, b"v", None), limits).expect("fits");
    }
    let err = s
        .set(&set_op("ns", "d", b"v", None), limits)
        .expect_err("full");
    assert_eq!(err.reason, RejectReason::QuotaExceeded as i32);
    assert!(err.detail.contains("3 rows"), "{}", err.detail);
    s.set(&set_op("ns", "c", b"new", None), limits)
        .expect("a replace is no new row");
    s.delete(&SettingDelete {
        ns: "ns".into(),
        key: "a".into(),
        expect_version: None,
    })
    .expect("delete");
    s.set(&set_op("ns", "d", b"v", None), limits)
        .expect("room again");
    assert_eq!(s.len(), 3);
}

#[test]
fn the_table_bounds_are_the_documented_ones() {
    assert_eq!(settings::MAX_SETTINGS_ROWS, 100_000);
    assert_eq!(settings::MAX_SETTINGS_BYTES, 256 << 20);
    assert_eq!(MAX_VALUE_LEN, 1 << 20);
    // The row bound through apply, with the real constant.
    let mut t = Tables::new();
    let mut s = Settings::default();
    for i in 0..settings::MAX_SETTINGS_ROWS {
        s.set(&set_op("ns", &format!("{i:06}"), b"", None), Limits::TABLE)
            .expect("fits");
    }
    t.settings = s;
    assert_eq!(
        set(&mut t, "ns", "one more", b"", None),
        Some(RejectReason::QuotaExceeded)
    );
    assert_eq!(set(&mut t, "ns", "000007", b"replaced", None), None);
    assert_eq!(t.settings_count(), settings::MAX_SETTINGS_ROWS);
}

#[test]
fn lookups_list_a_namespace_in_key_order_and_page_after_a_key() {
    let mut t = Tables::new();
    for (ns, key) in [
        ("b", "2"),
        ("a", "z"),
        ("b", "1"),
        ("b", "3"),
        ("c", "1"),
        ("b", "10"),
    ] {
        assert_eq!(set(&mut t, ns, key, key.as_bytes(), None), None);
    }
    let keys = |rows: Vec<&SettingRow>| rows.iter().map(|r| r.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(t.settings_in("b").collect()), ["1", "10", "2", "3"]);
    assert_eq!(t.settings_in("nope").count(), 0);
    assert_eq!(keys(t.settings_page("b", None, 2)), ["1", "10"]);
    assert_eq!(keys(t.settings_page("b", Some("10"), 2)), ["2", "3"]);
    assert_eq!(
        keys(t.settings_page("b", Some("11"), 10)),
        ["2", "3"],
        "after a key not stored"
    );
    assert!(t.settings_page("b", Some("3"), 10).is_empty());
    assert!(t.settings_page("zz", None, 10).is_empty());
    assert_eq!(delete(&mut t, "a", "z", None), None);
    assert_eq!(t.settings_in("a").count(), 0);
    let snap = t.snapshot();
    let order: Vec<_> = snap
        .settings
        .iter()
        .map(|r| (r.ns.as_str(), r.key.as_str()))
        .collect();
    assert_eq!(
        order,
        [("b", "1"), ("b", "10"), ("b", "2"), ("b", "3"), ("c", "1")]
    );
}

#[test]
fn a_snapshot_round_trips_and_bad_rows_in_one_are_skipped() {
    let mut t = Tables::new();
    assert_eq!(set(&mut t, "a", "k", b"v1", None), None);
    assert_eq!(set(&mut t, "a", "k", b"v2", None), None);
    assert_eq!(set(&mut t, "b", "k", b"", None), None);
    let snap = t.snapshot();
    let decoded =
        meshmq_proto::tables::Snapshot::decode(snap.encode_to_vec().as_slice()).expect("decodes");
    let back = Tables::from_snapshot(&decoded);
    assert_eq!(back, t);
    assert_eq!(version(&back, "a", "k"), Some(2), "versions kept");
    assert_eq!(back.settings_bytes(), t.settings_bytes());
    // Replay continues identically.
    let (mut t2, mut back2) = (t, back);
    assert_eq!(set(&mut t2, "a", "k", b"v3", Some(2)), None);
    assert_eq!(set(&mut back2, "a", "k", b"v3", Some(2)), None);
    assert_eq!(t2, back2);

    let mut bad = snap.clone();
    bad.settings.push(SettingRow {
        version: 0,
        ..row("c", "k", b"v")
    });
    bad.settings.push(row("Bad", "k", b"v"));
    bad.settings.push(SettingRow {
        version: 9,
        ..row("a", "k", b"duplicate")
    });
    let restored = Tables::from_snapshot(&bad);
    assert_eq!(restored.settings_count(), 2);
    assert_eq!(
        restored.setting("a", "k").map(|r| r.version),
        Some(2),
        "first row wins"
    );
}
