//! The `auth_users` table: set, replace, delete, refusals that change nothing, paging and
//! snapshots.

use meshmq_proto::tables::{
    AuthUser, AuthUserDelete, AuthUserSet, PasswordHash, RejectReason, op::Kind,
};

use super::Tables;
use super::tests::op;

fn user(id: &str, superuser: bool) -> AuthUser {
    AuthUser {
        user_id: id.into(),
        is_superuser: superuser,
        password: Some(PasswordHash {
            name: "sha256".into(),
            salt_position: "suffix".into(),
            hash: "00".repeat(32),
            salt: "salt".into(),
            ..Default::default()
        }),
    }
}

fn set(t: &mut Tables, index: u64, u: AuthUser) -> bool {
    let r = t.apply(index, &op(Kind::AuthUserSet(AuthUserSet { user: Some(u) })));
    super::rejection(&r).is_none()
}

#[test]
fn users_are_set_replaced_and_deleted() {
    let mut t = Tables::new();
    assert!(set(&mut t, 1, user("alice", false)));
    assert!(set(&mut t, 2, user("bob", false)));
    assert!(set(&mut t, 3, user("alice", true)));
    assert_eq!(t.auth_user_count(), 2);
    assert!(t.auth_user("alice").is_some_and(|u| u.is_superuser));
    let r = t.apply(
        4,
        &op(Kind::AuthUserDelete(AuthUserDelete {
            user_id: "alice".into(),
        })),
    );
    assert!(super::rejection(&r).is_none());
    assert!(t.auth_user("alice").is_none());
    // Deleting an absent user is not an error.
    let r = t.apply(
        5,
        &op(Kind::AuthUserDelete(AuthUserDelete {
            user_id: "nobody".into(),
        })),
    );
    assert!(super::rejection(&r).is_none());
    assert_eq!(t.auth_user_count(), 1);
}

#[test]
fn unusable_rows_are_refused_and_change_nothing() {
    let mut t = Tables::new();
    assert!(set(&mut t, 1, user("alice", false)));
    let before = t.snapshot();
    let no_password = AuthUser {
        password: None,
        ..user("alice", true)
    };
    let unknown_algorithm = AuthUser {
        password: Some(PasswordHash {
            name: "md4".into(),
            ..Default::default()
        }),
        ..user("alice", true)
    };
    let empty_id = user("", true);
    let not_hex = AuthUser {
        password: Some(PasswordHash {
            name: "sha256".into(),
            hash: "not hex".into(),
            ..Default::default()
        }),
        ..user("alice", true)
    };
    let too_costly = AuthUser {
        password: Some(PasswordHash {
            name: "bcrypt".into(),
            hash: "$2b$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW".into(),
            ..Default::default()
        }),
        ..user("alice", true)
    };
    for bad in [
        no_password,
        unknown_algorithm,
        empty_id,
        not_hex,
        too_costly,
    ] {
        let r = t.apply(2, &op(Kind::AuthUserSet(AuthUserSet { user: Some(bad) })));
        assert_eq!(
            super::rejection(&r).map(|(reason, _)| reason),
            Some(RejectReason::Invalid)
        );
    }
    let r = t.apply(2, &op(Kind::AuthUserSet(AuthUserSet { user: None })));
    assert!(super::rejection(&r).is_some());
    let mut after = t.snapshot();
    after.applied_index = before.applied_index;
    assert_eq!(after, before);
}

#[test]
fn pages_follow_id_order_and_snapshots_keep_every_user() {
    let mut t = Tables::new();
    for (i, id) in ["d", "a", "c", "b", "e"].iter().enumerate() {
        assert!(set(&mut t, i as u64 + 1, user(id, false)));
    }
    let ids = |v: Vec<&AuthUser>| v.iter().map(|u| u.user_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(t.auth_users_page(None, 2)), ["a", "b"]);
    assert_eq!(ids(t.auth_users_page(Some("b"), 2)), ["c", "d"]);
    assert_eq!(ids(t.auth_users_page(Some("d"), 10)), ["e"]);
    let copy = Tables::from_snapshot(&t.snapshot());
    assert_eq!(copy, t);
    assert_eq!(copy.auth_user_count(), 5);
    // A snapshot row that apply would refuse is skipped, not a panic.
    let mut snap = t.snapshot();
    snap.auth_users.push(user("", false));
    assert_eq!(Tables::from_snapshot(&snap).auth_user_count(), 5);
}

#[test]
fn an_imported_bcrypt_row_without_salt_rounds_applies() {
    let mut t = Tables::new();
    let imported = AuthUser {
        password: Some(PasswordHash {
            name: "bcrypt".into(),
            hash: "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW".into(),
            ..Default::default()
        }),
        ..user("imported", false)
    };
    assert!(set(&mut t, 1, imported));
}

#[test]
fn scram_rows_apply_and_bad_ones_are_refused() {
    use crate::auth::scram::{self, ScramAlgorithm};
    let mut t = Tables::new();
    let creds = scram::credentials(ScramAlgorithm::Sha256, b"pencil", b"salt", 2).expect("made");
    let row = |p: PasswordHash| AuthUser {
        user_id: "carol".into(),
        is_superuser: false,
        password: Some(p),
    };
    assert!(set(&mut t, 1, row(scram::to_row(&creds))));
    let stored = t.auth_user("carol").and_then(|u| u.password.clone());
    assert_eq!(
        stored.as_ref().map(scram::from_row),
        Some(Ok(creds.clone()))
    );
    let short = PasswordHash {
        scram_server_key: vec![1; 5].into(),
        ..scram::to_row(&creds)
    };
    assert!(!set(&mut t, 2, row(short)), "a key of the wrong length");
    let zero = PasswordHash {
        scram_iterations: 0,
        ..scram::to_row(&creds)
    };
    assert!(!set(&mut t, 3, row(zero)), "no iterations");
    assert_eq!(
        t.auth_user("carol").and_then(|u| u.password.clone()),
        stored,
        "refusals changed nothing"
    );
}
