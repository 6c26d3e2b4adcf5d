//! Run-time configuration (`/api/v5/configs`): a change made through r1 is applied on r2
//! (its effective config shows it, a new client there gets the new CONNACK limits) and kept
//! across r2's restart (applied before its first client); a key that needs a restart and a
//! bad value are refused with 400 and change nothing; the API key is required; secrets are
//! redacted; deleting an override brings the node's own value back; a key deleted and set
//! again (its row back at version 1) is applied with its new value; alarm thresholds and
//! interval changed through r1 raise and clear an alarm on r2, and the log keys reach r2,
//! both kept across its restart (the logger itself: tests/logging.rs, on the real binary).

use meshmq_proto::tables::op_result::Outcome;
use meshmq_proto::tables::{SettingDelete, SettingRow, SettingSet, op};
use meshmq_shared::codec::{ConnAck, ProtocolVersion, ReasonCode};
use replicant_node::broker::BrokerHandle;
use serde_json::{Value, json};

use crate::common::raw::{RawClient, connect_packet};
use crate::common::{http_call, unique, wait_until, wait_until_async};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

const KEY: &str = "configs-test-key";

async fn call(r: &BrokerHandle, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let addr = r.http_addr().expect("http listener");
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, text) = http_call(addr, method, path, &body, Some(KEY)).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A new 5.0 client's CONNACK on `r` (keep-alive 60 asked).
async fn connack(r: &BrokerHandle) -> ConnAck {
    let (_c, ack) = RawClient::connect_with(
        r.mqtt_addr(),
        connect_packet(ProtocolVersion::V5, &unique("cfg")),
    )
    .await;
    assert_eq!(ack.code, ReasonCode::Success);
    ack
}

fn receive_maximum(r: &BrokerHandle) -> u16 {
    r.ctx().runtime.current().config.mqtt.receive_maximum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_r1_applies_on_r2_and_survives_its_restart() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let key = |c: &mut meshmq_shared::config::Config| c.listeners.api_key = Some(KEY.into());
    let r1 = cluster.start_replicant_with("r1", key).await;
    let r2 = cluster.start_replicant_with("r2", key).await;
    assert_eq!(connack(&r2).await.properties.receive_maximum, Some(32));

    // The API key is required; the effective config hides it.
    let addr1 = r1.http_addr().expect("http");
    let (status, _) = http_call(addr1, "GET", "/api/v5/configs", "", None).await;
    assert_eq!(status, 401);
    let (status, all) = call(&r1, "GET", "/api/v5/configs", &Value::Null).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["listeners"]["api_key"], "******");
    assert!(!all.to_string().contains(KEY), "{all}");
    assert_eq!(all["mqtt"]["receive_maximum"], 32);

    // A change through r1.
    let change = json!({ "receive_maximum": 7, "server_keepalive": 20 });
    let (status, mqtt) = call(&r1, "PUT", "/api/v5/configs/mqtt", &change).await;
    assert_eq!(status, 200, "{mqtt}");
    assert_eq!(
        (
            mqtt["receive_maximum"].clone(),
            mqtt["server_keepalive"].clone()
        ),
        (json!(7), json!(20))
    );
    assert!(
        wait_until(WAIT, || receive_maximum(&r2) == 7).await,
        "r2 applies it"
    );
    let (status, mqtt2) = call(&r2, "GET", "/api/v5/configs/mqtt", &Value::Null).await;
    assert_eq!((status, mqtt2["receive_maximum"].clone()), (200, json!(7)));
    let ack = connack(&r2).await;
    assert_eq!(ack.properties.receive_maximum, Some(7), "new client on r2");
    assert_eq!(
        ack.properties.server_keep_alive,
        Some(20),
        "keep-alive capped on r2"
    );

    // A key that needs a restart, alone or with a run-time key: 400 naming it, nothing changes.
    for body in [
        json!({ "max_packet_size": 100 }),
        json!({ "max_inflight": 3, "max_packet_size": 100 }),
    ] {
        let (status, answer) = call(&r1, "PUT", "/api/v5/configs/mqtt", &body).await;
        assert_eq!(status, 400, "{answer}");
        let msg = answer["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("mqtt.max_packet_size") && msg.contains("restart"),
            "{msg}"
        );
    }
    let (status, answer) = call(
        &r1,
        "PUT",
        "/api/v5/configs",
        &json!({ "node": { "name": "x" } }),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    // A bad value: the loader's message.
    let (status, answer) = call(
        &r1,
        "PUT",
        "/api/v5/configs/mqtt",
        &json!({ "max_inflight": 0 }),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("must be greater than 0"),
        "{answer}"
    );
    let (status, answer) = call(
        &r1,
        "PUT",
        "/api/v5/configs/flapping_detect",
        &json!({ "ban_time": "soon" }),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let (_, mqtt) = call(&r1, "GET", "/api/v5/configs/mqtt", &Value::Null).await;
    assert_eq!(
        (
            mqtt["max_inflight"].clone(),
            mqtt["max_packet_size"].clone()
        ),
        (json!(32), json!(1_048_576))
    );
    let (status, _) = call(&r1, "GET", "/api/v5/configs/nope", &Value::Null).await;
    assert_eq!(status, 404);

    // r2 restarts: the change applies from its first client.
    r2.shutdown().await;
    let r2 = cluster.start_replicant_with("r2", key).await;
    assert_eq!(
        receive_maximum(&r2),
        7,
        "applied before the broker returned"
    );
    assert_eq!(
        connack(&r2).await.properties.receive_maximum,
        Some(7),
        "after restart"
    );
    // Another node's view, through r1.
    let (status, other) = call(&r1, "GET", "/api/v5/configs?node=r2", &Value::Null).await;
    assert_eq!(
        (status, other["mqtt"]["receive_maximum"].clone()),
        (200, json!(7)),
        "{other}"
    );

    // Reset through r2: r1 gets its own value back.
    let (status, _) = call(
        &r2,
        "DELETE",
        "/api/v5/configs/mqtt/receive_maximum",
        &Value::Null,
    )
    .await;
    assert_eq!(status, 204);
    assert!(
        wait_until(WAIT, || receive_maximum(&r1) == 32).await,
        "r1 back to 32"
    );
    let (status, _) = call(
        &r2,
        "DELETE",
        "/api/v5/configs/mqtt/receive_maximum",
        &Value::Null,
    )
    .await;
    assert_eq!(status, 404);
    for r in [r1, r2] {
        r.shutdown().await;
    }
    cluster.stop().await;
}

fn max_inflight(r: &BrokerHandle) -> u32 {
    u32::from(r.ctx().runtime.current().config.mqtt.max_inflight)
}

/// A key deleted and set again starts over at row version 1: every node must apply the new
/// value though (key, version) is what it saw before. The API sequence (PUT a, DELETE, PUT b)
/// first; then the delete and the new value in one table entry, so that no node can see the
/// state in between (what a node that fell behind sees).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_deleted_and_set_again_applies_its_new_value_everywhere() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let key = |c: &mut meshmq_shared::config::Config| c.listeners.api_key = Some(KEY.into());
    let r1 = cluster.start_replicant_with("r1", key).await;
    let r2 = cluster.start_replicant_with("r2", key).await;
    let path = "/api/v5/configs/mqtt";
    let (status, answer) = call(&r1, "PUT", path, &json!({ "max_inflight": 5 })).await;
    assert_eq!(status, 200, "{answer}");
    assert!(wait_until(WAIT, || max_inflight(&r2) == 5).await, "r2: a");
    let (status, _) = call(
        &r1,
        "DELETE",
        "/api/v5/configs/mqtt/max_inflight",
        &Value::Null,
    )
    .await;
    assert_eq!(status, 204);
    let (status, answer) = call(&r1, "PUT", path, &json!({ "max_inflight": 9 })).await;
    assert_eq!(status, 200, "{answer}");
    for r in [&r1, &r2] {
        assert!(wait_until(WAIT, || max_inflight(r) == 9).await, "b");
    }

    // Delete and set in one entry: the row is back at version 1 with another value.
    let row = SettingRow {
        ns: "config".into(),
        key: "mqtt.max_inflight".into(),
        value: b"11".to_vec().into(),
        version: 0,
    };
    let ops = vec![
        replicant_node::cluster::op(op::Kind::SettingDelete(SettingDelete {
            ns: row.ns.clone(),
            key: row.key.clone(),
            expect_version: Some(1),
        })),
        replicant_node::cluster::op(op::Kind::SettingSet(SettingSet {
            row: Some(row),
            expect_version: Some(0),
        })),
    ];
    let outcomes = replicant_node::cluster::try_transact(&r1.ctx().tables, ops)
        .await
        .expect("committed");
    for outcome in outcomes {
        assert!(matches!(outcome, Outcome::Ok(_)), "{outcome:?}");
    }
    for (name, r) in [("r1", &r1), ("r2", &r2)] {
        assert!(
            wait_until(WAIT, || max_inflight(r) == 11).await,
            "{name} applies the value written again at version 1"
        );
    }
    for r in [r1, r2] {
        r.shutdown().await;
    }
    cluster.stop().await;
}

/// Whether alarm `name` is listed on `r` as active (`activated`) or in the history.
async fn alarm_listed(r: &BrokerHandle, name: &str, activated: bool) -> bool {
    let path = format!("/api/v5/alarms?limit=10000&activated={activated}");
    let (status, body) = call(r, "GET", &path, &Value::Null).await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x["name"] == name))
}

/// Alarm thresholds and the log filter changed through r1 apply on r2: the memory alarm
/// fires there when its threshold drops below the usage (and its check interval, an hour in
/// r2's file, drops to 50 ms: a wait of an hour otherwise), and clears when it is raised
/// again; the log keys show in r2's effective configuration; both hold across r2's
/// restart. A bad filter is refused with the loader's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_thresholds_and_the_log_filter_changed_through_r1_apply_on_r2() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let tweak = |c: &mut meshmq_shared::config::Config| {
        c.listeners.api_key = Some(KEY.into());
        c.alarms.check_interval = "1h".into();
        c.alarms.sysmem_high_watermark = 100.0;
    };
    let r1 = cluster.start_replicant_with("r1", tweak).await;
    let r2 = cluster.start_replicant_with("r2", tweak).await;
    let name = "high_system_memory_usage";
    assert!(!alarm_listed(&r2, name, true).await, "not at 100 %");

    let low = json!({ "check_interval": "50ms", "sysmem_high_watermark": 0 });
    let (status, alarms) = call(&r1, "PUT", "/api/v5/configs/alarms", &low).await;
    assert_eq!(status, 200, "{alarms}");
    assert_eq!(alarms["sysmem_high_watermark"], json!(0.0), "{alarms}");
    assert!(
        wait_until_async(WAIT, || alarm_listed(&r2, name, true)).await,
        "the memory alarm fires on r2"
    );
    let high = json!({ "sysmem_high_watermark": 100 });
    let (status, _) = call(&r1, "PUT", "/api/v5/configs/alarms", &high).await;
    assert_eq!(status, 200);
    assert!(
        wait_until_async(WAIT, || async {
            !alarm_listed(&r2, name, true).await && alarm_listed(&r2, name, false).await
        })
        .await,
        "it clears on r2"
    );

    // The log filter: refused values first (the loader's messages), then a good one.
    for (body, wanted) in [
        (json!({ "level": "loud" }), "log.level"),
        (
            json!({ "directives": "replicant_node=loud" }),
            "is not a log directive",
        ),
        (json!({ "format": "json" }), "needs a restart"),
    ] {
        let (status, answer) = call(&r1, "PUT", "/api/v5/configs/log", &body).await;
        assert_eq!(status, 400, "{answer}");
        let msg = answer["message"].as_str().unwrap_or_default();
        assert!(msg.contains(wanted), "{msg}");
    }
    let filter = json!({ "level": "debug", "directives": "replicant_node::peer=trace" });
    let (status, log) = call(&r1, "PUT", "/api/v5/configs/log", &filter).await;
    assert_eq!(
        (status, log["level"].clone()),
        (200, json!("debug")),
        "{log}"
    );
    let level_on = |r: &BrokerHandle| r.ctx().runtime.current().config.log.level.clone();
    assert!(
        wait_until(WAIT, || level_on(&r2) == "debug").await,
        "r2 applies it"
    );
    let (_, log2) = call(&r2, "GET", "/api/v5/configs/log", &Value::Null).await;
    assert_eq!(log2["directives"], "replicant_node::peer=trace", "{log2}");

    // r2 restarts: both changes hold from the start.
    r2.shutdown().await;
    let r2 = cluster.start_replicant_with("r2", tweak).await;
    assert_eq!(level_on(&r2), "debug");
    let alarms = r2.ctx().runtime.current().config.alarms.clone();
    assert_eq!(
        (alarms.check_interval.as_str(), alarms.sysmem_high_watermark),
        ("50ms", 100.0)
    );
    for r in [r1, r2] {
        r.shutdown().await;
    }
    cluster.stop().await;
}
