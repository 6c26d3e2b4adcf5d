//! Standalone restarts: a broker is stopped with `BrokerHandle::shutdown` and a new one is
//! started on the same data directory (its embedded core's redb store). What lived in the
//! tables must come back: retained messages, and persistent sessions rebuilt from the
//! `subscriptions` rows (session present 1, same options and subscription identifiers, shared
//! groups, no retained replay). What must not come back: a session the client discards with
//! clean start, and a session whose expiry ran out while the node was down.
//!
//! Every wait has a deadline; the only sleeps bound a window in which nothing may arrive.

// The shared helpers re-export more of rumqttc than these tests use.
#[allow(unused_imports)]
mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meshmq_shared::codec::ProtocolVersion::{self, V5, V311};
use meshmq_shared::codec::{Connect, Properties, Publish, QoS, ReasonCode};
use replicant_node::{Broker, BrokerHandle};

use common::raw::{RawClient, connect_packet, sub_opts};
use common::{QUIET, WAIT, metric_sum, metrics_text, test_config, unique, wait_until};

/// Starts a broker whose data directory (embedded core store, certificates) is `dir`.
///
/// In one process, the previous broker's store lock is released only once the last task
/// holding the embedded core has observed the shutdown and dropped it, which may be just
/// after `BrokerHandle::shutdown` returned: "already open" is retried until [`WAIT`].
async fn start_on(dir: &Path) -> BrokerHandle {
    start_on_with(dir, |_| {}).await
}

/// [`start_on`] with `tweak` applied to the configuration.
async fn start_on_with(
    dir: &Path,
    tweak: impl Fn(&mut meshmq_shared::config::Config),
) -> BrokerHandle {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut config = test_config();
        config.node.data_dir = dir.to_path_buf();
        tweak(&mut config);
        match Broker::builder(config).start().await {
            Ok(b) => return b,
            Err(e) if format!("{e:#}").contains("already open") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("broker starts on {}: {e:#}", dir.display()),
        }
    }
}

/// A CONNECT with clean start 0 (3.1.1: clean session 0; 5.0: `expiry` seconds).
fn resume(v: ProtocolVersion, id: &str, expiry: u32) -> Connect {
    let mut c = connect_packet(v, id);
    c.clean_start = false;
    if v.is_v5() {
        c.properties.session_expiry_interval = Some(expiry);
    }
    c
}

/// Subscription properties carrying one subscription identifier.
fn with_sub_id(id: u32) -> Properties {
    Properties {
        subscription_identifiers: vec![id],
        ..Properties::default()
    }
}

/// The stored `subscriptions` filters of `client_id`, sorted.
fn stored_filters(b: &BrokerHandle, client_id: &str) -> Vec<String> {
    let mut filters: Vec<String> = b.core().read(|t| {
        t.subscriptions(client_id)
            .map(|(f, _)| f.to_owned())
            .collect()
    });
    filters.sort();
    filters
}

fn payload(p: &Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test]
async fn retained_messages_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start_on(dir.path()).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &unique("rp")).await;
    for (topic, body) in [("keep/a", "A"), ("keep/b", "B"), ("keep/b", "")] {
        let rc = publisher.publish(topic, body, QoS::AtLeastOnce, true).await;
        assert_eq!(rc, ReasonCode::Success, "PUBACK for {topic}");
    }
    drop(publisher);
    b.shutdown().await;

    let b = start_on(dir.path()).await;
    let mut sub = RawClient::connect(b.mqtt_addr(), V5, &unique("rs")).await;
    sub.subscribe("keep/#", QoS::AtLeastOnce).await;
    let p = sub.recv_publish().await;
    assert_eq!((p.topic.as_str(), payload(&p).as_str()), ("keep/a", "A"));
    assert!(p.retain, "delivered as retained");
    sub.expect_no_publish(QUIET).await;
    b.shutdown().await;
}

/// Built-in authorization rules live in the cluster tables: written through the API, they
/// are enforced again after the node restarts, without being written again.
#[tokio::test]
async fn built_in_authorization_rules_survive_a_restart() {
    let builtin = |c: &mut meshmq_shared::config::Config| {
        c.authorization.sources =
            vec![meshmq_shared::config::AuthzSourceConfig::BuiltInDatabase { enable: true }];
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start_on_with(dir.path(), builtin).await;
    let http = b.http_addr().expect("http");
    let body = r#"{"rules": [{"topic": "locked/#", "permission": "deny", "action": "all"}]}"#;
    let (status, text) = common::http_call(
        http,
        "POST",
        "/api/v5/authorization/sources/built_in_database/rules/all",
        body,
        None,
    )
    .await;
    assert_eq!(status, 204, "{text}");
    b.shutdown().await;

    let b = start_on_with(dir.path(), builtin).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, &unique("locked")).await;
    assert_eq!(
        c.publish("locked/x", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::NotAuthorized,
        "the stored rule is enforced after the restart"
    );
    assert_eq!(
        c.publish("open/x", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );
    b.shutdown().await;
}

/// Subscribes `c` to `a/+` (QoS 1) and `$share/g/b/#` (QoS 1); on 5.0 with subscription
/// identifiers 42 and 7. Returns the retained message `a/+` replayed at once.
async fn subscribe_both(c: &mut RawClient) -> Publish {
    let v5 = c.version.is_v5();
    let props = |id| {
        if v5 {
            with_sub_id(id)
        } else {
            Properties::default()
        }
    };
    for (filter, id) in [("a/+", 42), ("$share/g/b/#", 7)] {
        let ack = c
            .subscribe_opts(filter, sub_opts(QoS::AtLeastOnce), props(id))
            .await;
        assert_eq!(
            ack.reasons,
            [ReasonCode::GrantedQoS1],
            "SUBACK for {filter}"
        );
    }
    c.recv_publish().await
}

/// Persistent session across a restart: 5.0 with the client connected while the broker
/// stops, 3.1.1 with the client disconnected first.
#[tokio::test]
async fn persistent_session_survives_a_restart() {
    for v in [V5, V311] {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = unique("persist");
        let b = start_on(dir.path()).await;
        let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &unique("pp")).await;
        publisher
            .publish("a/r", "old", QoS::AtLeastOnce, true)
            .await;
        let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), resume(v, &id, 3600)).await;
        assert!(!ack.session_present, "{v:?}: new session");
        let replayed = subscribe_both(&mut c).await;
        assert_eq!(replayed.topic, "a/r", "{v:?}: retained sent on SUBSCRIBE");
        c.ack(&replayed).await;
        if v.is_v5() {
            drop(publisher);
            b.shutdown().await;
            c.expect_closed_with(&[ReasonCode::ServerShuttingDown])
                .await;
        } else {
            c.disconnect(ReasonCode::Success).await;
            let disconnected = || b.core().read(|t| t.registry(&id).map(|r| r.connected));
            assert!(wait_until(WAIT, || disconnected() == Some(false)).await);
            drop(publisher);
            b.shutdown().await;
        }

        let b = start_on(dir.path()).await;
        assert_eq!(stored_filters(&b, &id), ["$share/g/b/#", "a/+"], "{v:?}");
        let restored_before = restored_total(&b).await;
        let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), resume(v, &id, 3600)).await;
        assert_eq!(ack.code, ReasonCode::Success);
        assert!(ack.session_present, "{v:?}: session present after restart");
        assert!(restored_total(&b).await >= restored_before + 1.0, "{v:?}");
        let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &unique("pp")).await;
        publisher
            .publish("a/x", "ax", QoS::AtLeastOnce, false)
            .await;
        let p = c.recv_publish().await;
        assert_eq!(
            (p.topic.as_str(), payload(&p).as_str()),
            ("a/x", "ax"),
            "{v:?}: first PUBLISH is the live one (no retained replay on resume)"
        );
        assert_eq!(p.qos, QoS::AtLeastOnce, "{v:?}");
        assert!(!p.retain, "{v:?}");
        let want_ids: Vec<u32> = if v.is_v5() { vec![42] } else { vec![] };
        assert_eq!(p.properties.subscription_identifiers, want_ids, "{v:?}");
        c.ack(&p).await;
        publisher
            .publish("b/y", "by", QoS::AtLeastOnce, false)
            .await;
        let p = c.recv_publish().await;
        assert_eq!((p.topic.as_str(), payload(&p).as_str()), ("b/y", "by"));
        assert_eq!(p.qos, QoS::AtLeastOnce, "{v:?}");
        let want_ids: Vec<u32> = if v.is_v5() { vec![7] } else { vec![] };
        assert_eq!(p.properties.subscription_identifiers, want_ids, "{v:?}");
        c.ack(&p).await;
        c.expect_no_publish(QUIET).await;
        assert_eq!(
            stored_filters(&b, &id),
            ["$share/g/b/#", "a/+"],
            "{v:?}: rows untouched by the restore"
        );
        b.shutdown().await;
    }
}

async fn restored_total(b: &BrokerHandle) -> f64 {
    let text = metrics_text(b).await;
    metric_sum(&text, "meshmq_sessions_restored_total", &[]).unwrap_or(0.0)
}

#[tokio::test]
async fn clean_start_after_a_restart_discards_the_stored_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = unique("clean");
    let b = start_on(dir.path()).await;
    let (mut c, _) = RawClient::connect_with(b.mqtt_addr(), resume(V5, &id, 3600)).await;
    c.subscribe("a/+", QoS::AtLeastOnce).await;
    c.subscribe("$share/g/b/#", QoS::AtLeastOnce).await;
    b.shutdown().await;
    c.expect_closed_with(&[ReasonCode::ServerShuttingDown])
        .await;

    let b = start_on(dir.path()).await;
    assert_eq!(stored_filters(&b, &id), ["$share/g/b/#", "a/+"]);
    let mut fresh = resume(V5, &id, 3600);
    fresh.clean_start = true;
    let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), fresh).await;
    assert_eq!(ack.code, ReasonCode::Success);
    assert!(!ack.session_present, "clean start: session present 0");
    assert!(
        stored_filters(&b, &id).is_empty(),
        "the claim cleared the stored subscriptions"
    );
    c.subscribe("marker", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &unique("cp")).await;
    for topic in ["a/x", "b/y", "marker"] {
        publisher
            .publish(topic, topic, QoS::AtLeastOnce, false)
            .await;
    }
    let p = c.recv_publish().await;
    assert_eq!(p.topic, "marker", "nothing on the discarded filters");
    c.expect_no_publish(QUIET).await;
    assert_eq!(stored_filters(&b, &id), ["marker"]);
    b.shutdown().await;
}

#[tokio::test]
async fn session_expiry_runs_while_the_node_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = unique("expiry");
    let b = start_on(dir.path()).await;
    let (mut c, _) = RawClient::connect_with(b.mqtt_addr(), resume(V5, &id, 1)).await;
    c.subscribe("a/+", QoS::AtLeastOnce).await;
    c.disconnect(ReasonCode::Success).await;
    let disconnected = || b.core().read(|t| t.registry(&id).map(|r| r.connected));
    assert!(wait_until(WAIT, || disconnected() == Some(false)).await);
    b.shutdown().await;

    let b = start_on(dir.path()).await;
    assert_eq!(
        stored_filters(&b, &id),
        ["a/+"],
        "stopped before the 1 s expiry ran out"
    );
    let disconnected_at = b
        .core()
        .read(|t| t.registry(&id).map(|r| r.disconnected_at_ms))
        .expect("the disconnected session's registry row survives the restart");
    // The condition is wall-clock time itself: 1 s of expiry, plus a margin.
    assert!(
        wait_until(Duration::from_secs(10), || now_ms()
            > disconnected_at + 1_500)
        .await
    );
    let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), resume(V5, &id, 1)).await;
    assert_eq!(ack.code, ReasonCode::Success);
    assert!(
        !ack.session_present,
        "the session expired while the node was down"
    );
    assert!(stored_filters(&b, &id).is_empty(), "expired rows cleared");
    c.subscribe("marker", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &unique("ep")).await;
    publisher
        .publish("a/x", "ax", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("marker", "m", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(c.recv_publish().await.topic, "marker");
    b.shutdown().await;
}
