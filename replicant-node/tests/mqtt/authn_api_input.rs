//! What the authentication API does with hostile or oversized input: a body that does not
//! deserialize is refused naming the field, never echoing the value sent (a password);
//! one `import_users` at a time per node (a second one meanwhile: 429); a JSON list past
//! the row limit is refused whole and writes nothing.

use std::time::Duration;

use meshmq_shared::config::UserIdType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::authn::builtin;
use crate::common::api_client::{API_WAIT, Api};
use crate::common::{self, TestBroker};

const USERS: &str = "/api/v5/authentication/password_based:built_in_database/users";
const IMPORT: &str = "/api/v5/authentication/password_based:built_in_database/import_users";

fn api(b: &TestBroker) -> Api {
    Api::new(b.http_addr().expect("http listener"))
}

#[tokio::test]
async fn a_body_that_does_not_deserialize_is_refused_without_echoing_its_values() {
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let api = api(&b);
    let json = Some("application/json");
    assert_eq!(
        api.call("POST", USERS, json, br#"{"user_id":"u","password":"p"}"#)
            .await
            .0,
        201
    );
    let cases: [(&str, String, &[u8], &str); 5] = [
        (
            "POST",
            USERS.into(),
            br#"{"user_id":"x","password":123456}"#,
            "`password`",
        ),
        (
            "POST",
            USERS.into(),
            br#"{"user_id":"x","password":"p","s3cr3t":1}"#,
            "unknown field",
        ),
        (
            "POST",
            USERS.into(),
            br#"{"user_id":"x","password":"s3cr3t""#,
            "not valid JSON",
        ),
        (
            "PUT",
            format!("{USERS}/u"),
            br#"{"password":123456}"#,
            "`password`",
        ),
        (
            "PUT",
            format!("{USERS}/u"),
            br#"{"is_superuser":"s3cr3t"}"#,
            "`is_superuser`",
        ),
    ];
    for (method, path, body, names) in cases {
        let (status, v) = api.call(method, &path, json, body).await;
        assert_eq!(
            (status, v["code"].as_str()),
            (400, Some("BAD_REQUEST")),
            "{v}"
        );
        let message = v["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(names),
            "{method} {}: {message}",
            String::from_utf8_lossy(body)
        );
        assert!(
            !message.contains("123456") && !message.contains("s3cr3t"),
            "{message}"
        );
    }
    // The same for a ban.
    let (status, v) = api
        .call(
            "POST",
            "/api/v5/banned",
            json,
            br#"{"as":"clientid","who":123456}"#,
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("`who`") && !message.contains("123456"),
        "{message}"
    );
}

/// Starts an import whose body is not yet sent, returning once the handler is reading it
/// (hyper answers `Expect: 100-continue` when the handler first reads the body).
async fn import_in_progress(b: &TestBroker, body_len: usize) -> TcpStream {
    let addr = b.http_addr().expect("http");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {IMPORT}?type=plain HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {body_len}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(API_WAIT, s.read(&mut buf))
            .await
            .expect("100 Continue in time")
            .expect("read");
        assert!(n > 0, "closed before 100 Continue");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    s
}

#[tokio::test]
async fn one_import_at_a_time_per_node() {
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let api = api(&b);
    let first = br#"[{"user_id":"first","password":"p"}]"#;
    let mut running = import_in_progress(&b, first.len()).await;
    // Meanwhile a second import is refused before its body is read, EMQX-style.
    let second = br#"[{"user_id":"second","password":"p"}]"#;
    let path = format!("{IMPORT}?type=plain");
    let (status, v) = api
        .call("POST", &path, Some("application/json"), second)
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (429, Some("TOO_MANY_REQUESTS")),
        "{v}"
    );
    // Other routes are not held up.
    assert_eq!(api.get(USERS).await.0, 200);
    // The first one completes, and then the next import runs.
    running.write_all(first).await.expect("body");
    let mut answer = Vec::new();
    tokio::time::timeout(API_WAIT, running.read_to_end(&mut answer))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("HTTP/1.1 200") && text.contains("\"success\":1"),
        "{text}"
    );
    let (status, v) = api
        .call("POST", &path, Some("application/json"), second)
        .await;
    assert_eq!((status, v["success"].as_u64()), (200, Some(1)), "{v}");
    // An import whose client goes away releases its turn too.
    let gone = import_in_progress(&b, 1000).await;
    drop(gone);
    let third = br#"[{"user_id":"third","password":"p"}]"#;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = api
            .call("POST", &path, Some("application/json"), third)
            .await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 429, "{v}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the turn was never released"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_json_list_past_the_row_limit_is_refused_whole() {
    use replicant_node::authn::import::MAX_IMPORT_ROWS;
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let api = api(&b);
    // 500 001 users, one real: about 1 MiB of tiny elements.
    let mut file = String::from(r#"[{"user_id":"real","password":"p"}"#);
    file.push_str(&",0".repeat(MAX_IMPORT_ROWS));
    file.push(']');
    let path = format!("{IMPORT}?type=plain");
    let (status, v) = api
        .call("POST", &path, Some("application/json"), file.as_bytes())
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("BAD_REQUEST")),
        "{v}"
    );
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("more than {MAX_IMPORT_ROWS} users")),
        "{message}"
    );
    assert_eq!(
        b.nodes()[0].core().read(|t| t.auth_user_count()),
        0,
        "nothing written"
    );
}
