//! The core's admin HTTP (plain) with an API key, on real cores in one process: adding or
//! removing a voter without the key, or with a wrong one, is refused (401) and changes
//! nothing; with the key it works; `/health` stays open and `/metrics` is open unless
//! metrics auth is on. Without any key (loopback only) browser-looking requests are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use core_node::http::auth::ApiKey;
use core_node::http::{self, HttpConfig};

#[path = "common/admin.rs"]
mod admin;
use admin::{counter, free_ports, http, members, start, voters, wait_until};

const KEY: &str = "k3y-for-the-admin-api";
const BEARER: &str = "Bearer k3y-for-the-admin-api";

fn keyed(metrics_auth: bool) -> HttpConfig {
    HttpConfig {
        api_key: Some(ApiKey::new(KEY).unwrap()),
        metrics_auth,
        ..HttpConfig::plain("127.0.0.1:0".parse().unwrap())
    }
}

fn denied(reason: &str) -> u64 {
    counter(&format!(
        "meshmq_core_http_denied_total{{reason=\"{reason}\"}}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_need_the_api_key() {
    let _ = core_node::prometheus::prometheus_handle();
    let dir = tempfile::tempdir().unwrap();
    meshmq_shared::quic::certs::generate(
        &dir.path().join("certs"),
        &["core-1".into(), "core-2".into()],
    )
    .unwrap();
    let ports = free_ports(2);
    let initial = [(1, format!("127.0.0.1:{}", ports[0]))];
    let leader = start(1, ports[0], &initial, dir.path()).await;
    let second = start(2, ports[1], &initial, dir.path()).await;
    wait_until("core 1 leads", || leader.is_leader()).await;
    let api = http::serve(leader.clone(), keyed(false)).await.unwrap();
    let add = format!(r#"{{"id": 2, "addr": "{}"}}"#, second.addr);
    let path = "/api/v5/cluster/cores";
    let (no_creds, bad_key) = (denied("no_credentials"), denied("bad_key"));

    // Without the key, or with a wrong one: 401, and core 2 is not even a learner.
    let (status, body) = http(api, "POST", path, &[], &add).await;
    assert_eq!(status, 401, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "BAD_API_KEY_OR_SECRET", "{body}");
    assert!(!body.contains(KEY));
    for wrong in [
        "Bearer nope",
        "Bearer k3y-for-the-admin-ap",
        "Basic azN5",
        BEARER.trim_start_matches("Bearer "),
    ] {
        let (status, body) = http(api, "POST", path, &[("authorization", wrong)], &add).await;
        assert_eq!(status, 401, "{wrong}: {body}");
    }
    assert_eq!(members(&leader), vec![1], "nothing changed");
    assert!(denied("no_credentials") >= no_creds + 3);
    assert!(denied("bad_key") >= bad_key + 2);

    // Reading the group needs the key too.
    let (status, _) = http(api, "GET", "/api/v5/cluster", &[], "").await;
    assert_eq!(status, 401);
    let (status, body) = http(
        api,
        "GET",
        "/api/v5/cluster",
        &[("authorization", BEARER)],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let group: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(group["members"].as_array().unwrap().len(), 1, "{body}");

    // With the key: core 2 is added as a voter.
    let (status, body) = http(api, "POST", path, &[("authorization", BEARER)], &add).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(voters(&leader), vec![1, 2]);

    // Removing it without the key, or with a wrong one: 401, still a voter.
    let remove = "/api/v5/cluster/cores/2";
    let (status, _) = http(api, "DELETE", remove, &[], "").await;
    assert_eq!(status, 401);
    let (status, _) = http(api, "DELETE", remove, &[("authorization", "Bearer x")], "").await;
    assert_eq!(status, 401);
    assert_eq!(voters(&leader), vec![1, 2], "nothing changed");
    let (_, body) = http(
        api,
        "GET",
        "/api/v5/cluster",
        &[("authorization", BEARER)],
        "",
    )
    .await;
    assert!(body.contains(&second.addr), "{body}");

    // With the key it goes.
    let (status, body) = http(api, "DELETE", remove, &[("authorization", BEARER)], "").await;
    assert_eq!(status, 200, "{body}");
    wait_until("core 2 out of the voters", || voters(&leader) == vec![1]).await;

    // /health and /metrics need nothing.
    let (status, body) = http(api, "GET", "/health", &[], "").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(api, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(body.contains("meshmq_core_http_denied_total"), "{body}");
    // The process figures are read for every scrape.
    for name in meshmq_shared::metrics::PROCESS {
        assert!(
            body.contains(&format!("\n{name} ")),
            "{name} missing: {body}"
        );
    }

    second.shutdown().await;
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_auth_closes_metrics_but_not_health() {
    let dir = tempfile::tempdir().unwrap();
    let core = admin::single_core(dir.path(), &["core-1"]).await;
    let closed = http::serve(core.clone(), keyed(true)).await.unwrap();
    let (status, body) = http(closed, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("BAD_API_KEY_OR_SECRET"), "{body}");
    let (status, _) = http(
        closed,
        "GET",
        "/metrics",
        &[("authorization", "Bearer no")],
        "",
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = http(closed, "GET", "/metrics", &[("authorization", BEARER)], "").await;
    assert_eq!(status, 200);
    assert!(body.contains("meshmq_raft"), "{body}");
    let (status, _) = http(closed, "GET", "/health", &[], "").await;
    assert_eq!(status, 200);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_loopback_refuses_browser_requests() {
    let dir = tempfile::tempdir().unwrap();
    let core = admin::single_core(dir.path(), &["core-1"]).await;
    let open = http::serve(
        core.clone(),
        HttpConfig::plain("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    let (status, body) = http(open, "GET", "/api/v5/cluster", &[], "").await;
    assert_eq!(status, 200, "a local tool needs no key: {body}");
    let (status, _) = http(
        open,
        "GET",
        "/api/v5/cluster",
        &[("host", "localhost:1")],
        "",
    )
    .await;
    assert_eq!(status, 200);

    // A page in the operator's browser: an Origin header, or a name of its own in Host.
    let add = r#"{"id": 7, "addr": "127.0.0.1:9"}"#;
    let path = "/api/v5/cluster/cores";
    let origin = [("origin", "http://attacker.example")];
    let (status, body) = http(open, "POST", path, &origin, add).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("FORBIDDEN"), "{body}");
    let rebound = [("host", "attacker.example:18084")];
    let (status, _) = http(open, "POST", path, &rebound, add).await;
    assert_eq!(status, 403);
    let (status, _) = http(open, "DELETE", "/api/v5/cluster/cores/1", &origin, "").await;
    assert_eq!(status, 403);
    assert_eq!(members(&core), vec![1], "nothing changed");
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let core = admin::single_core(dir.path(), &["core-1"]).await;
    let api = http::serve(core.clone(), keyed(false)).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(api).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // The server gives up on the headers (HEADER_TIMEOUT) and closes: read ends in EOF or
    // an error, well before the test's own deadline.
    let limit = http::server::HEADER_TIMEOUT + std::time::Duration::from_secs(10);
    let mut seen = Vec::new();
    let read = tokio::time::timeout(limit, slow.read_to_end(&mut seen))
        .await
        .expect("the server closed the connection");
    assert!(
        !String::from_utf8_lossy(&seen).contains(" 200 "),
        "{read:?}"
    );
    // A well-behaved client is still served.
    let (status, _) = http(api, "GET", "/health", &[], "").await;
    assert_eq!(status, 200);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_path_or_method_trick_reaches_the_api_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let core = admin::single_core(dir.path(), &["core-1"]).await;
    let api = http::serve(core.clone(), keyed(false)).await.unwrap();
    let add = r#"{"id": 7, "addr": "127.0.0.1:9"}"#;
    // Each spelling of a protected route: the guard answers (401) or no route matches (404,
    // 405, 400); never a handler's answer.
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let tricks: &[(&str, &str, Headers)] = &[
        ("HEAD", "/api/v5/cluster", &[]),
        ("GET", "/api/v5/cluster?x=1", &[]),
        ("GET", "http://127.0.0.1/api/v5/cluster", &[]),
        ("GET", "/api/v5/cluster/", &[]),
        ("GET", "//api/v5/cluster", &[]),
        ("GET", "/api/v5//cluster", &[]),
        ("GET", "/api/v5/./cluster", &[]),
        ("GET", "/api/v5/x/../cluster", &[]),
        ("GET", "/api/v5/%63luster", &[]),
        ("GET", "/api%2Fv5%2Fcluster", &[]),
        ("GET", "/API/V5/CLUSTER", &[]),
        ("GET", "/health/../api/v5/cluster", &[]),
        ("POST", "/api/v5/cluster/cores/", &[]),
        ("POST", "//api/v5/cluster/cores", &[]),
        ("POST", "/api/v5/cluster/cores?", &[]),
        ("POST", "/health", &[("x-http-method-override", "POST")]),
        (
            "GET",
            "/api/v5/cluster/cores",
            &[("x-http-method-override", "POST")],
        ),
        ("PUT", "/api/v5/cluster/cores", &[]),
        ("DELETE", "/api/v5/cluster/cores/1/", &[]),
        ("DELETE", "/api/v5/cluster/cores/%31", &[]),
        ("DELETE", "/api/v5/cluster/cores/1?force=true", &[]),
        // A credential the guard must not take for the key.
        ("GET", "/api/v5/cluster", &[("authorization", "Bearer")]),
        ("GET", "/api/v5/cluster", &[("authorization", "Bearer ")]),
        ("GET", "/api/v5/cluster", &[("x-api-key", KEY)]),
        ("GET", "/api/v5/cluster", &[("cookie", KEY)]),
        (
            "GET",
            "/api/v5/cluster",
            &[("authorization", "Basic azN5LWZvci10aGUtYWRtaW4tYXBp")],
        ),
    ];
    for (method, path, headers) in tricks {
        let (status, body) = http(api, method, path, headers, add).await;
        assert!(
            matches!(status, 400 | 401 | 404 | 405),
            "{method} {path} {headers:?}: {status} {body}"
        );
        assert!(!body.contains("members"), "{method} {path}: {body}");
    }
    // The exact routes answer 401 to the same requests without a key.
    for (method, path) in [
        ("HEAD", "/api/v5/cluster"),
        ("GET", "http://127.0.0.1/api/v5/cluster"),
        ("DELETE", "/api/v5/cluster/cores/%31"),
    ] {
        let (status, _) = http(api, method, path, &[], "").await;
        assert_eq!(status, 401, "{method} {path}");
    }
    assert_eq!(members(&core), vec![1], "nothing changed");
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_is_given_up_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let core = admin::single_core(dir.path(), &["core-1"]).await;
    let api = http::serve(core.clone(), keyed(false)).await.unwrap();
    // Headers with the key, then one byte of a promised 1000: the connection would hold
    // one of the listener's slots for as long as the client likes.
    let mut slow = tokio::net::TcpStream::connect(api).await.unwrap();
    let head = format!(
        "POST /api/v5/cluster/cores HTTP/1.1\r\nhost: 127.0.0.1\r\n\
         authorization: {BEARER}\r\ncontent-type: application/json\r\n\
         content-length: 1000\r\n\r\n{{"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let limit = http::BODY_TIMEOUT + std::time::Duration::from_secs(10);
    let mut seen = Vec::new();
    let read = tokio::time::timeout(limit, slow.read_to_end(&mut seen))
        .await
        .expect("the server gave up on the body and closed");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 408"), "{read:?}: {text}");

    // A body larger than the limit is refused from its Content-Length, unread.
    let big = "x".repeat(http::MAX_BODY + 1);
    let (status, _) = http(
        api,
        "POST",
        "/api/v5/cluster/cores",
        &[("authorization", BEARER)],
        &big,
    )
    .await;
    assert_eq!(status, 413);
    // Requests with a body in time are served as before.
    let (status, body) = http(
        api,
        "POST",
        "/api/v5/cluster/cores",
        &[("authorization", BEARER)],
        r#"{"id": 0, "addr": ""}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(members(&core), vec![1], "nothing changed");
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_off_loopback_without_credentials_is_refused_for_embedders_too() {
    let dir = tempfile::tempdir().unwrap();
    let core = admin::single_core(dir.path(), &["core-1"]).await;
    // Not only the binary's flags: whoever calls serve() gets the same refusal, and nothing
    // is bound.
    let open = HttpConfig::plain("0.0.0.0:0".parse().unwrap());
    let err = http::serve(core.clone(), open).await.unwrap_err();
    assert!(err.to_string().contains("not on loopback"), "{err}");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    core.shutdown().await;
}
