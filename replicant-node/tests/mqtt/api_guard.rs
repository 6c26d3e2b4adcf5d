//! The operator API without `listeners.api_key` (HTTP listener on loopback) refuses what a
//! browser would send: any request with an `Origin` header, or a `Host` that is a name
//! other than `localhost` (DNS rebinding), with 403 `FORBIDDEN`, on the authentication,
//! banned, load-rebalance, clients, topics, publish and retained routes alike, and writes nothing. Scripts (no `Origin`, an IP
//! or `localhost` host) still get through; with a key, the key alone decides. JSON-body
//! routes refuse a body not declared `application/json` (415).

use base64::Engine as _;
use meshmq_proto::tables::BannedAs;
use meshmq_shared::config::UserIdType;
use serde_json::Value;

use crate::authn::builtin;
use crate::common::api_client::Api;
use crate::common::{self, TestBroker};

const USERS: &str = "/api/v5/authentication/password_based:built_in_database/users";

fn api(b: &TestBroker) -> Api {
    Api::new(b.http_addr().expect("http listener"))
}

/// Every operator route kind: reads and writes of the three REST modules.
fn routes() -> Vec<(&'static str, String, &'static [u8])> {
    vec![
        ("GET", "/api/v5/authentication".into(), b""),
        ("GET", USERS.into(), b""),
        ("POST", USERS.into(), br#"{"user_id":"u","password":"p"}"#),
        ("PUT", format!("{USERS}/u"), br#"{"is_superuser":true}"#),
        ("DELETE", format!("{USERS}/u"), b""),
        (
            "POST",
            "/api/v5/authentication/password_based:built_in_database/import_users?type=plain"
                .into(),
            br#"[{"user_id":"u","password":"p"}]"#,
        ),
        ("GET", "/api/v5/banned".into(), b""),
        (
            "POST",
            "/api/v5/banned".into(),
            br#"{"as":"clientid","who":"c"}"#,
        ),
        ("DELETE", "/api/v5/banned".into(), b""),
        ("GET", "/api/v5/load_rebalance/status".into(), b""),
        ("GET", "/api/v5/clients".into(), b""),
        ("DELETE", "/api/v5/clients/c".into(), b""),
        (
            "POST",
            "/api/v5/clients/c/subscribe".into(),
            br#"{"topic":"t"}"#,
        ),
        ("GET", "/api/v5/subscriptions".into(), b""),
        ("GET", "/api/v5/topics".into(), b""),
        (
            "POST",
            "/api/v5/publish".into(),
            br#"{"topic":"t","payload":"p"}"#,
        ),
        ("DELETE", "/api/v5/mqtt/retainer/message/t".into(), b""),
    ]
}

async fn send(
    api: &Api,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let (status, body) = api.send(method, path, headers, body).await;
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, v)
}

#[tokio::test]
async fn without_a_key_browser_requests_are_refused_on_every_operator_route() {
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let api = api(&b);
    let ip_host = b.http_addr().expect("http").to_string();
    let port = b.http_addr().expect("http").port();
    let rebound = format!("attacker.example:{port}");
    let refused: [&[(&str, &str)]; 4] = [
        // CSRF: a page on another site posts to the loopback listener.
        &[("Host", &ip_host), ("Origin", "http://attacker.example")],
        // Even a same-origin-looking or opaque origin.
        &[("Host", &ip_host), ("Origin", "null")],
        // DNS rebinding: the attacker's name, resolved to 127.0.0.1.
        &[("Host", &rebound)],
        &[("Host", "localhost.attacker.example")],
    ];
    for headers in refused {
        for (method, path, body) in routes() {
            let mut h = headers.to_vec();
            h.push(("Content-Type", "application/json"));
            let (status, v) = send(&api, method, &path, &h, body).await;
            assert_eq!(status, 403, "{method} {path} {headers:?}: {v}");
            assert_eq!(v["code"], "FORBIDDEN", "{method} {path}");
        }
    }
    let node = &b.nodes()[0];
    assert_eq!(
        node.core().read(|t| t.auth_user_count()),
        0,
        "nothing written"
    );
    assert!(
        node.core()
            .read(|t| t.banned(BannedAs::Clientid, "c").is_none())
    );
    let metrics = common::metrics_text(&b).await;
    for reason in ["origin", "host"] {
        let n = common::metric_sum(
            &metrics,
            "meshmq_api_forbidden_total",
            &[("reason", reason)],
        );
        assert!(n.is_some_and(|n| n >= 20.0), "{reason}: {n:?}");
    }

    // A script: an IP address or localhost as Host (or none), no Origin.
    let localhost = format!("localhost:{port}");
    let json = ("Content-Type", "application/json");
    for (i, headers) in [
        vec![("Host", ip_host.as_str()), json],
        vec![("Host", localhost.as_str()), json],
        vec![("Host", "LOCALHOST"), json],
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(r#"{{"user_id":"script{i}","password":"p"}}"#);
        let (status, v) = send(&api, "POST", USERS, &headers, body.as_bytes()).await;
        assert_eq!(status, 201, "{headers:?}: {v}");
        let (status, v) = send(&api, "GET", "/api/v5/banned", &headers, b"").await;
        assert_eq!(status, 200, "{headers:?}: {v}");
    }
}

#[tokio::test]
async fn with_a_key_the_key_alone_decides() {
    let b = common::start_broker(|c| {
        builtin(UserIdType::Username)(c);
        c.listeners.api_key = Some("k3y-0123456789abcdef".into());
    })
    .await;
    let api = api(&b).with_key(Some("k3y-0123456789abcdef"));
    let headers = [
        ("Host", "broker.example.com:8080"),
        ("Origin", "https://dashboard.example.com"),
        ("Content-Type", "application/json"),
    ];
    let (status, v) = send(
        &api,
        "POST",
        USERS,
        &headers,
        br#"{"user_id":"k","password":"p"}"#,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = send(&api.with_key(None), "GET", USERS, &headers, b"").await;
    assert_eq!((status, v["code"].as_str()), (401, Some("UNAUTHORIZED")));

    // An API key sent as HTTP Basic (what a browser caches and attaches on its own) is
    // refused from another origin, accepted from the same origin and from scripts.
    let (status, made) = api
        .json(
            "POST",
            "/api/v5/api_key",
            &serde_json::json!({"name": "browser"}),
        )
        .await;
    assert_eq!(status, 200, "{made}");
    let pair = format!(
        "{}:{}",
        made["api_key"].as_str().expect("id"),
        made["api_secret"].as_str().expect("secret")
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    );
    let bare = api.with_key(None);
    let with = |origin: &'static str| {
        [
            ("Host", "broker.example.com:8080"),
            ("Origin", origin),
            ("Authorization", basic.as_str()),
        ]
    };
    let (status, v) = send(
        &bare,
        "GET",
        USERS,
        &with("https://dashboard.example.com"),
        b"",
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("FORBIDDEN")),
        "{v}"
    );
    let (status, v) = send(
        &bare,
        "GET",
        USERS,
        &with("http://broker.example.com:8080"),
        b"",
    )
    .await;
    assert_eq!(status, 200, "same origin: {v}");
    let script = [
        ("Host", "broker.example.com:8080"),
        ("Authorization", basic.as_str()),
    ];
    assert_eq!(send(&bare, "GET", USERS, &script, b"").await.0, 200);
}

#[tokio::test]
async fn json_body_routes_need_the_json_content_type() {
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let api = api(&b);
    let create = br#"{"user_id":"u","password":"p"}"#;
    assert_eq!(
        api.call("POST", USERS, Some("application/json"), create)
            .await
            .0,
        201
    );
    let cases: [(&str, String, &[u8]); 7] = [
        ("POST", USERS.into(), br#"{"user_id":"v","password":"p"}"#),
        (
            "POST",
            "/api/v5/authorization/sources/built_in_database/rules/all".into(),
            br#"{"rules":[{"topic":"t","permission":"allow","action":"all"}]}"#,
        ),
        ("PUT", format!("{USERS}/u"), br#"{"is_superuser":true}"#),
        (
            "POST",
            "/api/v5/banned".into(),
            br#"{"as":"clientid","who":"c"}"#,
        ),
        ("POST", "/api/v5/publish".into(), br#"{"topic":"t"}"#),
        ("POST", "/api/v5/publish/bulk".into(), br#"[{"topic":"t"}]"#),
        (
            "POST",
            "/api/v5/clients/c/subscribe".into(),
            br#"{"topic":"t"}"#,
        ),
    ];
    for (method, path, body) in cases {
        // What a cross-site form or fetch can send without a preflight, and no type at all.
        for ct in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let (status, v) = api.call(method, &path, ct, body).await;
            assert_eq!(status, 415, "{method} {path} {ct:?}: {v}");
            assert_eq!(v["code"], "UNSUPPORTED_MEDIA_TYPE");
        }
    }
    let node = &b.nodes()[0];
    assert!(node.core().read(|t| t.auth_user("v").is_none()));
    assert_eq!(
        node.core()
            .read(|t| t.auth_user("u").map(|u| u.is_superuser)),
        Some(false)
    );
    assert!(
        node.core()
            .read(|t| t.banned(BannedAs::Clientid, "c").is_none())
    );
    let ok = api
        .call(
            "PUT",
            &format!("{USERS}/u"),
            Some("application/json; charset=utf-8"),
            br#"{"is_superuser":true}"#,
        )
        .await;
    assert_eq!(ok.0, 200, "{}", ok.1);
}
