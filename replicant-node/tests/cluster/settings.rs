//! The `settings` table is a cluster table held whole by every replicant: a setting written
//! through r1 (`replicant_node::settings`) shows in r2's replica and moves r2's watch;
//! compare-and-set conflicts, invalid input and deletes answer as documented (and map to
//! 409 / 400 API errors); a replicant started later gets the rows too.

use axum::http::StatusCode;
use replicant_node::http::api::ApiError;
use replicant_node::settings::{self, SettingsError};

use crate::common::{unique, wait_until};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_written_on_r1_is_seen_on_r2_and_cas_guards_it() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let (c1, c2) = (r1.ctx(), r2.ctx());
    let ns = "test.kv";
    let key = unique("key/ü");
    let mut watch2 = settings::watch(c2);
    let before = *watch2.borrow_and_update();

    let v = settings::put(c1, ns, &key, b"one".to_vec(), None)
        .await
        .expect("put");
    assert_eq!(v, 1);
    assert_eq!(
        settings::get(c1, ns, &key),
        Some((b"one".to_vec(), 1)),
        "applied on r1 at return"
    );
    let seen = wait_until(WAIT, || {
        settings::get(c2, ns, &key) == Some((b"one".to_vec(), 1))
    })
    .await;
    assert!(seen, "r2's replica shows the setting");
    assert!(*watch2.borrow_and_update() > before, "r2's watch moved");

    // Compare-and-set through r2: the wrong version is a conflict and changes nothing.
    let err = settings::put(c2, ns, &key, b"two".to_vec(), Some(0))
        .await
        .expect_err("exists");
    assert!(
        matches!(
            err,
            SettingsError::Conflict {
                expected: 0,
                current: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(ApiError::from(err).status, StatusCode::CONFLICT);
    assert_eq!(
        settings::put(c2, ns, &key, b"two".to_vec(), Some(1))
            .await
            .expect("cas"),
        2
    );
    // r1 may not have applied version 2 yet: an unconditional put still gives version 3.
    assert_eq!(
        settings::put(c1, ns, &key, b"three".to_vec(), None)
            .await
            .expect("put"),
        3
    );
    assert_eq!(settings::get(c1, ns, &key), Some((b"three".to_vec(), 3)));

    // Invalid input: 400, nothing written.
    let err = settings::put(c1, "Bad NS", "k", Vec::new(), None)
        .await
        .expect_err("invalid ns");
    assert!(matches!(err, SettingsError::Invalid(_)), "{err:?}");
    assert_eq!(ApiError::from(err).status, StatusCode::BAD_REQUEST);
    let err = settings::put(c1, ns, "k", vec![0; (1 << 20) + 1], None)
        .await
        .expect_err("big");
    assert!(matches!(err, SettingsError::Invalid(_)), "{err:?}");
    assert_eq!(
        settings::put(c1, ns, "other", b"x".to_vec(), Some(0))
            .await
            .expect("new"),
        1
    );
    let listed: Vec<_> = settings::list(c1, ns)
        .into_iter()
        .map(|(k, _, v)| (k, v))
        .collect();
    let mut want = vec![(key.clone(), 3), ("other".to_owned(), 1)];
    want.sort();
    assert_eq!(listed, want);

    // Delete through r2: conditional on the version, then gone everywhere.
    let err = settings::delete(c2, ns, &key, Some(2))
        .await
        .expect_err("moved on");
    assert!(
        matches!(err, SettingsError::Conflict { expected: 2, .. }),
        "{err:?}"
    );
    assert!(settings::delete(c2, ns, &key, None).await.expect("delete"));
    assert_eq!(settings::get(c2, ns, &key), None);
    let gone = wait_until(WAIT, || settings::get(c1, ns, &key).is_none()).await;
    assert!(gone, "the delete reaches r1");
    assert!(
        !settings::delete(c1, ns, &key, None).await.expect("absent"),
        "nothing to delete"
    );

    // A replicant that starts now gets the table from the cores.
    let r3 = cluster.start_replicant("r3").await;
    let late = wait_until(WAIT, || {
        settings::list(r3.ctx(), ns) == vec![("other".to_owned(), b"x".to_vec(), 1)]
    })
    .await;
    assert!(late, "r3 holds the settings");
    for r in [r1, r2, r3] {
        r.shutdown().await;
    }
    cluster.stop().await;
}
