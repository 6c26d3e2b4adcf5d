//! API keys (`/api/v5/api_key`): a key created on r1 lets its holder in on r2, with EMQX's
//! Basic scheme and as a Bearer token; disabled, expired, deleted, unknown and wrong keys
//! get the same 401; keys from `api_key.bootstrap_file` exist after start, once, across
//! restarts and nodes; a bad file stops the start naming its line; the static
//! `listeners.api_key` still works; `/metrics` needs a key only with
//! `metrics_require_key`; the standalone binary's default generates a key file; with no key
//! anywhere the loopback behaviour is as before.

use std::net::SocketAddr;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use replicant_node::Broker;
use serde_json::{Value, json};

use crate::common::api_client::Api;
use crate::common::{test_config, unique, wait_until_async};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

const INVALID: &str = "invalid or expired API key";

/// A key id and its secret.
struct Key {
    id: String,
    secret: String,
}

impl Key {
    fn from_answer(v: &Value) -> Key {
        Key {
            id: v["api_key"].as_str().expect("api_key").to_owned(),
            secret: v["api_secret"].as_str().expect("api_secret").to_owned(),
        }
    }

    fn basic(&self) -> String {
        let pair = format!("{}:{}", self.id, self.secret);
        format!("Basic {}", STANDARD.encode(pair))
    }

    fn bearer(&self) -> String {
        format!("Bearer {}:{}", self.id, self.secret)
    }
}

/// `method path` with `Authorization: <auth>` if given and a JSON `body` if given.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let host = addr.to_string();
    let mut headers = vec![("Host", host.as_str())];
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let (status, raw) = Api::new(addr)
        .send(method, path, &headers, bytes.as_bytes())
        .await;
    let v = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    (status, v)
}

/// Asserts the 401 every refused key gets, once `addr`'s replica has the change that
/// refuses it (a write returns once applied on the node that made it; others follow).
async fn refused(addr: SocketAddr, auth: &str) {
    let end = std::time::Instant::now() + WAIT;
    loop {
        let (status, body) = call(addr, "GET", "/api/v5/api_key", Some(auth), None).await;
        if status != 200 || std::time::Instant::now() >= end {
            assert_eq!(status, 401, "{body}");
            assert_eq!(body["message"], INVALID, "{body}");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Waits until `auth` lets in on `addr`.
async fn accepted(addr: SocketAddr, auth: &str) -> bool {
    wait_until_async(WAIT, || async {
        call(addr, "GET", "/api/v5/api_key", Some(auth), None)
            .await
            .0
            == 200
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_on_r1_works_on_r2_until_disabled_expired_or_deleted() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let (h1, h2) = (r1.http_addr().expect("http"), r2.http_addr().expect("http"));

    // No key anywhere: loopback scripts get in, browser-like requests do not.
    assert_eq!(call(h1, "GET", "/api/v5/api_key", None, None).await.0, 200);
    let (status, _) = Api::new(h1)
        .send(
            "GET",
            "/api/v5/api_key",
            &[("Host", &h1.to_string()), ("Origin", "http://evil.example")],
            b"",
        )
        .await;
    assert_eq!(status, 403, "browser check while no key exists");
    let (status, metrics) = Api::new(h1).raw("GET", "/metrics", None, b"").await;
    assert_eq!(status, 200, "/metrics open by default");
    assert!(!metrics.is_empty());

    // The first key is made without one; from then on every operator route needs a key.
    let create = json!({"name": "ops", "desc": "for scripts"});
    let (status, made) = call(h1, "POST", "/api/v5/api_key", None, Some(&create)).await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(
        (made["name"].as_str(), made["enable"].as_bool()),
        (Some("ops"), Some(true))
    );
    assert_eq!(made["expired_at"], "infinity");
    let ops = Key::from_answer(&made);
    let (status, body) = call(h1, "GET", "/api/v5/api_key", None, None).await;
    assert_eq!(status, 401, "a key exists now: {body}");
    assert_eq!(call(h1, "GET", "/api/v5/banned", None, None).await.0, 401);
    assert_eq!(call(h1, "GET", "/health", None, None).await.0, 200);
    assert_eq!(call(h1, "GET", "/api/v5/status", None, None).await.0, 200);

    // Basic (EMQX) and Bearer id:secret; on r2 too, once its replica has the row.
    let (status, list) = call(h1, "GET", "/api/v5/api_key", Some(&ops.basic()), None).await;
    assert_eq!(status, 200, "{list}");
    let text = list.to_string();
    assert!(text.contains(&ops.id), "{text}");
    for hidden in ["api_secret", "hash", "salt", ops.secret.as_str()] {
        assert!(!text.contains(hidden), "{hidden} in {text}");
    }
    assert!(accepted(h1, &ops.bearer()).await, "Bearer id:secret");
    assert!(accepted(h2, &ops.basic()).await, "the key works on r2");

    // A second key to manage the first with; wrong secret and unknown id: the same 401.
    let (status, made) = call(
        h2,
        "POST",
        "/api/v5/api_key",
        Some(&ops.basic()),
        Some(&json!({"name": "admin"})),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let admin = Key::from_answer(&made);
    assert!(accepted(h1, &admin.basic()).await);
    let wrong = Key {
        id: ops.id.clone(),
        secret: format!("{}x", ops.secret),
    };
    let unknown = Key {
        id: "no-such-key-id".into(),
        secret: ops.secret.clone(),
    };
    for auth in [
        wrong.basic(),
        wrong.bearer(),
        unknown.basic(),
        unknown.bearer(),
    ] {
        refused(h1, &auth).await;
    }
    let (status, _) = call(h1, "GET", "/api/v5/api_key", Some("Basic !!!"), None).await;
    assert_eq!(status, 401, "undecodable Basic");

    // Bad input.
    let a = Some(admin.basic());
    let a = a.as_deref();
    for (body, want) in [
        (json!({"name": "ops"}), 409),
        (json!({"name": "1bad"}), 400),
        (json!({"name": "x", "expired_at": "yesterday"}), 400),
        // 0 is not "never" (only absent, null and "infinity" are), and a past time is no
        // time for a new key.
        (json!({"name": "x", "expired_at": 0}), 400),
        (
            json!({"name": "x", "expired_at": "1970-01-01T00:00:00Z"}),
            400,
        ),
        (json!({"name": "x", "expired_at": 1000}), 400),
        (
            json!({"name": "x", "expired_at": "2020-01-01T00:00:00Z"}),
            400,
        ),
        (json!({"name": "x", "role": "viewer"}), 400),
        (json!({"desc": "no name"}), 400),
    ] {
        let (status, answer) = call(h1, "POST", "/api/v5/api_key", a, Some(&body)).await;
        assert_eq!(status, want, "{body}: {answer}");
        assert!(answer["message"].is_string(), "{answer}");
    }
    let (status, _) = Api::new(h1)
        .send(
            "POST",
            "/api/v5/api_key",
            &[("Host", &h1.to_string()), ("Authorization", &admin.basic())],
            br#"{"name":"nojson"}"#,
        )
        .await;
    assert_eq!(status, 415);
    assert_eq!(
        call(h1, "GET", "/api/v5/api_key/nope", a, None).await.0,
        404
    );

    // Disable → 401 → enable → in again.
    let path = "/api/v5/api_key/ops";
    let (status, v) = call(h2, "PUT", path, a, Some(&json!({"enable": false}))).await;
    assert_eq!((status, v["enable"].as_bool()), (200, Some(false)), "{v}");
    refused(h1, &ops.basic()).await;
    refused(h2, &ops.bearer()).await;
    let (status, _) = call(h1, "PUT", path, a, Some(&json!({"enable": true}))).await;
    assert_eq!(status, 200);
    assert!(accepted(h1, &ops.basic()).await, "enabled again");

    // Expired → 401 → no expiry → in again.
    let past = json!({"expired_at": "2020-01-01T00:00:00Z"});
    let (status, v) = call(h1, "PUT", path, a, Some(&past)).await;
    assert_eq!((status, v["expired"].as_bool()), (200, Some(true)), "{v}");
    refused(h1, &ops.basic()).await;
    let (status, v) = call(h1, "PUT", path, a, Some(&json!({"expired_at": 0}))).await;
    assert_eq!(status, 400, "0 does not mean never: {v}");
    refused(h1, &ops.basic()).await;
    let (status, v) = call(h1, "PUT", path, a, Some(&json!({"expired_at": "infinity"}))).await;
    assert_eq!((status, v["expired_at"].as_str()), (200, Some("infinity")));
    assert!(accepted(h2, &ops.basic()).await, "no expiry again");
    let (status, one) = call(h2, "GET", path, a, None).await;
    assert_eq!(
        (status, one["desc"].as_str()),
        (200, Some("for scripts")),
        "{one}"
    );

    // Deleted → 401 everywhere; a second delete is 404.
    assert_eq!(call(h2, "DELETE", path, a, None).await.0, 204);
    refused(h2, &ops.basic()).await;
    refused(h1, &ops.basic()).await;
    assert_eq!(call(h1, "DELETE", path, a, None).await.0, 404);

    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}

/// Writes a bootstrap file with `lines`.
fn key_file(dir: &Path, lines: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    let path = dir.join("api_keys.conf");
    std::fs::write(&path, lines).expect("write key file");
    path
}

/// The number of API keys `auth` lists on `addr`.
async fn key_count(addr: SocketAddr, auth: &str) -> usize {
    let (status, list) = call(addr, "GET", "/api/v5/api_key", Some(auth), None).await;
    assert_eq!(status, 200, "{list}");
    list.as_array().expect("a list").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_keys_are_written_once_by_nodes_starting_together() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let dir = std::env::temp_dir().join(unique("meshmq-bootkeys"));
    let boot = Key {
        id: "boot-1".into(),
        secret: "b00tstrap-secret-1".into(),
    };
    let other = Key {
        id: "boot_2".into(),
        secret: "another-long-secret".into(),
    };
    let file = key_file(
        &dir,
        &format!(
            "{}:{}\n\n{}:{}:administrator\n",
            boot.id, boot.secret, other.id, other.secret
        ),
    );
    let with_file = |c: &mut meshmq_shared::config::Config| {
        c.api_key.bootstrap_file = Some(file.clone());
    };
    let (r1, r2) = tokio::join!(
        cluster.start_replicant_with("r1", with_file),
        cluster.start_replicant_with("r2", with_file)
    );
    let (h1, h2) = (r1.http_addr().expect("http"), r2.http_addr().expect("http"));
    // A bootstrap file makes keys required even before anything is listed.
    assert_eq!(call(h1, "GET", "/api/v5/api_key", None, None).await.0, 401);
    assert!(accepted(h1, &boot.basic()).await);
    assert!(accepted(h2, &other.bearer()).await);
    assert_eq!(key_count(h1, &boot.basic()).await, 2, "one row per line");
    // A restart of r1 with the same file adds nothing.
    r1.shutdown().await;
    let r1 = cluster.start_replicant_with("r1", with_file).await;
    let h1 = r1.http_addr().expect("http");
    assert_eq!(
        key_count(h1, &boot.basic()).await,
        2,
        "no duplicate after a restart"
    );
    let (_, list) = call(h1, "GET", "/api/v5/api_key", Some(&boot.basic()), None).await;
    assert_eq!(list[0]["name"], "bootstrap_boot-1", "{list}");
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_bad_bootstrap_file_stops_the_start_naming_the_line() {
    let mut config = test_config();
    let dir = config.node.data_dir.clone();
    let secret = "a-secret-that-must-never-be-shown";
    let file = key_file(&dir, &format!("good:{secret}\nbad:{secret}:viewer\n"));
    config.api_key.bootstrap_file = Some(file);
    let err = match Broker::builder(config).start().await {
        Ok(_) => panic!("a role other than administrator is refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("line 2") && err.contains("administrator"),
        "{err}"
    );
    assert!(!err.contains(secret), "{err}");
}

#[tokio::test]
async fn the_static_key_still_works_and_metrics_can_require_a_key() {
    let mut config = test_config();
    config.listeners.api_key = Some("static-key-of-the-operator".into());
    config.listeners.metrics_require_key = true;
    let broker = Broker::builder(config).start().await.expect("starts");
    let h = broker.http_addr().expect("http");
    let bearer = "Bearer static-key-of-the-operator";
    assert_eq!(
        call(h, "GET", "/api/v5/api_key", Some(bearer), None)
            .await
            .0,
        200
    );
    refused(h, "Bearer static-key-of-the-operatoR").await;
    let (status, body) = call(h, "GET", "/api/v5/api_key", None, None).await;
    assert_eq!(status, 401, "{body}");
    // The static key is a Bearer token only.
    let basic = format!("Basic {}", STANDARD.encode("static-key-of-the-operator"));
    assert_eq!(
        call(h, "GET", "/api/v5/api_key", Some(&basic), None)
            .await
            .0,
        401
    );
    assert_eq!(Api::new(h).raw("GET", "/metrics", None, b"").await.0, 401);
    let (status, _) = Api::new(h)
        .send(
            "GET",
            "/metrics",
            &[("Host", &h.to_string()), ("Authorization", bearer)],
            b"",
        )
        .await;
    assert_eq!(status, 200, "/metrics with the key");
    assert_eq!(call(h, "GET", "/health", None, None).await.0, 200);
    assert_eq!(
        call(
            h,
            "GET",
            "/api/v5/load_rebalance/availability_check",
            None,
            None
        )
        .await
        .0,
        200
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn the_standalone_default_generates_a_key_file_once() {
    let config = test_config();
    let file = config.node.data_dir.join("default_api_key.conf");
    let broker = restart_generating(config.clone()).await;
    let h = broker.http_addr().expect("http");
    let text = std::fs::read_to_string(&file).expect("the key file exists");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "owner only");
    }
    let (id, secret) = text.trim().split_once(':').expect("api_key:api_secret");
    let key = Key {
        id: id.into(),
        secret: secret.into(),
    };
    assert!(secret.len() >= 43, "256 bits");
    assert_eq!(call(h, "GET", "/api/v5/api_key", None, None).await.0, 401);
    assert_eq!(key_count(h, &key.basic()).await, 1);
    broker.shutdown().await;
    // Started again: the same file, no second key.
    let broker = restart_generating(config.clone()).await;
    let h = broker.http_addr().expect("http");
    assert_eq!(std::fs::read_to_string(&file).expect("file"), text);
    assert_eq!(key_count(h, &key.basic()).await, 1);
    let dir = config.node.data_dir.clone();
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("data dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "no temporary file left: {left:?}");
    // An operator deletes it: it is not made again, with its file or without.
    let (status, list) = call(h, "GET", "/api/v5/api_key", Some(&key.basic()), None).await;
    assert_eq!(status, 200);
    let name = list[0]["name"].as_str().expect("name").to_owned();
    let path = format!("/api/v5/api_key/{name}");
    let deleted = call(h, "DELETE", &path, Some(&key.basic()), None).await.0;
    assert_eq!(deleted, 204);
    broker.shutdown().await;
    for file_kept in [true, false] {
        if !file_kept {
            std::fs::remove_file(&file).expect("remove the file");
        }
        let broker = restart_generating(config.clone()).await;
        let h = broker.http_addr().expect("http");
        // No key left anywhere: the loopback-only mode, with no key listed.
        let (status, list) = call(h, "GET", "/api/v5/api_key", None, None).await;
        assert_eq!((status, list), (200, json!([])), "file kept: {file_kept}");
        assert_eq!(file.exists(), file_kept, "no new key file");
        broker.shutdown().await;
    }
}

/// Starts a standalone broker that generates its key on `config`, retrying while the
/// previous one's embedded store is still held (just after its shutdown returned), until
/// [`WAIT`].
async fn restart_generating(config: meshmq_shared::config::Config) -> replicant_node::BrokerHandle {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match Broker::builder(config.clone())
            .generate_api_key(true)
            .start()
            .await
        {
            Ok(b) => return b,
            Err(e)
                if format!("{e:#}").contains("already open")
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => panic!("broker starts: {e:#}"),
        }
    }
}

/// A name deleted and made again starts over at version 1: a node that saw the old key and
/// no request since must still refuse it (its index is rebuilt from the values, not the
/// versions alone) and accept the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_deleted_and_made_again_under_its_name_refuses_the_old_secret_everywhere() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let (h1, h2) = (r1.http_addr().expect("http"), r2.http_addr().expect("http"));
    let (status, made) = call(
        h1,
        "POST",
        "/api/v5/api_key",
        None,
        Some(&json!({"name": "admin"})),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let admin = Key::from_answer(&made).basic();
    let ops_body = json!({"name": "ops"});
    let (status, made) = call(h1, "POST", "/api/v5/api_key", Some(&admin), Some(&ops_body)).await;
    assert_eq!(status, 200, "{made}");
    let old = Key::from_answer(&made).basic();
    assert!(accepted(h2, &old).await, "the first ops key works on r2");
    // Revoked and made again through r1, with no request to r2 in between.
    let (status, _) = call(h1, "DELETE", "/api/v5/api_key/ops", Some(&admin), None).await;
    assert_eq!(status, 204);
    let (status, made) = call(h1, "POST", "/api/v5/api_key", Some(&admin), Some(&ops_body)).await;
    assert_eq!(status, 200, "{made}");
    let new = Key::from_answer(&made).basic();
    assert!(accepted(h2, &new).await, "the new ops key works on r2");
    refused(h2, &old).await;
    refused(h1, &old).await;
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_key_cannot_mint_keys_while_another_node_requires_one() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    const STATIC: &str = "static-key-of-r1-0123456789";
    let r1 = cluster
        .start_replicant_with("r1", |c| c.listeners.api_key = Some(STATIC.into()))
        .await;
    let r2 = cluster.start_replicant("r2").await;
    let (h1, h2) = (r1.http_addr().expect("http"), r2.http_addr().expect("http"));
    let mint = json!({"name": "minted-on-r2"});

    // r2 has no key of its own, but r1 does: r2 requires one too, so its loopback users
    // cannot mint a key that r1 would accept.
    let (status, body) = call(h2, "POST", "/api/v5/api_key", None, Some(&mint)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(call(h2, "GET", "/api/v5/api_key", None, None).await.0, 401);
    let bearer = format!("Bearer {STATIC}");
    assert_eq!(
        call(h1, "GET", "/api/v5/api_key", Some(&bearer), None)
            .await
            .0,
        200
    );

    // r1 restarts without its key: no node has a key source and the cluster has no key, so
    // every node is back in the loopback-only mode.
    r1.shutdown().await;
    let r1 = cluster.start_replicant("r1").await;
    let open = wait_until_async(WAIT, || async {
        call(h2, "GET", "/api/v5/api_key", None, None).await.0 == 200
    })
    .await;
    assert!(open, "r2 is keyless once no node has a key source");
    r2.shutdown().await;
    r1.shutdown().await;
    cluster.stop().await;
}
