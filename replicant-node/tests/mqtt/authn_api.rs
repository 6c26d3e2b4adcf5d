//! The authentication REST API on a node with the built-in database authenticator: the
//! chain listed (by EMQX's id, `%3A`-encoded too), users created, read, listed page by page
//! with filters, changed and deleted (201/204, 409, 404, 400), the API key enforced on every
//! route, and what the API writes decides CONNECTs (right password in, wrong one 0x86).
//! Imports in each format (EMQX JSON and CSV, hash and plain, as multipart or raw body; a
//! mosquitto password file) let their users in; bad rows come back with their line; an
//! export imported again gives the same users.

use meshmq_shared::auth::password::{self, Algorithm, SaltPosition};
use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{ProtocolVersion, ReasonCode};
use meshmq_shared::config::UserIdType;
use serde_json::{Value, json};

use crate::authn::builtin;
use crate::common::api_client::Api;
use crate::common::raw::{RawClient, connect_packet};
use crate::common::{self, TestBroker, WAIT, wait_until};

const ID: &str = "password_based:built_in_database";
const USERS: &str = "/api/v5/authentication/password_based:built_in_database/users";
const IMPORT: &str = "/api/v5/authentication/password_based%3Abuilt_in_database/import_users";
const EXPORT: &str = "/api/v5/authentication/password_based:built_in_database/export_users";

fn api(b: &TestBroker) -> Api {
    Api::new(b.http_addr().expect("http listener"))
}

async fn connect_code(b: &TestBroker, v: ProtocolVersion, user: &str, secret: &str) -> ReasonCode {
    let mut c = connect_packet(v, &common::unique("api-client"));
    c.username = Some(user.to_owned());
    c.password = Some(secret.as_bytes().to_vec().into());
    let (_client, ack) = RawClient::connect_with(b.mqtt_addr(), c).await;
    ack.code
}

/// Waits until every node's replica has (or lacks) `user`.
async fn visible(b: &TestBroker, user: &str, present: bool) {
    let ok = wait_until(WAIT, || {
        b.nodes()
            .iter()
            .all(|n| n.core().read(|t| t.auth_user(user).is_some()) == present)
    })
    .await;
    assert!(ok, "user {user} present={present} on every node");
}

fn sha() -> Algorithm {
    Algorithm::Sha256 {
        salt_position: SaltPosition::Suffix,
    }
}

/// The `password_hash` and `salt` of an EMQX export row with `secret`, salted SHA-256 (the authenticator's).
fn emqx_row(secret: &str, salt: [u8; 16]) -> (String, String) {
    let s = password::hash(&sha(), secret.as_bytes(), salt).expect("hash");
    (s.hash, s.salt)
}

#[tokio::test]
async fn the_chain_is_listed_by_emqx_id_without_secrets() {
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let api = api(&b);
    let (status, list) = api.get("/api/v5/authentication").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list[0]["id"], ID);
    assert_eq!(list[0]["mechanism"], "password_based");
    assert_eq!(list[0]["backend"], "built_in_database");
    assert_eq!(list[0]["enable"], true);
    assert_eq!(list[0]["password_hash_algorithm"]["name"], "sha256");
    for path in [
        "/api/v5/authentication/password_based:built_in_database",
        "/api/v5/authentication/password_based%3Abuilt_in_database",
        "/api/v5/authentication/password_based%3abuilt_in_database",
    ] {
        let (status, one) = api.get(path).await;
        assert_eq!((status, &one["id"]), (200, &json!(ID)), "{path}");
    }
    let (status, e) = api.get("/api/v5/authentication/jwt").await;
    assert_eq!((status, e["code"].as_str()), (404, Some("NOT_FOUND")));
    let (status, _) = api.get("/api/v5/authentication/jwt/users").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn users_are_created_read_listed_changed_and_deleted() {
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let api = api(&b);
    for (i, name) in ["ann", "bob", "carl", "dora", "ed"].iter().enumerate() {
        let body = json!({ "user_id": name, "password": "pw", "is_superuser": i % 2 == 0 });
        let (status, v) = api.json("POST", USERS, &body).await;
        assert_eq!(status, 201, "{v}");
        assert_eq!(v, json!({ "user_id": name, "is_superuser": i % 2 == 0 }));
    }
    let again = json!({ "user_id": "bob", "password": "other" });
    let (status, v) = api.json("POST", USERS, &again).await;
    assert_eq!((status, v["code"].as_str()), (409, Some("ALREADY_EXISTS")));

    let (status, v) = api.get(&format!("{USERS}/carl")).await;
    assert_eq!(
        (status, v),
        (200, json!({ "user_id": "carl", "is_superuser": true }))
    );

    // Pages, in user id order, with EMQX's meta.
    let (status, v) = api.get(&format!("{USERS}?page=2&limit=2")).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|u| u["user_id"].as_str())
        .collect();
    assert_eq!(ids, ["carl", "dora"]);
    assert_eq!(
        v["meta"],
        json!({ "page": 2, "limit": 2, "count": 5, "hasnext": true })
    );
    let (_, v) = api.get(&format!("{USERS}?page=3&limit=2")).await;
    assert_eq!(v["meta"]["hasnext"], false);
    assert_eq!(v["data"].as_array().map(Vec::len), Some(1));
    let (_, v) = api.get(&format!("{USERS}?like_user_id=o")).await;
    assert_eq!(v["meta"]["count"], 2, "bob, dora: {v}");
    let (_, v) = api.get(&format!("{USERS}?is_superuser=true")).await;
    assert_eq!(v["meta"]["count"], 3, "ann, carl, ed: {v}");
    let (_, v) = api
        .get(&format!("{USERS}?is_superuser=false&like_user_id=b"))
        .await;
    assert_eq!(
        v["data"],
        json!([{ "user_id": "bob", "is_superuser": false }])
    );

    // Change, delete, and the unknown.
    let (status, v) = api
        .json(
            "PUT",
            &format!("{USERS}/bob"),
            &json!({ "is_superuser": true }),
        )
        .await;
    assert_eq!(
        (status, v),
        (200, json!({ "user_id": "bob", "is_superuser": true }))
    );
    let (status, _) = api.delete(&format!("{USERS}/bob")).await;
    assert_eq!(status, 204);
    let (status, _) = api.get(&format!("{USERS}/bob")).await;
    assert_eq!(status, 404);
    let (status, _) = api.delete(&format!("{USERS}/bob")).await;
    assert_eq!(status, 404);
    let (status, _) = api
        .json(
            "PUT",
            &format!("{USERS}/nobody"),
            &json!({ "password": "x" }),
        )
        .await;
    assert_eq!(status, 404);

    // Bad requests: 400 with EMQX's error shape, counted.
    let bad: [(&str, &str, Option<Value>); 7] = [
        ("POST", USERS, Some(json!({ "user_id": "x" }))),
        (
            "POST",
            USERS,
            Some(json!({ "user_id": "", "password": "p" })),
        ),
        (
            "POST",
            USERS,
            Some(json!({ "user_id": "x", "password": "" })),
        ),
        (
            "POST",
            USERS,
            Some(json!({ "user_id": "x", "password": "p", "role": 1 })),
        ),
        ("GET", &format!("{USERS}?limit=0"), None),
        ("GET", &format!("{USERS}?page=abc"), None),
        (
            "PUT",
            &format!("{USERS}/ann"),
            Some(json!({ "password": 5 })),
        ),
    ];
    for (method, path, body) in bad {
        let (status, v) = match body {
            Some(body) => api.json(method, path, &body).await,
            None => api.call(method, path, None, b"").await,
        };
        assert_eq!(status, 400, "{method} {path}: {v}");
        assert_eq!(v["code"], "BAD_REQUEST");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A body over the user routes' 256 KiB limit: 413, in the same JSON shape.
    let huge = json!({ "user_id": "big", "password": "p".repeat(300 * 1024) });
    let (status, v) = api.json("POST", USERS, &huge).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE")),
        "{v}"
    );
    let metrics = common::metrics_text(&b).await;
    let counted = common::metric_sum(
        &metrics,
        "meshmq_authn_api_errors_total",
        &[("code", "BAD_REQUEST")],
    );
    assert!(counted.is_some_and(|n| n >= 7.0), "{counted:?}");
}

#[tokio::test]
async fn every_route_needs_the_api_key_when_one_is_set() {
    let b = common::start_broker(|c| {
        builtin(UserIdType::Username)(c);
        c.listeners.api_key = Some("s3cret-key-0123456789".into());
    })
    .await;
    let routes = [
        ("GET", "/api/v5/authentication".to_owned()),
        ("GET", format!("/api/v5/authentication/{ID}")),
        ("GET", USERS.to_owned()),
        ("POST", USERS.to_owned()),
        ("GET", format!("{USERS}/u")),
        ("PUT", format!("{USERS}/u")),
        ("DELETE", format!("{USERS}/u")),
        ("POST", format!("{IMPORT}?type=plain")),
        ("GET", EXPORT.to_owned()),
    ];
    let body = br#"[{"user_id":"u","password":"p"}]"#;
    let api = api(&b);
    for key in [None, Some("wrong"), Some("S3CRET-KEY")] {
        for (method, path) in &routes {
            let (status, v) = api
                .with_key(key)
                .call(method, path, Some("application/json"), body)
                .await;
            assert_eq!(status, 401, "{method} {path} with {key:?}");
            assert_eq!(v["code"], "UNAUTHORIZED");
        }
    }
    assert!(b.nodes()[0].core().read(|t| t.auth_user("u").is_none()));
    let (status, v) = api
        .with_key(Some("s3cret-key-0123456789"))
        .call(
            "POST",
            &format!("{IMPORT}?type=plain"),
            Some("application/json"),
            body,
        )
        .await;
    assert_eq!((status, v["success"].as_u64()), (200, Some(1)), "{v}");
    let (status, _) = api
        .with_key(Some("s3cret-key-0123456789"))
        .get(&format!("{USERS}/u"))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_user_created_through_the_api_connects_and_a_wrong_password_is_refused() {
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let api = api(&b);
    let body = json!({ "user_id": "dev1", "password": "first" });
    assert_eq!(api.json("POST", USERS, &body).await.0, 201);
    visible(&b, "dev1", true).await;
    for v in [V5, V311] {
        assert_eq!(
            connect_code(&b, v, "dev1", "first").await,
            ReasonCode::Success
        );
        assert_eq!(
            connect_code(&b, v, "dev1", "wrong").await,
            ReasonCode::BadUserNameOrPassword,
            "{v:?}"
        );
    }
    // A new password replaces the old one everywhere.
    let path = format!("{USERS}/dev1");
    let (status, _) = api
        .json("PUT", &path, &json!({ "password": "second" }))
        .await;
    assert_eq!(status, 200);
    let row = b.nodes()[0].core().read(|t| t.auth_user("dev1").cloned());
    let everywhere = wait_until(WAIT, || {
        b.nodes()
            .iter()
            .all(|n| n.core().read(|t| t.auth_user("dev1").cloned()) == row)
    })
    .await;
    assert!(everywhere, "the new password reached every node");
    assert_eq!(
        connect_code(&b, V5, "dev1", "second").await,
        ReasonCode::Success
    );
    assert_eq!(
        connect_code(&b, V5, "dev1", "first").await,
        ReasonCode::BadUserNameOrPassword
    );
    // Deleted: unknown to the chain (every authenticator ignores: 0x87).
    assert_eq!(api.delete(&path).await.0, 204);
    visible(&b, "dev1", false).await;
    assert_eq!(
        connect_code(&b, V5, "dev1", "second").await,
        ReasonCode::NotAuthorized
    );
}

#[tokio::test]
async fn imports_in_every_format_let_their_users_in() {
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let api = api(&b);

    // EMQX JSON, type=hash (default), as `curl -F filename=@users.json`.
    let (h1, s1) = emqx_row("pj1", [1; 16]);
    let json_file = json!([
        { "user_id": "json1", "password_hash": h1, "salt": s1, "is_superuser": true },
        { "user_id": "json2", "password_hash": "not hex", "salt": "" },
    ]);
    let bytes = serde_json::to_vec(&json_file).expect("json");
    let (status, v) = api.upload(IMPORT, "users.json", &bytes).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["total"].as_u64(),
            v["success"].as_u64(),
            v["failed"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["errors"][0]["line"], 2, "the second element: {v}");

    // EMQX CSV, type=hash, raw body.
    let (h2, s2) = emqx_row("pc1", [2; 16]);
    let csv = format!("user_id,password_hash,salt,is_superuser\ncsv1,{h2},{s2},false\ncsv2\n");
    let (status, v) = api
        .call(
            "POST",
            &format!("{IMPORT}?type=hash"),
            Some("text/csv"),
            csv.as_bytes(),
        )
        .await;
    assert_eq!((status, v["success"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(v["errors"][0]["line"], 3, "{v}");

    // CSV, type=plain, multipart: hashed with the authenticator's algorithm.
    let plain = "user_id,password,is_superuser\nplain1,pp1,true\n";
    let (status, v) = api
        .upload(
            &format!("{IMPORT}?type=plain"),
            "more.csv",
            plain.as_bytes(),
        )
        .await;
    assert_eq!((status, v["success"].as_u64()), (200, Some(1)), "{v}");
    let stored = b.nodes()[0].core().read(|t| t.auth_user("plain1").cloned());
    let stored = stored.and_then(|u| u.password).expect("plain1 stored");
    assert_eq!(stored.name, "sha256", "hashed, not kept plain");
    assert!(!stored.hash.contains("pp1"));

    // A mosquitto password file: each line keeps its own algorithm.
    let six = password::hash(&Algorithm::MosquittoSha512, b"pm6", [3; 16]).expect("$6$");
    let seven = password::hash(&Algorithm::MosquittoPbkdf2, b"pm7", [4; 16]).expect("$7$");
    let file = format!("mosq6:{}\nmosq7:{}\nbroken:$1$old\n", six.hash, seven.hash);
    let (status, v) = api
        .call(
            "POST",
            &format!("{IMPORT}?type=mosquitto"),
            None,
            file.as_bytes(),
        )
        .await;
    assert_eq!((status, v["success"].as_u64()), (200, Some(2)), "{v}");
    assert_eq!(v["errors"][0]["line"], 3, "{v}");

    for (user, secret) in [
        ("json1", "pj1"),
        ("csv1", "pc1"),
        ("plain1", "pp1"),
        ("mosq6", "pm6"),
        ("mosq7", "pm7"),
    ] {
        visible(&b, user, true).await;
        assert_eq!(
            connect_code(&b, V5, user, secret).await,
            ReasonCode::Success,
            "{user}"
        );
        assert_eq!(
            connect_code(&b, V5, user, "nope").await,
            ReasonCode::BadUserNameOrPassword,
            "{user}"
        );
    }

    // The same file again: identical users are skipped; a changed one is overridden.
    let (_, v) = api.upload(IMPORT, "users.json", &bytes).await;
    assert_eq!(
        (v["success"].as_u64(), v["skipped"].as_u64()),
        (Some(0), Some(1)),
        "{v}"
    );
    let changed = json!([{ "user_id": "json1", "password_hash": h1, "salt": s1 }]);
    let changed = serde_json::to_vec(&changed).expect("json");
    let (_, v) = api.upload(IMPORT, "users.json", &changed).await;
    assert_eq!(v["override"].as_u64(), Some(1), "{v}");
    let (_, u) = api.get(&format!("{USERS}/json1")).await;
    assert_eq!(u["is_superuser"], false, "overridden row applied");
}

#[tokio::test]
async fn bad_import_requests_are_refused_whole() {
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let api = api(&b);
    let row = br#"[{"user_id":"a","password":"p"}]"#;
    let cases: [(String, Option<&str>, &[u8]); 6] = [
        (format!("{IMPORT}?type=md5"), Some("application/json"), row),
        (format!("{IMPORT}?type=plain"), Some("text/plain"), row),
        (format!("{IMPORT}?type=plain"), Some("application/json"), b"{\"user_id\":\"a\"}"),
        (format!("{IMPORT}?type=plain"), Some("application/json"), b"[]"),
        (format!("{IMPORT}?type=hash"), Some("text/csv"), b"user_id,salt\na,b\n"),
        (
            format!("{IMPORT}?type=plain"),
            Some("multipart/form-data; boundary=x"),
            b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"u.json\"\r\n\r\n[]\r\n--x--\r\n",
        ),
    ];
    for (path, ct, body) in cases {
        let (status, v) = api.call("POST", &path, ct, body).await;
        assert_eq!(status, 400, "{path} {ct:?}: {v}");
        assert_eq!(v["code"], "BAD_REQUEST");
    }
    let (status, _) = api
        .upload(&format!("{IMPORT}?type=plain"), "users.txt", row)
        .await;
    assert_eq!(status, 400, "the extension names the format");
    assert_eq!(b.nodes()[0].core().read(|t| t.auth_user_count()), 0);
}

#[tokio::test]
async fn an_export_imported_again_gives_the_same_users() {
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let api = api(&b);
    // Users of three algorithms: API (sha256), mosquitto $7$, plain import (sha256).
    let body = json!({ "user_id": "api-user", "password": "pa", "is_superuser": true });
    assert_eq!(api.json("POST", USERS, &body).await.0, 201);
    let seven = password::hash(&Algorithm::MosquittoPbkdf2, b"pm", [5; 16]).expect("$7$");
    let file = format!("mosq:{}\n", seven.hash);
    let (status, _) = api
        .call(
            "POST",
            &format!("{IMPORT}?type=mosquitto"),
            None,
            file.as_bytes(),
        )
        .await;
    assert_eq!(status, 200);
    let plain = br#"[{"user_id":"plain","password":"pp"}]"#;
    let (status, _) = api
        .call(
            "POST",
            &format!("{IMPORT}?type=plain"),
            Some("application/json"),
            plain,
        )
        .await;
    assert_eq!(status, 200);

    let (status, exported) = api.raw("GET", EXPORT, None, b"").await;
    assert_eq!(status, 200);
    let rows: Vec<Value> = serde_json::from_slice(&exported).expect("export is JSON");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[1]["user_id"], "mosq");
    assert_eq!(
        rows[1]["password_hash_algorithm"]["name"],
        "mosquitto_pbkdf2"
    );

    for user in ["api-user", "mosq", "plain"] {
        assert_eq!(api.delete(&format!("{USERS}/{user}")).await.0, 204);
    }
    let (status, v) = api.upload(IMPORT, "backup.json", &exported).await;
    assert_eq!((status, v["success"].as_u64()), (200, Some(3)), "{v}");
    for (user, secret) in [("api-user", "pa"), ("mosq", "pm"), ("plain", "pp")] {
        visible(&b, user, true).await;
        assert_eq!(
            connect_code(&b, V5, user, secret).await,
            ReasonCode::Success,
            "{user}"
        );
    }
    let (_, again) = api.raw("GET", EXPORT, None, b"").await;
    assert_eq!(again, exported, "the round trip changed nothing");
    let (_, u) = api.get(&format!("{USERS}/api-user")).await;
    assert_eq!(u["is_superuser"], true);
}

/// With a slow `password_hash_algorithm` (bcrypt), passwords set through the API and plain
/// imports are hashed with it (on the hashing pool, a row per task) and let their users in.
#[tokio::test]
async fn passwords_are_hashed_with_the_authenticators_algorithm() {
    let b = common::start_broker(|c| {
        builtin(UserIdType::Username)(c);
        if let Some(meshmq_shared::config::AuthenticatorConfig::BuiltInDatabase(a)) =
            c.authentication.first_mut()
        {
            a.password_hash_algorithm = Algorithm::Bcrypt { salt_rounds: 4 };
        }
    })
    .await;
    let api = api(&b);
    let body = json!({ "user_id": "slow-api", "password": "sa" });
    assert_eq!(api.json("POST", USERS, &body).await.0, 201);
    let plain = br#"[{"user_id":"slow1","password":"s1"},{"user_id":"slow2","password":"s2"}]"#;
    let (status, v) = api
        .call(
            "POST",
            &format!("{IMPORT}?type=plain"),
            Some("application/json"),
            plain,
        )
        .await;
    assert_eq!((status, v["success"].as_u64()), (200, Some(2)), "{v}");
    for (user, secret) in [("slow-api", "sa"), ("slow1", "s1"), ("slow2", "s2")] {
        visible(&b, user, true).await;
        let row = b.nodes()[0].core().read(|t| t.auth_user(user).cloned());
        let hash = row.and_then(|u| u.password).expect("stored");
        assert_eq!(hash.name, "bcrypt", "{user}");
        assert!(hash.hash.starts_with("$2b$04$"), "{user}");
        assert_eq!(
            connect_code(&b, V5, user, secret).await,
            ReasonCode::Success,
            "{user}"
        );
        assert_eq!(
            connect_code(&b, V5, user, "x").await,
            ReasonCode::BadUserNameOrPassword
        );
    }
}
