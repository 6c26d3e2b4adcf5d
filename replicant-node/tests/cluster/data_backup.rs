//! Data export and import (`/api/v5/data/export`, `/api/v5/data/import`) between two
//! clusters: cluster A gets a built-in user, an authorization rule, a ban, a retained
//! message (QoS 1 with properties) and a run-time config override through its API; its
//! export is imported into a fresh cluster B through b1, and b2 then authenticates the
//! user over MQTT, enforces the rule, refuses the banned client, delivers the retained
//! message with its payload and properties, accepts A's API key and shows the override in
//! `GET /api/v5/configs`.
//! Also: the key is required, a bad document (not JSON, another version, one bad row) is
//! refused with 400 and writes nothing, and the import answers its counts. A large export
//! (more rows than a page, more bytes than a chunk) streams every row once; an import is an
//! upsert (rows the file lacks stay) and leaves out expired messages; `ctl data export`
//! and `ctl data import` do the same.

use meshmq_proto::tables::op;
use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::{Properties, QoS, ReasonCode};
use meshmq_shared::config::{
    AuthenticatorConfig, AuthzSourceConfig, BuiltInDatabaseConfig, Config,
};
use meshmq_shared::tables::BannedAs;
use replicant_node::BrokerHandle;
use replicant_node::ctl::data::Data;
use replicant_node::ctl::{Ctl, CtlCommand};
use serde_json::{Value, json};

use crate::common::api_client::Api;
use crate::common::raw::{RawClient, connect_packet, publish_packet};
use crate::common::{unique, wait_until};
use crate::harness::{Cluster, WAIT, assert_applied, fast_timings, retained_op, serial};

const KEY: &str = "data-backup-test-key";
const USERS: &str = "/api/v5/authentication/password_based:built_in_database/users";
const RULES: &str = "/api/v5/authorization/sources/built_in_database/rules/users";
const EXPORT: &str = "/api/v5/data/export";
const IMPORT: &str = "/api/v5/data/import";

fn config(c: &mut Config) {
    c.listeners.api_key = Some(KEY.into());
    c.authentication = vec![AuthenticatorConfig::BuiltInDatabase(
        BuiltInDatabaseConfig::default(),
    )];
    c.authorization.sources = vec![AuthzSourceConfig::BuiltInDatabase { enable: true }];
}

fn api(r: &BrokerHandle) -> Api {
    Api::new(r.http_addr().expect("http listener")).with_key(Some(KEY))
}

/// A 5.0 client of `user` with client id `id`: the CONNACK code and the client.
async fn connect(r: &BrokerHandle, id: &str, user: &str, pw: &str) -> (RawClient, ReasonCode) {
    let mut c = connect_packet(V5, id);
    c.username = Some(user.to_owned());
    c.password = Some(pw.as_bytes().to_vec().into());
    let (client, ack) = RawClient::connect_with(r.mqtt_addr(), c).await;
    (client, ack.code)
}

/// Cluster A's data, written through its API and an MQTT client; the API key made there
/// (`id:secret`).
async fn fill(a1: &BrokerHandle) -> String {
    let user = json!({ "user_id": "alice", "password": "alice-pw" });
    let (status, v) = api(a1).json("POST", USERS, &user).await;
    assert_eq!(status, 201, "{v}");
    let rules = json!([{ "username": "alice", "rules": [
        { "topic": "secret/#", "permission": "deny", "action": "publish" }] }]);
    let (status, v) = api(a1).json("POST", RULES, &rules).await;
    assert_eq!(status, 204, "{v}");
    let ban = json!({ "as": "clientid", "who": "banned-client", "reason": "test" });
    let (status, v) = api(a1).json("POST", "/api/v5/banned", &ban).await;
    assert_eq!(status, 200, "{v}");
    let change = json!({ "receive_maximum": 7 });
    let (status, v) = api(a1).json("PUT", "/api/v5/configs/mqtt", &change).await;
    assert_eq!(status, 200, "{v}");
    let (mut publisher, code) = connect(a1, &unique("pub"), "alice", "alice-pw").await;
    assert_eq!(code, ReasonCode::Success);
    let mut p = publish_packet("keep/t", b"\x00retained\xff", QoS::AtLeastOnce, true);
    p.properties = Properties {
        content_type: Some("application/octet-stream".into()),
        user_properties: vec![("origin".into(), "cluster-a".into())],
        ..Properties::default()
    };
    assert_eq!(publisher.publish_full(p).await, ReasonCode::Success);
    let (status, made) = api(a1)
        .json("POST", "/api/v5/api_key", &json!({ "name": "ops" }))
        .await;
    assert_eq!(status, 200, "{made}");
    format!(
        "{}:{}",
        made["api_key"].as_str().unwrap_or_default(),
        made["api_secret"].as_str().unwrap_or_default()
    )
}

/// Cluster A: the data, then its export and A's API key.
async fn export_from_a() -> (Value, String) {
    let cluster = Cluster::start(3, fast_timings()).await;
    let a1 = cluster.start_replicant_with("a1", config).await;
    let key = fill(&a1).await;
    let (status, _) = Api::new(a1.http_addr().expect("http")).get(EXPORT).await;
    assert_eq!(status, 401, "the key is required");
    let (status, doc) = api(&a1).get(EXPORT).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["node"], "a1");
    assert_eq!(doc["auth_users"][0]["user_id"], "alice");
    assert!(
        doc["auth_users"][0]["password"]["hash"].is_string(),
        "{doc}"
    );
    assert_eq!(doc["retained"].as_array().map(Vec::len), Some(1), "{doc}");
    assert_eq!(doc["settings"]["config"]["mqtt.receive_maximum"], 7);
    assert!(doc.get("trace").is_none() && doc["settings"].get("trace").is_none());
    assert_eq!(doc["settings"]["api_key"]["ops"]["enable"], true, "{doc}");
    let secret = key.split(':').nth(1).unwrap_or("?");
    assert!(!doc.to_string().contains(secret), "no secret in the export");
    cluster.stop().await;
    (doc, key)
}

async fn import(r: &BrokerHandle, body: &[u8]) -> (u16, Value) {
    api(r)
        .call("POST", IMPORT, Some("application/json"), body)
        .await
}

/// Bad documents are refused with 400 and write nothing.
async fn refusals(b1: &BrokerHandle, doc: &Value) {
    let (status, _) = Api::new(b1.http_addr().expect("http"))
        .call("POST", IMPORT, Some("application/json"), b"{}")
        .await;
    assert_eq!(status, 401, "the key is required");
    let (status, v) = import(b1, b"{\"version\":1,").await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("BAD_REQUEST")),
        "{v}"
    );
    let mut other = doc.clone();
    other["version"] = json!(2);
    other["from_the_future"] = json!(true);
    let (status, v) = import(b1, other.to_string().as_bytes()).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("version")),
        "{v}"
    );
    let mut bad = doc.clone();
    bad["retained"][0]["qos"] = json!(7);
    let (status, v) = import(b1, bad.to_string().as_bytes()).await;
    assert_eq!(status, 400, "{v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(message.contains("retained[0]"), "names the row: {message}");
    assert!(!message.contains("alice-pw"), "{message}");
    let (status, v) = api(b1)
        .call("POST", IMPORT, Some("text/plain"), b"{}")
        .await;
    assert_eq!(status, 415, "{v}");
    // More bad rows, each named, each refusing the whole document.
    let cases: [(&str, Value, &str); 5] = [
        (
            "/auth_users/1",
            doc["auth_users"][0].clone(),
            "auth_users[1]",
        ),
        ("/auth_users/0/password/name", json!("md5"), "auth_users[0]"),
        ("/banned/0/as", json!("nickname"), "banned[0]"),
        (
            "/settings/config/mqtt.max_packet_size",
            json!(10),
            "mqtt.max_packet_size",
        ),
        ("/settings/trace", json!({ "t1": {} }), "settings.trace"),
    ];
    for (pointer, value, named) in cases {
        let mut bad = doc.clone();
        let (parent, field) = pointer.rsplit_once('/').expect("pointer");
        let slot = bad.pointer_mut(parent).expect("parent");
        match slot {
            Value::Array(list) => list.push(value),
            Value::Object(map) => {
                map.insert(field.to_owned(), value);
            }
            _ => panic!("{pointer}"),
        }
        let (status, v) = import(b1, bad.to_string().as_bytes()).await;
        let message = v["message"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{pointer}: {v}");
        assert!(message.contains(named), "{pointer}: {message}");
    }
    let empty = b1.core().read(|t| {
        t.auth_user_count() == 0 && t.banned_count() == 0 && t.retained("keep/t").is_none()
    });
    assert!(empty, "nothing was written by the refused imports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_of_one_cluster_imported_into_a_fresh_one_holds_everywhere() {
    let _serial = serial().await;
    let (doc, a_key) = export_from_a().await;

    let cluster = Cluster::start(1, fast_timings()).await;
    let b1 = cluster.start_replicant_with("b1", config).await;
    let b2 = cluster.start_replicant_with("b2", config).await;
    refusals(&b1, &doc).await;

    let (status, counts) = import(&b1, doc.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{counts}");
    for (table, n) in [
        ("auth_users", 1),
        ("authz_rules", 1),
        ("banned", 1),
        ("retained", 1),
        ("settings", 2),
    ] {
        assert_eq!(counts[table], n, "{table}: {counts}");
    }
    let arrived = wait_until(WAIT, || {
        b2.core().read(|t| {
            t.auth_user_count() == 1
                && t.banned(BannedAs::Clientid, "banned-client").is_some()
                && t.retained("keep/t").is_some()
                && t.setting("config", "mqtt.receive_maximum").is_some()
        })
    })
    .await;
    assert!(arrived, "the import reached b2's replica");

    // The user, through b2; the rule holds for it.
    let (mut alice, code) = connect(&b2, &unique("alice"), "alice", "alice-pw").await;
    assert_eq!(code, ReasonCode::Success, "the user authenticates on b2");
    let (_, code) = connect(&b2, &unique("alice"), "alice", "wrong").await;
    assert_ne!(code, ReasonCode::Success, "a wrong password is refused");
    let denied = alice
        .publish("secret/x", "p", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(
        denied,
        ReasonCode::NotAuthorized,
        "the authz rule holds on b2"
    );
    // The ban.
    let (_, code) = connect(&b2, "banned-client", "alice", "alice-pw").await;
    assert_eq!(code, ReasonCode::Banned, "the banned client id is refused");
    // The retained message, to a new subscriber on b2.
    alice.subscribe("keep/#", QoS::AtLeastOnce).await;
    let got = alice.recv_publish().await;
    assert_eq!((got.topic.as_str(), got.retain), ("keep/t", true));
    assert_eq!(&got.payload[..], b"\x00retained\xff");
    assert_eq!(got.qos, QoS::AtLeastOnce);
    assert_eq!(
        got.properties.content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(
        got.properties.user_properties,
        vec![("origin".to_owned(), "cluster-a".to_owned())]
    );
    // The config override, on b2.
    let applied = wait_until(WAIT, || {
        b2.ctx().runtime.current().config.mqtt.receive_maximum == 7
    })
    .await;
    assert!(applied, "b2 applies the imported override");
    let with_a_key = Api::new(b2.http_addr().expect("http")).with_key(Some(&a_key));
    let (status, configs) = with_a_key.get("/api/v5/configs").await;
    assert_eq!(
        (status, configs["mqtt"]["receive_maximum"].clone()),
        (200, json!(7))
    );

    // Importing again is an upsert: same counts, nothing doubled.
    let (status, again) = import(&b2, doc.to_string().as_bytes()).await;
    assert_eq!(
        (status, again["auth_users"].clone()),
        (200, json!(1)),
        "{again}"
    );
    assert_eq!(b2.core().read(|t| t.banned_count()), 1);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_export_streams_every_row_once_and_an_import_is_an_upsert() {
    let _serial = serial().await;
    let cluster = Cluster::start(1, fast_timings()).await;
    let r1 = cluster.start_replicant_with("r1", config).await;
    let r2 = cluster.start_replicant_with("r2", config).await;
    // More rows than a page and more bytes than a chunk; an expired one and a `$SYS` one.
    const N: usize = 1300;
    let big = "x".repeat(2048);
    let mut ops: Vec<_> = (0..N)
        .map(|i| retained_op(&format!("bulk/{i:05}"), &big))
        .collect();
    let mut expired = retained_op("gone/x", "old");
    if let Some(op::Kind::RetainedSet(s)) = &mut expired.kind {
        s.message.as_mut().expect("message").expires_at_ms = Some(1);
    }
    ops.push(expired);
    ops.push(retained_op("$SYS/brokers/r1/x", "sys"));
    for chunk in ops.chunks(200) {
        let committed = r1.core().transact(chunk.to_vec()).await.expect("transact");
        assert_applied(&committed.results);
    }
    let (status, body) = api(&r1).raw("GET", EXPORT, None, b"").await;
    assert_eq!(status, 200);
    assert!(body.len() > N * 2048 * 4 / 3, "{} bytes", body.len());
    let doc: Value = serde_json::from_slice(&body).expect("the streamed document parses");
    let topics: Vec<&str> = doc["retained"]
        .as_array()
        .expect("retained")
        .iter()
        .filter_map(|m| m["topic"].as_str())
        .collect();
    let want: Vec<String> = (0..N).map(|i| format!("bulk/{i:05}")).collect();
    assert_eq!(
        topics, want,
        "every message once, in topic order, none expired or $SYS"
    );

    // Upsert: a message written after the export stays; an expired one in the file is
    // left out and counted.
    let committed = r1
        .core()
        .transact(vec![retained_op("extra/x", "kept")])
        .await
        .expect("transact");
    assert_applied(&committed.results);
    let mut doc = doc;
    if let Some(list) = doc["retained"].as_array_mut() {
        list.push(json!({ "topic": "late/x", "payload": "eA==", "qos": 0,
                          "published_at_ms": 1, "expires_at_ms": 2 }));
    }
    let (status, counts) = import(&r2, doc.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{counts}");
    assert_eq!(counts["retained"], N, "{counts}");
    assert_eq!(counts["skipped"]["retained"], 1, "{counts}");
    let kept = r2
        .core()
        .read(|t| t.retained("extra/x").is_some() && t.retained("late/x").is_none());
    assert!(
        kept,
        "rows the file lacks stay; expired ones are not written"
    );

    // The same through `ctl data export --file F` and `ctl data import F`.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backup.json");
    let ctl = |command| Ctl {
        api: r2.http_addr().expect("http"),
        api_key: Some(KEY.into()),
        api_key_file: None,
        command: CtlCommand::Data(command),
    };
    let said = replicant_node::ctl::run(ctl(Data::Export {
        file: Some(file.clone()),
    }))
    .await
    .expect("ctl data export");
    assert!(said.contains("backup.json"), "{said}");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("a document");
    assert_eq!(saved["retained"].as_array().map(Vec::len), Some(N + 1));
    let answer = replicant_node::ctl::run(ctl(Data::Import { file }))
        .await
        .expect("ctl data import");
    let counts: Value = serde_json::from_str(&answer).expect("counts");
    assert_eq!(counts["retained"], N + 1, "{counts}");
    cluster.stop().await;
}
