//! Banned clients and flapping detection: bans added through `/api/v5/banned` refuse
//! CONNECT by client id, username, address and network (5.0 CONNACK 0x8A Banned, 3.1.1
//! return code 5), before authentication; a new ban closes the live connections it matches
//! (5.0 DISCONNECT 0x98) and ends their sessions; a ban with an end stops holding then and
//! is purged; a client id that flaps is banned and listed; the API needs its key and
//! refuses bad input.

use std::time::Duration;

use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use meshmq_shared::config::{Config, UserIdType};
use meshmq_shared::tables::BannedAs;
use serde_json::{Value, json};

use crate::authn::{add_user, builtin};
use crate::common::raw::{RawClient, connect_packet, will};
use crate::common::{
    self, QUIET, TestBroker, WAIT, http_call, metric_sum, metrics_text, wait_until,
    wait_until_async,
};

/// A call to the broker's API; the body parsed as JSON (`null` when empty).
async fn api(
    b: &TestBroker,
    method: &str,
    path: &str,
    body: Value,
    key: Option<&str>,
) -> (u16, Value) {
    let addr = b.http_addr().expect("http listener");
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, text) = http_call(addr, method, path, &body, key).await;
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json)
}

fn kind_of(r#as: &str) -> BannedAs {
    match r#as {
        "clientid" => BannedAs::Clientid,
        "username" => BannedAs::Username,
        "peerhost" => BannedAs::Peerhost,
        _ => BannedAs::PeerhostNet,
    }
}

/// Adds a ban through the API (200) and waits until every node has applied it.
pub(crate) async fn ban(b: &TestBroker, r#as: &str, who: &str, extra: Value) -> Value {
    let mut body = json!({ "as": r#as, "who": who, "reason": "test" });
    if let (Some(o), Value::Object(more)) = (body.as_object_mut(), extra) {
        o.extend(more);
    }
    let (status, answer) = api(b, "POST", "/api/v5/banned", body, None).await;
    assert_eq!(status, 200, "{answer}");
    let kind = kind_of(r#as);
    let everywhere = wait_until(WAIT, || {
        b.nodes()
            .iter()
            .all(|n| n.core().read(|t| t.banned(kind, who).is_some()))
    })
    .await;
    assert!(everywhere, "ban {as}/{who} reached every node", r#as = r#as);
    answer
}

async fn connect_as(
    b: &TestBroker,
    v: ProtocolVersion,
    client_id: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> (RawClient, ReasonCode) {
    let mut c = connect_packet(v, client_id);
    c.username = username.map(str::to_owned);
    c.password = password.map(|p| p.as_bytes().to_vec().into());
    let (client, ack) = RawClient::connect_with(b.mqtt_addr(), c).await;
    (client, ack.code)
}

/// What a banned client reads: 5.0 0x8A; 3.1.1 return code 5 (read back as 0x87).
fn banned_code(v: ProtocolVersion) -> ReasonCode {
    if v.is_v5() {
        ReasonCode::Banned
    } else {
        ReasonCode::NotAuthorized
    }
}

#[tokio::test]
async fn bans_by_client_id_username_address_and_network_refuse_connect_before_authentication() {
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let sha = meshmq_shared::auth::password::Algorithm::Sha256 {
        salt_position: meshmq_shared::auth::password::SaltPosition::Suffix,
    };
    let user = common::unique("user");
    add_user(&b, &user, "pw", &sha).await;
    let refused_before =
        metric_sum(&metrics_text(&b).await, "meshmq_banned_refused_total", &[]).unwrap_or(0.0);
    let bad_id = common::unique("bad-id");
    ban(&b, "clientid", &bad_id, Value::Null).await;
    let bad_user = common::unique("bad-user");
    add_user(&b, &bad_user, "pw", &sha).await;
    ban(&b, "username", &bad_user, Value::Null).await;
    for v in [V5, V311] {
        // The right password does not help: bans are checked first.
        let (_c, code) = connect_as(&b, v, &bad_id, Some(&user), Some("pw")).await;
        assert_eq!(code, banned_code(v), "{v:?} banned client id");
        let id = common::unique("ok");
        let (_c, code) = connect_as(&b, v, &id, Some(&bad_user), Some("pw")).await;
        assert_eq!(code, banned_code(v), "{v:?} banned username");
        // Not banned: authenticated as usual (a wrong password is still 0x86 / code 4).
        let (_c, code) = connect_as(&b, v, &id, Some(&user), Some("pw")).await;
        assert_eq!(code, ReasonCode::Success, "{v:?} not banned");
        let (_c, code) = connect_as(&b, v, &common::unique("x"), Some(&user), Some("no")).await;
        assert_eq!(
            code,
            ReasonCode::BadUserNameOrPassword,
            "{v:?} authn still runs"
        );
    }
    let text = metrics_text(&b).await;
    let refused = metric_sum(&text, "meshmq_banned_refused_total", &[]).unwrap_or(0.0);
    assert!(refused >= refused_before + 4.0, "counted: {refused}");
    assert!(
        metric_sum(
            &text,
            "meshmq_connections_refused_total",
            &[("reason", "0x8a")]
        )
        .is_some()
    );

    // By address, then by network: every test client comes from 127.0.0.1.
    for (r#as, who) in [("peerhost", "127.0.0.1"), ("peerhost_net", "127.0.0.0/8")] {
        ban(&b, r#as, who, Value::Null).await;
        for v in [V5, V311] {
            let (_c, code) =
                connect_as(&b, v, &common::unique("ip"), Some(&user), Some("pw")).await;
            assert_eq!(code, banned_code(v), "{v:?} banned {as}", r#as = r#as);
        }
        let path = format!("/api/v5/banned/{}/{}", r#as, who.replace('/', "%2F"));
        let (status, body) = api(&b, "DELETE", &path, Value::Null, None).await;
        assert_eq!(status, 204, "{path}: {body}");
        let lifted = wait_until(WAIT, || {
            b.nodes()
                .iter()
                .all(|n| n.core().read(|t| t.banned(kind_of(r#as), who).is_none()))
        })
        .await;
        assert!(lifted);
    }
    let (_c, code) = connect_as(&b, V5, &common::unique("ip"), Some(&user), Some("pw")).await;
    assert_eq!(code, ReasonCode::Success, "lifted");
}

#[tokio::test]
async fn a_new_ban_closes_the_live_connections_it_matches_and_ends_their_sessions() {
    let b = common::broker().await;
    let name = common::unique("kickme");
    let mut clients = Vec::new();
    for v in [V5, V311] {
        let id = common::unique("live");
        let mut c = connect_packet(v, &id);
        c.username = Some(name.clone());
        c.clean_start = false;
        c.will = Some(will(&format!("last/{id}"), "last word", QoS::AtMostOnce));
        if v.is_v5() {
            c.properties.session_expiry_interval = Some(3600);
        }
        let (client, ack) = RawClient::connect_with(b.mqtt_addr(), c).await;
        assert_eq!(ack.code, ReasonCode::Success);
        clients.push((v, id, client));
    }
    let mut bystander = RawClient::connect(b.mqtt_addr(), V5, &common::unique("other")).await;
    bystander.subscribe("last/#", QoS::AtMostOnce).await;
    ban(&b, "username", &name, Value::Null).await;
    for (v, _, c) in &mut clients {
        let seen = c.wait_closed(WAIT).await;
        if v.is_v5() {
            assert!(
                matches!(seen.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::AdministrativeAction),
                "5.0: DISCONNECT 0x98, got {seen:?}"
            );
        } else {
            assert!(seen.is_empty(), "3.1.1: closed, got {seen:?}");
        }
    }
    bystander.expect_no_publish(QUIET).await;
    let (status, _) = api(&b, "DELETE", "/api/v5/banned", Value::Null, None).await;
    assert_eq!(status, 204);
    assert!(
        wait_until(WAIT, || b
            .nodes()
            .iter()
            .all(|n| n.core().read(|t| t.banned_count() == 0)))
        .await
    );
    // Back after the ban: the session did not survive it.
    for (v, id, _) in clients {
        let mut c = connect_packet(v, &id);
        c.username = Some(name.clone());
        c.clean_start = false;
        let (_client, ack) = RawClient::connect_with(b.mqtt_addr(), c).await;
        assert_eq!(ack.code, ReasonCode::Success);
        assert!(!ack.session_present, "{v:?}: no session kept from a ban");
    }
}

#[tokio::test]
async fn a_ban_stops_holding_at_its_end_and_is_purged() {
    let b = common::broker().await;
    let id = common::unique("brief");
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3;
    let shown = ban(&b, "clientid", &id, json!({ "until": until })).await;
    assert!(
        shown["until"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{shown}"
    );
    let (_c, code) = connect_as(&b, V5, &id, None, None).await;
    assert_eq!(code, ReasonCode::Banned, "in force");
    let back = wait_until_async(Duration::from_secs(10), || async {
        connect_as(&b, V5, &id, None, None).await.1 == ReasonCode::Success
    })
    .await;
    assert!(back, "the ban ended");
    // Purged by the periodic housekeeping (every 10 s) on every node.
    let purged = wait_until(Duration::from_secs(30), || {
        b.nodes().iter().all(|n| {
            n.core()
                .read(|t| t.banned(BannedAs::Clientid, &id).is_none())
        })
    })
    .await;
    assert!(purged, "ended ban purged");
}

fn flapping(c: &mut Config) {
    c.flapping_detect.enable = true;
    c.flapping_detect.max_count = 3;
    c.flapping_detect.window_time = "1m".into();
    c.flapping_detect.ban_time = "5m".into();
}

#[tokio::test]
async fn a_client_id_that_flaps_is_banned_for_ban_time_and_listed() {
    let b = common::start_broker(flapping).await;
    // One node: detection counts per node (as EMQX's).
    let node = &b.nodes()[0];
    let id = common::unique("flappy");
    // The third CONNECT is accepted (two disconnects do not ban); its disconnect does.
    for _ in 0..3 {
        let mut c = RawClient::connect(node.mqtt_addr(), V311, &id).await;
        c.ping().await;
        c.disconnect(ReasonCode::Success).await;
    }
    let listed = wait_until_async(WAIT, || async {
        let (status, page) = api(
            &b,
            "GET",
            "/api/v5/banned?page=1&limit=100",
            Value::Null,
            None,
        )
        .await;
        status == 200
            && page["data"].as_array().is_some_and(|rows| {
                rows.iter().any(|r| {
                    r["as"] == "clientid"
                        && r["who"] == id.as_str()
                        && r["by"] == "flapping detector"
                })
            })
    })
    .await;
    assert!(listed, "the flapping ban is listed");
    let row = node
        .core()
        .read(|t| t.banned(BannedAs::Clientid, &id).cloned())
        .expect("row");
    assert_eq!(row.until - row.at, 300, "ban_time");
    let everywhere = wait_until(WAIT, || {
        b.nodes().iter().all(|n| {
            n.core()
                .read(|t| t.banned(BannedAs::Clientid, &id).is_some())
        })
    })
    .await;
    assert!(everywhere);
    let (_c, code) = connect_as(&b, V5, &id, None, None).await;
    assert_eq!(code, ReasonCode::Banned);
    let bans = metric_sum(&metrics_text(&b).await, "meshmq_flapping_bans_total", &[]);
    assert!(bans.is_some_and(|n| n >= 1.0));
}

#[tokio::test]
async fn the_banned_api_needs_its_key_and_refuses_bad_input() {
    let b =
        common::start_broker(|c| c.listeners.api_key = Some("s3cret-key-0123456789".into())).await;
    let key = Some("s3cret-key-0123456789");
    for (method, path) in [
        ("GET", "/api/v5/banned"),
        ("POST", "/api/v5/banned"),
        ("DELETE", "/api/v5/banned"),
        ("DELETE", "/api/v5/banned/clientid/x"),
    ] {
        let body = json!({"as": "clientid", "who": "nobody"});
        let (status, answer) = api(&b, method, path, body.clone(), None).await;
        assert_eq!(status, 401, "{method} {path} without key: {answer}");
        let (status, _) = api(&b, method, path, body, Some("wrong")).await;
        assert_eq!(status, 401, "{method} {path} wrong key");
    }
    assert!(
        b.nodes()[0].core().read(|t| t.banned_count() == 0),
        "nothing written"
    );
    let bad = [
        json!({"as": "ip", "who": "x"}),
        json!({"as": "clientid"}),
        json!({"as": "clientid", "who": ""}),
        json!({"as": "peerhost", "who": "300.1.1.1"}),
        json!({"as": "peerhost_net", "who": "10.0.0.0/40"}),
        json!({"as": "peerhost_net", "who": "10.0.0.1/8"}),
        json!({"as": "clientid", "who": "c", "until": "2001-01-01T00:00:00Z"}),
        json!({"as": "clientid", "who": "c", "until": 5}),
        json!({"as": "clientid", "who": "c", "until": "later"}),
        json!({"as": "clientid", "who": "c", "color": "red"}),
        json!("not an object"),
    ];
    for body in bad {
        let (status, answer) = api(&b, "POST", "/api/v5/banned", body.clone(), key).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["code"], "BAD_REQUEST", "{answer}");
    }
    let (status, _) = api(&b, "GET", "/api/v5/banned?limit=0", Value::Null, key).await;
    assert_eq!(status, 400);
    let (status, _) = api(&b, "GET", "/api/v5/banned?page=x", Value::Null, key).await;
    assert_eq!(status, 400);
    let (status, _) = api(&b, "DELETE", "/api/v5/banned/nickname/x", Value::Null, key).await;
    assert_eq!(status, 400);
    assert!(
        b.nodes()[0].core().read(|t| t.banned_count() == 0),
        "nothing written"
    );

    let body = json!({"as": "clientid", "who": "dup", "until": "infinity", "by": "ops"});
    let (status, row) = api(&b, "POST", "/api/v5/banned", body.clone(), key).await;
    assert_eq!(status, 200, "{row}");
    assert_eq!(
        (row["until"].as_str(), row["by"].as_str()),
        (Some("infinity"), Some("ops"))
    );
    let (status, answer) = api(&b, "POST", "/api/v5/banned", body, key).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("ALREADY_EXISTS"))
    );
    let message = answer["message"].as_str().unwrap_or("");
    assert!(
        message.contains(r#""by":"ops""#),
        "the ban in force: {answer}"
    );
    for who in ["a", "b"] {
        let (status, _) = api(
            &b,
            "POST",
            "/api/v5/banned",
            json!({"as": "username", "who": who}),
            key,
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, found) = api(&b, "GET", "/api/v5/banned?username=b", Value::Null, key).await;
    assert_eq!(status, 200);
    assert_eq!(found["meta"]["count"], 1, "{found}");
    assert_eq!(found["data"][0]["who"], "b", "{found}");
    let (status, _) = api(
        &b,
        "GET",
        "/api/v5/banned?username=b&clientid=dup",
        Value::Null,
        key,
    )
    .await;
    assert_eq!(status, 400, "two filters");
    let (status, page) = api(&b, "GET", "/api/v5/banned?page=2&limit=2", Value::Null, key).await;
    assert_eq!(status, 200);
    assert_eq!(
        page["meta"],
        json!({"page": 2, "limit": 2, "count": 3, "hasnext": false})
    );
    assert_eq!(page["data"][0]["who"], "b", "{page}");
    assert!(
        page["data"][0]["at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    let (status, _) = api(
        &b,
        "DELETE",
        "/api/v5/banned/clientid/nope",
        Value::Null,
        key,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = api(
        &b,
        "DELETE",
        "/api/v5/banned/clientid/dup",
        Value::Null,
        key,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = api(&b, "DELETE", "/api/v5/banned", Value::Null, key).await;
    assert_eq!(status, 204);
    let (_, page) = api(&b, "GET", "/api/v5/banned", Value::Null, key).await;
    assert_eq!(page["meta"]["count"], 0, "{page}");
}

/// A SCRAM client that sends no User Name is known by its SCRAM user name once the exchange
/// ends: a ban on that user name refuses it (0x8A), as it refuses a password client.
#[tokio::test]
async fn a_ban_on_a_user_name_holds_for_a_scram_client_that_sent_none() {
    use crate::authn_scram::{add_scram_user, scram_chain, scram_connect};
    use crate::authn_scram_client::Hash;
    use meshmq_shared::auth::scram::ScramAlgorithm;

    let b = common::start_broker(scram_chain).await;
    let user = common::unique("scram-banned");
    add_scram_user(&b, &user, "pencil", ScramAlgorithm::Sha256).await;
    let (_c, ack, _) = scram_connect(&b, Hash::Sha256, &user, "pencil").await;
    assert_eq!(ack.code, ReasonCode::Success, "before the ban");
    ban(&b, "username", &user, json!({})).await;
    let (_c, ack, _) = scram_connect(&b, Hash::Sha256, &user, "pencil").await;
    assert_eq!(ack.code, ReasonCode::Banned, "after the ban");
}
