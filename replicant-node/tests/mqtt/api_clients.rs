//! The clients and subscriptions REST API on a standalone broker: clients listed with
//! EMQX's fields, paging and filters; one client read; kicked (DISCONNECT 0x98, the will
//! sent, the session discarded, connected or not); its subscriptions listed, made and
//! removed on its behalf (a message published through the API then reaches it, retained
//! messages follow a new subscription); `/api/v5/subscriptions` with its filters; the
//! node-local routes; 404 for an unknown client, 400 with a message for bad input.

use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{Packet, QoS, ReasonCode};
use serde_json::{Value, json};

use super::api_messages::{call, enc, keyed_broker, node_name};
use crate::common::raw::{RawClient, connect_packet, will};
use crate::common::{TestBroker, WAIT, metric_sum, metrics_text, unique, wait_until_async};

/// `meshmq_disconnects_total{reason="kicked"}` now (the recorder is shared by the tests of
/// this binary: compare before and after).
async fn kicked_disconnects(b: &TestBroker) -> f64 {
    let text = metrics_text(b).await;
    metric_sum(&text, "meshmq_disconnects_total", &[("reason", "kicked")]).unwrap_or(0.0)
}

/// The data of a list answer.
fn data(v: &Value) -> &Vec<Value> {
    v["data"].as_array().expect("data")
}

/// Ids in a list answer, in order.
fn ids(v: &Value) -> Vec<String> {
    data(v)
        .iter()
        .map(|c| c["clientid"].as_str().unwrap_or("").to_owned())
        .collect()
}

async fn count(b: &TestBroker, query: &str) -> u64 {
    let (status, v) = call(b, "GET", &format!("/api/v5/clients?{query}"), Value::Null).await;
    assert_eq!(status, 200, "{query}: {v}");
    v["meta"]["count"].as_u64().expect("count")
}

#[tokio::test]
async fn clients_are_listed_with_emqx_fields_paging_and_filters() {
    let b = keyed_broker(|_| {}).await;
    let node = node_name(&b).await;
    let prefix = unique("lst");
    let (a, z) = (format!("{prefix}-a"), format!("{prefix}-z"));
    let mut c5 = connect_packet(V5, &z);
    c5.username = Some("sensor-user".into());
    c5.keep_alive = 42;
    let (mut v5, _) = RawClient::connect_with(b.mqtt_addr(), c5).await;
    v5.subscribe("x/1", QoS::AtLeastOnce).await;
    let mut c3 = connect_packet(V311, &a);
    c3.clean_start = false;
    let (_v3, _) = RawClient::connect_with(b.mqtt_addr(), c3).await;
    let (status, v) = call(&b, "GET", "/api/v5/clients", Value::Null).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(ids(&v), [a.clone(), z.clone()], "sorted by client id");
    assert_eq!(
        v["meta"],
        json!({"page": 1, "limit": 100, "count": 2, "hasnext": false, "failed_nodes": []})
    );
    let c = &data(&v)[1];
    for (field, want) in [
        ("username", json!("sensor-user")),
        ("node", json!(node)),
        ("connected", json!(true)),
        ("ip_address", json!("127.0.0.1")),
        ("proto_name", json!("MQTT")),
        ("proto_ver", json!(5)),
        ("keepalive", json!(42)),
        ("clean_start", json!(true)),
        ("subscriptions_cnt", json!(1)),
        ("inflight_cnt", json!(0)),
        ("mqueue_len", json!(0)),
        ("mqueue_dropped", json!(0)),
    ] {
        assert_eq!(c[field], want, "{field} in {c}");
    }
    for field in [
        "port",
        "created_at",
        "connected_at",
        "inflight_max",
        "mqueue_max",
        "expiry_interval",
        "recv_msg",
        "send_msg",
    ] {
        assert!(!c[field].is_null(), "{field} in {c}");
    }
    assert_eq!(data(&v)[0]["proto_ver"], 4);
    // Paging.
    let (_, p1) = call(&b, "GET", "/api/v5/clients?limit=1", Value::Null).await;
    assert_eq!(
        (ids(&p1), p1["meta"]["hasnext"].as_bool()),
        (vec![a.clone()], Some(true))
    );
    let (_, p2) = call(&b, "GET", "/api/v5/clients?limit=1&page=2", Value::Null).await;
    assert_eq!(
        (ids(&p2), p2["meta"]["hasnext"].as_bool()),
        (vec![z.clone()], Some(false))
    );
    let (_, p3) = call(&b, "GET", "/api/v5/clients?limit=1&page=3", Value::Null).await;
    assert!(data(&p3).is_empty());
    // Filters.
    for (query, want) in [
        (format!("clientid={}", enc(&a)), 1),
        (format!("clientid={}&clientid={}", enc(&a), enc(&z)), 2),
        ("username=sensor-user".to_owned(), 1),
        ("like_username=sensor".to_owned(), 1),
        (format!("like_clientid={}", enc(&prefix)), 2),
        ("like_clientid=nomatch".to_owned(), 0),
        ("proto_ver=4".to_owned(), 1),
        ("conn_state=connected".to_owned(), 2),
        ("conn_state=disconnected".to_owned(), 0),
        ("clean_start=false".to_owned(), 1),
        ("ip_address=127.0.0.1".to_owned(), 2),
        ("ip_address=10.0.0.1".to_owned(), 0),
        ("gte_connected_at=2999-01-01T00:00:00Z".to_owned(), 0),
        ("lte_created_at=2999-01-01T00:00:00Z".to_owned(), 2),
        (format!("node={}", enc(&node)), 2),
        ("node=elsewhere".to_owned(), 0),
    ] {
        assert_eq!(count(&b, &query).await, want, "{query}");
    }
    for query in [
        "proto_ver=9",
        "conn_state=idle",
        "clean_start=maybe",
        "ip_address=x",
        "gte_created_at=soon",
        "bogus=1",
        "limit=0",
        "page=0",
    ] {
        let (status, v) = call(&b, "GET", &format!("/api/v5/clients?{query}"), Value::Null).await;
        assert_eq!(status, 400, "{query}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    // One client; unknown ones.
    let (status, one) = call(
        &b,
        "GET",
        &format!("/api/v5/clients/{}", enc(&z)),
        Value::Null,
    )
    .await;
    assert_eq!((status, &one["username"]), (200, &json!("sensor-user")));
    let (status, v) = call(&b, "GET", "/api/v5/clients/nobody", Value::Null).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("CLIENTID_NOT_FOUND"))
    );
    // Node-local routes: counts, slices, another node's name.
    let base = format!("/api/v5/nodes/{}/clients", enc(&node));
    let (status, v) = call(&b, "GET", &format!("{base}?limit=0"), Value::Null).await;
    assert_eq!(
        (status, &v["meta"]["count"], data(&v).len()),
        (200, &json!(2), 0),
        "{v}"
    );
    let (_, v) = call(&b, "GET", &format!("{base}?offset=1&limit=5"), Value::Null).await;
    assert_eq!(ids(&v), std::slice::from_ref(&z));
    let (status, _) = call(&b, "GET", &format!("{base}/{}", enc(&a)), Value::Null).await;
    assert_eq!(status, 200);
    for path in [
        "/api/v5/nodes/other/clients",
        "/api/v5/nodes/other/subscriptions",
    ] {
        let (status, _) = call(&b, "GET", path, Value::Null).await;
        assert_eq!(status, 404, "{path}");
    }
    b.shutdown().await;
}

#[tokio::test]
async fn a_kick_disconnects_sends_the_will_and_discards_the_session() {
    let b = keyed_broker(|_| {}).await;
    let mut watcher = RawClient::connect(b.mqtt_addr(), V5, &unique("watch")).await;
    watcher.subscribe("wills/#", QoS::AtMostOnce).await;
    let id = unique("kicked");
    let mut c = connect_packet(V5, &id);
    c.will = Some(will("wills/kicked", "gone", QoS::AtMostOnce));
    c.properties.session_expiry_interval = Some(300);
    let (mut live, _) = RawClient::connect_with(b.mqtt_addr(), c).await;
    let kicked_before = kicked_disconnects(&b).await;
    let (status, _) = call(
        &b,
        "DELETE",
        &format!("/api/v5/clients/{}", enc(&id)),
        Value::Null,
    )
    .await;
    assert_eq!(status, 204);
    let seen = live.wait_closed(WAIT).await;
    assert!(
        matches!(seen.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::AdministrativeAction),
        "DISCONNECT 0x98, got {seen:?}"
    );
    let counted = wait_until_async(WAIT, || async {
        kicked_disconnects(&b).await > kicked_before
    })
    .await;
    assert!(
        counted,
        "the kick is counted as disconnect reason \"kicked\""
    );
    assert_eq!(&watcher.recv_publish().await.payload[..], b"gone");
    let gone = wait_until_async(WAIT, || async {
        call(
            &b,
            "GET",
            &format!("/api/v5/clients/{}", enc(&id)),
            Value::Null,
        )
        .await
        .0 == 404
    })
    .await;
    assert!(
        gone,
        "the session was discarded (expiry 300 notwithstanding)"
    );
    let (_, ack) = RawClient::connect_with(b.mqtt_addr(), {
        let mut c = connect_packet(V5, &id);
        c.clean_start = false;
        c
    })
    .await;
    assert!(!ack.session_present, "nothing left to resume");
    // A session without a connection is discarded too.
    let away = unique("away");
    let mut c = connect_packet(V5, &away);
    c.properties.session_expiry_interval = Some(300);
    let (client, _) = RawClient::connect_with(b.mqtt_addr(), c).await;
    client.disconnect(ReasonCode::Success).await;
    let path = format!("/api/v5/clients/{}", enc(&away));
    let offline = wait_until_async(WAIT, || async {
        call(&b, "GET", &path, Value::Null).await.1["connected"] == json!(false)
    })
    .await;
    assert!(offline, "listed as disconnected");
    let (_, v) = call(&b, "GET", &path, Value::Null).await;
    assert!(v["disconnected_at"].is_string(), "{v}");
    assert_eq!(count(&b, "conn_state=disconnected").await, 1);
    let (status, _) = call(&b, "DELETE", &path, Value::Null).await;
    assert_eq!(status, 204);
    let (status, _) = call(&b, "GET", &path, Value::Null).await;
    assert_eq!(status, 404);
    let (status, v) = call(&b, "DELETE", &path, Value::Null).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("CLIENTID_NOT_FOUND"))
    );
    b.shutdown().await;
}

#[tokio::test]
async fn subscriptions_made_on_a_clients_behalf_receive_api_publishes() {
    let b = keyed_broker(|_| {}).await;
    let node = node_name(&b).await;
    let id = unique("behalf");
    let mut c = RawClient::connect(b.mqtt_addr(), V5, &id).await;
    c.subscribe("own/1", QoS::AtMostOnce).await;
    call(
        &b,
        "POST",
        "/api/v5/publish",
        json!({"topic": "kept/r", "payload": "retained", "retain": true}),
    )
    .await;
    let base = format!("/api/v5/clients/{}", enc(&id));
    let body = json!({"topic": "api/t", "qos": 1, "nl": 0, "rap": 1, "rh": 0});
    let (status, v) = call(&b, "POST", &format!("{base}/subscribe"), body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"clientid": id, "node": node, "topic": "api/t", "qos": 1, "nl": 0, "rap": 1, "rh": 0})
    );
    let (status, v) = call(
        &b,
        "POST",
        "/api/v5/publish",
        json!({"topic": "api/t", "payload": "hi", "qos": 1}),
    )
    .await;
    assert_eq!(
        status, 200,
        "reaches the subscription made through the API: {v}"
    );
    let p = c.recv_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos),
        ("api/t", &b"hi"[..], QoS::AtLeastOnce)
    );
    c.ack(&p).await;
    // Bulk, with a retained message for the new filter.
    let bulk = json!([{"topic": "kept/#"}, {"topic": "$share/g/shared/t", "qos": 2}]);
    let (status, v) = call(&b, "POST", &format!("{base}/subscribe/bulk"), bulk).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    let p = c.recv_publish().await;
    assert!(
        p.retain && p.topic == "kept/r",
        "retained message for the new filter: {p:?}"
    );
    let (status, v) = call(&b, "GET", &format!("{base}/subscriptions"), Value::Null).await;
    assert_eq!(status, 200, "{v}");
    let topics: Vec<&str> = v
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["topic"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(topics, ["$share/g/shared/t", "api/t", "kept/#", "own/1"]);
    let (_, one) = call(&b, "GET", &base, Value::Null).await;
    assert_eq!(one["subscriptions_cnt"], 4);
    // The subscriptions list and its filters.
    for (query, want) in [
        (String::new(), 4),
        (format!("clientid={}", enc(&id)), 4),
        ("clientid=nobody".to_owned(), 0),
        ("qos=1".to_owned(), 1),
        (format!("topic={}", enc("api/t")), 1),
        ("share_group=g".to_owned(), 1),
        (format!("match_topic={}", enc("kept/#")), 1),
        (format!("match_topic={}", enc("#")), 4),
        (format!("node={}", enc(&node)), 4),
        ("node=elsewhere".to_owned(), 0),
    ] {
        let (status, v) = call(
            &b,
            "GET",
            &format!("/api/v5/subscriptions?{query}"),
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{query}: {v}");
        assert_eq!(v["meta"]["count"], want, "{query}: {v}");
    }
    let (_, v) = call(
        &b,
        "GET",
        "/api/v5/subscriptions?limit=3&page=2",
        Value::Null,
    )
    .await;
    assert_eq!(
        (data(&v).len(), v["meta"]["hasnext"].as_bool()),
        (1, Some(false)),
        "{v}"
    );
    for query in ["qos=3", "match_topic=a/%23/b", "bogus=1"] {
        let (status, _) = call(
            &b,
            "GET",
            &format!("/api/v5/subscriptions?{query}"),
            Value::Null,
        )
        .await;
        assert_eq!(status, 400, "{query}");
    }
    // Unsubscribe: nothing reaches it any more.
    let (status, _) = call(
        &b,
        "POST",
        &format!("{base}/unsubscribe"),
        json!({"topic": "api/t"}),
    )
    .await;
    assert_eq!(status, 204);
    let bulk = json!([{"topic": "kept/#"}, {"topic": "$share/g/shared/t"}]);
    let (status, _) = call(&b, "POST", &format!("{base}/unsubscribe/bulk"), bulk).await;
    assert_eq!(status, 204);
    let (status, v) = call(
        &b,
        "POST",
        "/api/v5/publish",
        json!({"topic": "api/t", "payload": "late"}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let (_, v) = call(&b, "GET", &format!("{base}/subscriptions"), Value::Null).await;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    b.shutdown().await;
}

#[tokio::test]
async fn subscribing_on_behalf_refuses_bad_input_and_unknown_clients() {
    let b = keyed_broker(|c| c.mqtt.max_subscriptions = 2).await;
    let id = unique("refused");
    let mut c = RawClient::connect(b.mqtt_addr(), V5, &id).await;
    c.subscribe("one", QoS::AtMostOnce).await;
    let path = format!("/api/v5/clients/{}/subscribe", enc(&id));
    for body in [
        json!({"topic": "a/#/b"}),
        json!({"topic": "a", "qos": 3}),
        json!({"topic": "a", "rh": 3}),
        json!({"topic": "a", "nl": 2}),
        json!({"topic": "$share/g/a", "nl": 1}),
        json!({"qos": 1}),
    ] {
        let (status, v) = call(&b, "POST", &path, body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    let bulk = json!([{"topic": "two"}, {"topic": "three"}]);
    let (status, v) = call(&b, "POST", &format!("{path}/bulk"), bulk).await;
    assert_eq!(
        status, 400,
        "over mqtt.max_subscriptions, nothing applied: {v}"
    );
    let (_, v) = call(
        &b,
        "GET",
        &format!("/api/v5/clients/{}/subscriptions", enc(&id)),
        Value::Null,
    )
    .await;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    for (method, path, body) in [
        (
            "POST",
            "/api/v5/clients/nobody/subscribe",
            json!({"topic": "t"}),
        ),
        (
            "POST",
            "/api/v5/clients/nobody/unsubscribe",
            json!({"topic": "t"}),
        ),
        ("GET", "/api/v5/clients/nobody/subscriptions", Value::Null),
    ] {
        let (status, v) = call(&b, method, path, body).await;
        assert_eq!(
            (status, v["code"].as_str()),
            (404, Some("CLIENTID_NOT_FOUND")),
            "{path}"
        );
    }
    b.shutdown().await;
}
