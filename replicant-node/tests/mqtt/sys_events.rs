//! The broker's own `$SYS` topics (`[sys_topics]`): client `connected` / `disconnected`
//! events with EMQX's JSON fields (QoS 0, not retained), the periodic `stats/...`,
//! `metrics/...` and heartbeat topics on their configured intervals, an interval turned
//! off, client ids that cannot be a topic level (skipped and counted), and authorization
//! deciding who may subscribe to `$SYS`. Behind the round-robin proxy (`mqtt_rr`) the
//! watcher and the client usually sit on different replicants: the events cross nodes.

use std::time::{Duration, Instant};

use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{Properties, Publish, QoS, ReasonCode};
use meshmq_shared::config::{AuthorizationConfig, Config};
use serde_json::{Value, json};

use crate::common::raw::{RawClient, connect_packet, sub_opts};
use crate::common::{self, QUIET, TestBroker, WAIT, metric_sum, metrics_text};

/// The next PUBLISH on `sub` as JSON, with its topic.
async fn recv_json(sub: &mut RawClient) -> (Publish, Value) {
    let p = sub.recv_publish().await;
    let v: Value = serde_json::from_slice(&p.payload)
        .unwrap_or_else(|e| panic!("{}: payload is not JSON ({e}): {:?}", p.topic, p.payload));
    (p, v)
}

/// A watcher of every event of `client_id`.
async fn watch_events(b: &TestBroker, client_id: &str) -> RawClient {
    let mut w = RawClient::connect(b.mqtt_addr(), V5, &common::unique("sys-watch")).await;
    w.subscribe(
        &format!("$SYS/brokers/+/clients/{client_id}/+"),
        QoS::AtMostOnce,
    )
    .await;
    w
}

#[tokio::test]
async fn connected_and_disconnected_events_carry_emqx_fields() {
    let b = common::broker().await;
    let id = common::unique("sys-ev");
    let mut w = watch_events(&b, &id).await;
    let mut connect = connect_packet(V5, &id);
    connect.username = Some("ev-user".into());
    connect.keep_alive = 42;
    connect.properties.session_expiry_interval = Some(30);
    let (c, ack) = RawClient::connect_with(b.mqtt_addr(), connect).await;
    assert_eq!(ack.code, ReasonCode::Success);
    let (p, v) = recv_json(&mut w).await;
    assert!(
        p.topic.starts_with("$SYS/brokers/")
            && p.topic.ends_with(&format!("/clients/{id}/connected")),
        "{}",
        p.topic
    );
    assert!(!p.retain, "events are not retained");
    assert_eq!(p.qos, QoS::AtMostOnce);
    assert_eq!(v["clientid"], id.as_str());
    assert_eq!(v["username"], "ev-user");
    assert_eq!(v["ipaddress"], "127.0.0.1");
    assert_eq!(
        (v["proto_name"].as_str(), v["proto_ver"].as_u64()),
        (Some("MQTT"), Some(5))
    );
    assert_eq!(v["keepalive"], 42);
    assert_eq!(v["clean_start"], true);
    assert_eq!(v["expiry_interval"], 30);
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    let at = v["connected_at"].as_u64().expect("connected_at in ms");
    assert!(at <= now_ms && now_ms - at < 60_000, "{at} vs {now_ms}");
    assert!(v["ts"].as_u64().expect("ts") >= at);
    c.disconnect(ReasonCode::Success).await;
    let (p, v) = recv_json(&mut w).await;
    assert!(
        p.topic.ends_with(&format!("/clients/{id}/disconnected")),
        "{}",
        p.topic
    );
    assert_eq!(v["clientid"], id.as_str());
    assert_eq!(v["username"], "ev-user");
    assert_eq!(v["reason"], "normal");
    let gone = v["disconnected_at"].as_u64().expect("disconnected_at");
    assert!(gone >= at && v["ts"].as_u64() >= Some(gone), "{v}");
}

#[tokio::test]
async fn a_dropped_3_1_1_client_is_reported_with_its_reason() {
    let b = common::broker().await;
    let id = common::unique("sys-drop");
    let mut w = watch_events(&b, &id).await;
    let c = RawClient::connect(b.mqtt_addr(), V311, &id).await;
    let (p, v) = recv_json(&mut w).await;
    assert!(p.topic.ends_with("/connected"), "{}", p.topic);
    assert_eq!(
        (v["proto_name"].as_str(), v["proto_ver"].as_u64()),
        (Some("MQTT"), Some(4))
    );
    assert!(v["username"].is_null(), "{v}");
    drop(c); // no DISCONNECT
    let (p, v) = recv_json(&mut w).await;
    assert!(p.topic.ends_with("/disconnected"), "{}", p.topic);
    assert_eq!(v["reason"], "tcp_closed");
}

#[tokio::test]
async fn client_ids_that_are_not_one_topic_level_are_skipped_and_counted() {
    let b = common::broker().await;
    let mut w = RawClient::connect(b.mqtt_addr(), V5, &common::unique("sys-watch")).await;
    w.subscribe("$SYS/brokers/+/clients/#", QoS::AtMostOnce)
        .await;
    let counted = |text: &str| {
        metric_sum(
            text,
            "meshmq_messages_dropped_total",
            &[("reason", "sys_event_client_id")],
        )
        .unwrap_or(0.0)
    };
    let before = counted(&metrics_text(&b).await);
    let mut bad = Vec::new();
    for prefix in ["sys+plus", "sys#hash", "sys/slash"] {
        bad.push(RawClient::connect(b.mqtt_addr(), V5, &common::unique(prefix)).await);
    }
    let marker = common::unique("sys-marker");
    let _m = RawClient::connect(b.mqtt_addr(), V5, &marker).await;
    let (p, v) = recv_json(&mut w).await;
    assert_eq!(v["clientid"], marker.as_str(), "first event: {}", p.topic);
    w.expect_no_publish(QUIET).await;
    let after = counted(&metrics_text(&b).await);
    assert!(
        after >= before + 3.0,
        "3 skipped events counted: {before} -> {after}"
    );
}

/// `[sys_topics]` with `msg` and `heartbeat` intervals.
fn intervals(msg: &'static str, heartbeat: &'static str) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        c.sys_topics.sys_msg_interval = msg.into();
        c.sys_topics.sys_heartbeat_interval = heartbeat.into();
    }
}

/// Hands every PUBLISH on `sub` to `check` until it returns true; false when `deadline`
/// passes first.
async fn collect_until(
    sub: &mut RawClient,
    deadline: Duration,
    mut check: impl FnMut(&Publish) -> bool,
) -> bool {
    let end = Instant::now() + deadline;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match sub.try_recv_publish(left).await {
            Ok(p) if check(&p) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn stats_metrics_and_heartbeat_come_on_their_intervals() {
    let b = common::start_broker(intervals("1s", "1s")).await;
    let mut w = RawClient::connect(b.mqtt_addr(), V5, &common::unique("sys-stats")).await;
    for f in [
        "$SYS/brokers/+/stats/#",
        "$SYS/brokers/+/metrics/#",
        "$SYS/brokers/+/uptime",
        "$SYS/brokers/+/datetime",
    ] {
        w.subscribe(f, QoS::AtMostOnce).await;
    }
    let want = [
        "/stats/connections/count",
        "/stats/connections/max",
        "/stats/sessions/count",
        "/stats/subscriptions/count",
        "/stats/topics/count",
        "/stats/retained/count",
        "/metrics/messages/received",
        "/metrics/messages/sent",
        "/metrics/messages/dropped",
        "/metrics/bytes/received",
        "/metrics/bytes/sent",
        "/metrics/packets/received",
        "/metrics/packets/subscribe/received",
        "/uptime",
        "/datetime",
    ];
    let mut seen = std::collections::HashSet::new();
    let mut max_conns = 0;
    let all = collect_until(&mut w, WAIT, |p| {
        assert!(!p.retain && p.qos == QoS::AtMostOnce, "{p:?}");
        let text = std::str::from_utf8(&p.payload).expect("utf-8");
        if p.topic.ends_with("/datetime") {
            assert!(text.len() >= 20 && text.ends_with('Z'), "RFC 3339: {text}");
        } else {
            let n: u64 = text
                .parse()
                .unwrap_or_else(|_| panic!("{}: {text}", p.topic));
            if p.topic.ends_with("/stats/connections/count") {
                max_conns = max_conns.max(n);
            }
        }
        if let Some(w) = want.iter().find(|w| p.topic.ends_with(*w)) {
            seen.insert(*w);
        }
        // Behind the proxy other replicants may report first: wait for the watcher's own.
        seen.len() == want.len() && max_conns >= 1
    })
    .await;
    assert!(
        all,
        "within {WAIT:?}, only {seen:?} of {want:?}, connections at most {max_conns} (the watcher's own node counts it)"
    );
}

#[tokio::test]
async fn a_disabled_interval_publishes_nothing_while_the_heartbeat_goes_on() {
    let b = common::start_broker(intervals("disabled", "1s")).await;
    let mut w = RawClient::connect(b.mqtt_addr(), V5, &common::unique("sys-off")).await;
    for f in [
        "$SYS/brokers/+/stats/#",
        "$SYS/brokers/+/metrics/#",
        "$SYS/brokers/+/uptime",
    ] {
        w.subscribe(f, QoS::AtMostOnce).await;
    }
    // Three heartbeats of one node: at least two seconds, twice the interval the stats would
    // have had in the test above.
    let mut per_node = std::collections::HashMap::<String, u32>::new();
    let beat = collect_until(&mut w, WAIT, |p| {
        assert!(
            p.topic.ends_with("/uptime"),
            "nothing but the heartbeat: {}",
            p.topic
        );
        let n = per_node.entry(p.topic.clone()).or_default();
        *n += 1;
        *n >= 3
    })
    .await;
    assert!(beat, "three heartbeats from one node: {per_node:?}");
}

#[tokio::test]
async fn authorization_decides_who_sees_sys_events() {
    let rules = json!({ "sources": [{ "type": "file", "rules": [
        { "permission": "deny", "who": { "username": "no-sys" }, "action": "subscribe",
          "topics": ["$SYS/#"] },
        { "permission": "allow", "who": { "username": "sys-ok" }, "action": "subscribe",
          "topics": ["$SYS/#"] },
    ]}]});
    let b = common::start_broker(move |c: &mut Config| {
        c.authorization = serde_json::from_value::<AuthorizationConfig>(rules).expect("config");
    })
    .await;
    let as_user = |user: &str| {
        let mut c = connect_packet(V5, &common::unique("sys-authz"));
        c.username = Some(user.into());
        c
    };
    let filter = "$SYS/brokers/+/clients/#";
    let (mut denied, _) = RawClient::connect_with(b.mqtt_addr(), as_user("no-sys")).await;
    let ack = denied
        .subscribe_opts(filter, sub_opts(QoS::AtMostOnce), Properties::default())
        .await;
    assert_eq!(ack.reasons, vec![ReasonCode::NotAuthorized]);
    let (mut allowed, _) = RawClient::connect_with(b.mqtt_addr(), as_user("sys-ok")).await;
    allowed.subscribe(filter, QoS::AtMostOnce).await;
    let id = common::unique("sys-seen");
    let _c = RawClient::connect(b.mqtt_addr(), V5, &id).await;
    let (_, v) = recv_json(&mut allowed).await;
    assert_eq!(
        v["clientid"],
        id.as_str(),
        "the allowed subscriber gets the event"
    );
    denied.expect_no_publish(QUIET).await;
}
