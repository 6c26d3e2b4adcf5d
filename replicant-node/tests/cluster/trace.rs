//! Online traces (`/api/v5/trace`): a client traced by client id across a takeover from r1
//! to r2 has its events in both nodes' files (connect, subscribe, publish in and out, the
//! takeover, the disconnect with its reason); traces by topic and by IP address record only
//! what they match; stop, delete, list, the count bound, auth and bad input answer as EMQX.
//!
//! The trace is created through r1 only (a row of the `settings` table: every node records
//! it) and downloaded through r1 with both nodes' files (the fan-out).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meshmq_shared::codec::{Connect, ProtocolVersion, QoS, ReasonCode};
use serde_json::{Value, json};

use replicant_node::ctl::{Ctl, CtlCommand, Trace};

use crate::common::api_client::Api;
use crate::common::raw::{RawClient, connect_packet};
use crate::common::unique;
use crate::harness::{Cluster, WAIT, fast_timings, serial};

const KEY: &str = "trace-test-api-key-0123456789";

fn persistent(id: &str) -> Connect {
    let mut c = connect_packet(ProtocolVersion::V5, id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(3600);
    c
}

fn api(addr: Option<SocketAddr>) -> Api {
    Api::new(addr.expect("http listener")).with_key(Some(KEY))
}

async fn create(api: &Api, body: Value) -> (u16, Value) {
    let body = body.to_string();
    api.call(
        "POST",
        "/api/v5/trace",
        Some("application/json"),
        body.as_bytes(),
    )
    .await
}

async fn download(api: &Api, name: &str) -> String {
    let (status, body) = api
        .raw("GET", &format!("/api/v5/trace/{name}/download"), None, b"")
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    String::from_utf8_lossy(&body).into_owned()
}

/// Waits until the download of `name` holds every one of `wanted`; returns it.
async fn download_with(api: &Api, name: &str, wanted: &[&str]) -> String {
    let end = Instant::now() + WAIT;
    loop {
        let last = download(api, name).await;
        if wanted.iter().all(|w| last.contains(w)) {
            return last;
        }
        assert!(
            Instant::now() < end,
            "the trace {name} should hold {wanted:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // polling with a deadline
    }
}

/// Waits until `api`'s node lists exactly the traces `names`.
async fn wait_listed(api: &Api, names: &[&str]) {
    let end = Instant::now() + WAIT;
    loop {
        let (_, list) = api.call("GET", "/api/v5/trace", None, b"").await;
        let now: Vec<&str> = list
            .as_array()
            .map(|l| l.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default();
        if now == names {
            return;
        }
        assert!(Instant::now() < end, "{names:?} listed: {list}");
        tokio::time::sleep(Duration::from_millis(20)).await; // polling with a deadline
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_traced_across_a_takeover_has_its_events_on_both_nodes() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let keyed = |c: &mut meshmq_shared::config::Config| c.listeners.api_key = Some(KEY.into());
    let r1 = cluster.start_replicant_with("r1", keyed).await;
    let r2 = cluster.start_replicant_with("r2", keyed).await;
    let (a1, a2) = (api(r1.http_addr()), api(r2.http_addr()));
    let id = unique("traced");
    let def = json!({"name": "move", "type": "clientid", "clientid": id, "payload_encode": "text"});
    let (status, t) = create(&a1, def).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(
        (t["status"].as_str(), t["clientid"].as_str()),
        (Some("running"), Some(id.as_str()))
    );
    wait_listed(&a2, &["move"]).await;
    let topic = format!("tr/{id}");
    let (mut old, ack) = RawClient::connect_with(r1.mqtt_addr(), persistent(&id)).await;
    assert!(!ack.session_present);
    old.subscribe(&topic, QoS::AtLeastOnce).await;
    old.publish(&topic, "hello", QoS::AtLeastOnce, false).await;
    assert_eq!(old.recv_publish().await.topic, topic, "its own message");
    let (_new, ack) = RawClient::connect_with(r2.mqtt_addr(), persistent(&id)).await;
    assert!(ack.session_present, "the session came along");
    old.expect_closed_with(&[ReasonCode::SessionTakenOver])
        .await;
    let sub = format!("event=subscribe filter={topic:?} qos=1");
    let pub_in =
        format!("event=publish_in topic={topic:?} qos=1 size=5 retain=false payload=\"hello\"");
    let pub_out = format!("event=publish_out topic={topic:?} qos=1 size=5");
    // One download through r1: r1's file, then r2's.
    let both = download_with(
        &a1,
        "move",
        &[
            "# meshmq trace move node r1",
            "event=connect username=\"\" proto=5.0",
            "event=connack reason=0x00 session_present=false",
            &sub,
            &pub_in,
            &pub_out,
            "event=disconnect by=taken_over reason=0x8e",
            "# meshmq trace move node r2",
            "event=session_takeover from=\"r1\"",
            "event=connack reason=0x00 session_present=true",
        ],
    )
    .await;
    let (on_r1, on_r2) = both
        .split_once("# meshmq trace move node r2")
        .expect("r2's section after r1's");
    assert!(
        on_r1.contains("event=publish_in") && !on_r2.contains("event=publish_in"),
        "{both}"
    );
    for (node, text) in [("r1", on_r1), ("r2", on_r2)] {
        for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
            assert!(
                line.contains(&format!("node=\"{node}\" clientid=\"{id}\"")),
                "{line}"
            );
        }
    }
    // One node's file, asked of the other node (forwarded); sizes of both in the list.
    let (status, body) = a1
        .raw("GET", "/api/v5/trace/move/download?node=r2", None, b"")
        .await;
    let only_r2 = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{only_r2}");
    assert!(only_r2.starts_with("# meshmq trace move node r2") && !only_r2.contains("node r1"));
    let (_, list) = a1.call("GET", "/api/v5/trace", None, b"").await;
    for node in ["r1", "r2"] {
        assert!(
            list[0]["log_size"][node].as_u64().is_some_and(|n| n > 0),
            "{list}"
        );
    }
    // Deleted through r1: gone on r2 too.
    let (status, _) = a1.raw("DELETE", "/api/v5/trace/move", None, b"").await;
    assert_eq!(status, 204);
    wait_listed(&a2, &[]).await;
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_by_topic_and_ip_stop_delete_list_and_bounds() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster
        .start_replicant_with("r1", |c| {
            c.listeners.api_key = Some(KEY.into());
            c.trace.max_traces = 3;
        })
        .await;
    let a = api(r1.http_addr());
    // Auth, media type and bad input.
    let anon = a.with_key(None);
    for (m, p) in [
        ("GET", "/api/v5/trace"),
        ("DELETE", "/api/v5/trace"),
        ("PUT", "/api/v5/trace/x/stop"),
        ("GET", "/api/v5/trace/x/download"),
        ("GET", "/api/v5/log/level"),
    ] {
        let (status, _) = anon.raw(m, p, None, b"").await;
        assert_eq!(status, 401, "{m} {p}");
    }
    let (status, _) = a
        .raw("POST", "/api/v5/trace", Some("text/plain"), b"{}")
        .await;
    assert_eq!(status, 415);
    for body in [
        json!({"name": "bad name", "type": "clientid", "clientid": "c"}),
        json!({"name": "t", "type": "topic", "topic": "a/#/b"}),
        json!({"name": "t", "type": "ip_address", "ip_address": "300.1.1.1"}),
        json!({"name": "t", "type": "clientid", "clientid": "c", "end_at": "2001-01-01T00:00:00Z"}),
        json!({"name": "t", "type": "clientid"}),
    ] {
        let (status, answer) = create(&a, body.clone()).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some("BAD_REQUEST")),
            "{body}: {answer}"
        );
        assert!(!answer["message"].as_str().unwrap_or("").is_empty());
    }
    let (status, answer) = a
        .call(
            "PUT",
            "/api/v5/log/level",
            Some("application/json"),
            br#"{"level":"loud"}"#,
        )
        .await;
    // The in-process broker has no logger of its own: 503; a real node parses first (400).
    assert!(status == 400 || status == 503, "{status} {answer}");
    // By topic: only publishes and subscriptions matching the filter.
    let base = unique("tt");
    let (status, t) = create(
        &a,
        json!({"name": "by_topic", "type": "topic", "topic": format!("{base}/+")}),
    )
    .await;
    assert_eq!(status, 200, "{t}");
    let (status, t) = create(
        &a,
        json!({"name": "by_ip", "type": "ip_address", "ip_address": "127.0.0.1"}),
    )
    .await;
    assert_eq!(status, 200, "{t}");
    let (status, t) = create(
        &a,
        json!({"name": "later", "type": "clientid", "clientid": "nobody",
        "start_at": 4_000_000_000u64, "end_at": 4_000_000_600u64}),
    )
    .await;
    assert_eq!(
        (status, t["status"].as_str()),
        (200, Some("waiting")),
        "{t}"
    );
    let (status, t) = create(
        &a,
        json!({"name": "fourth", "type": "clientid", "clientid": "c4"}),
    )
    .await;
    assert_eq!(status, 400, "over trace.max_traces: {t}");
    let (status, t) = create(
        &a,
        json!({"name": "by_topic", "type": "clientid", "clientid": "c5"}),
    )
    .await;
    assert_eq!(
        (status, t["code"].as_str()),
        (409, Some("ALREADY_EXISTS")),
        "{t}"
    );
    let id = unique("tc");
    let mut c = RawClient::connect(r1.mqtt_addr(), ProtocolVersion::V5, &id).await;
    c.subscribe(&format!("{base}/in"), QoS::AtMostOnce).await;
    c.publish(&format!("{base}/in"), "x", QoS::AtLeastOnce, false)
        .await;
    c.publish("elsewhere/out", "y", QoS::AtLeastOnce, false)
        .await;
    let by_topic = download_with(
        &a,
        "by_topic",
        &[
            "event=subscribe",
            "event=publish_in",
            "event=publish_out",
            "payload=******",
        ],
    )
    .await;
    assert!(
        !by_topic.contains("elsewhere/out") && !by_topic.contains("event=connect"),
        "{by_topic}"
    );
    let by_ip = download_with(&a, "by_ip", &["event=connect", "\"elsewhere/out\""]).await;
    assert!(by_ip.contains(&format!("clientid=\"{id}\"")), "{by_ip}");
    // The same through `replicant-node ctl trace`.
    let ctl = |command| Ctl {
        api: r1.http_addr().expect("http"),
        api_key: Some(KEY.into()),
        api_key_file: None,
        command: CtlCommand::Trace(command),
    };
    let listed = replicant_node::ctl::run(ctl(Trace::List))
        .await
        .expect("ctl trace list");
    assert!(
        listed.contains("\"by_ip\"") && listed.contains("\"running\""),
        "{listed}"
    );
    let printed = replicant_node::ctl::run(ctl(Trace::Download {
        name: "by_ip".into(),
    }))
    .await
    .expect("ctl trace download");
    assert!(printed.contains("event=connect"), "{printed}");
    let missing = replicant_node::ctl::run(ctl(Trace::Stop {
        name: "nope".into(),
    }))
    .await;
    assert!(missing.is_err_and(|e| e.to_string().contains("404")));
    // List with status and this node's log size; stop; delete.
    let (status, list) = a.call("GET", "/api/v5/trace", None, b"").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["by_ip", "by_topic", "later"]);
    assert!(
        list[1]["log_size"]["r1"].as_u64().is_some_and(|n| n > 0),
        "{list}"
    );
    let (status, t) = a.call("PUT", "/api/v5/trace/by_ip/stop", None, b"").await;
    assert_eq!(
        (status, t["status"].as_str()),
        (200, Some("stopped")),
        "{t}"
    );
    // Stopping drops the recorder before answering: a publish acknowledged afterwards is
    // not recorded (its line would have been queued before the PUBACK).
    c.publish("elsewhere/after-stop", "z", QoS::AtLeastOnce, false)
        .await;
    let after = download(&a, "by_ip").await;
    assert!(
        !after.contains("after-stop") && after.contains("elsewhere/out"),
        "{after}"
    );
    let (status, _) = a.raw("DELETE", "/api/v5/trace/by_topic", None, b"").await;
    assert_eq!(status, 204);
    let (status, _) = a.raw("DELETE", "/api/v5/trace/by_topic", None, b"").await;
    assert_eq!(status, 404);
    let (status, _) = a
        .raw("GET", "/api/v5/trace/by_topic/download", None, b"")
        .await;
    assert_eq!(status, 404);
    let (status, view) = a
        .call("GET", "/api/v5/trace/by_ip/log?bytes=10", None, b"")
        .await;
    assert_eq!(
        (status, view["meta"]["bytes"].as_u64()),
        (200, Some(10)),
        "{view}"
    );
    let (status, _) = a.raw("DELETE", "/api/v5/trace", None, b"").await;
    assert_eq!(status, 204);
    let (_, list) = a.call("GET", "/api/v5/trace", None, b"").await;
    assert_eq!(list, json!([]));
    r1.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_name_that_breaks_the_name_rules_is_refused_before_any_path_is_built() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let key = |c: &mut meshmq_shared::config::Config| c.listeners.api_key = Some(KEY.into());
    let r1 = cluster.start_replicant_with("r1", key).await;
    let r2 = cluster.start_replicant_with("r2", key).await;
    let a = api(r1.http_addr());
    let (status, body) = create(&a, json!({"name": "t-ok", "type": "topic", "topic": "x/#"})).await;
    assert_eq!(status, 200, "{body}");
    for name in [
        "..%2F..%2Ft-ok",
        "%2e%2e",
        "%2E%2E%2Ft-ok",
        "t-ok%2F..",
        "a%2Fb",
        "t-ok%00",
    ] {
        for (m, p) in [
            ("GET", format!("/api/v5/trace/{name}/download")),
            ("GET", format!("/api/v5/trace/{name}/download?node=r2")),
            ("GET", format!("/api/v5/trace/{name}/log?node=r2")),
            ("GET", format!("/api/v5/trace/{name}/log")),
            ("PUT", format!("/api/v5/trace/{name}/stop")),
            ("DELETE", format!("/api/v5/trace/{name}")),
        ] {
            let (status, raw) = a.raw(m, &p, None, b"").await;
            let body = String::from_utf8_lossy(&raw);
            assert_eq!(status, 400, "{m} {p}: {body}");
            assert!(body.contains("invalid trace name"), "{m} {p}: {body}");
        }
    }
    // A good name still goes to the other node (the node's name encoded in the query).
    let (status, raw) = a
        .raw("GET", "/api/v5/trace/t-ok/download?node=r2", None, b"")
        .await;
    let body = String::from_utf8_lossy(&raw);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("node r2"), "{body}");
    r2.shutdown().await;
    r1.shutdown().await;
    cluster.stop().await;
}
