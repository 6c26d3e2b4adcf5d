//! The HTTP authenticator (`password_based:http`) against a real HTTP service started by
//! the test on loopback (axum): the service's `result` decides (allow, deny, ignore → the
//! next authenticator), 204 allows, 500 / a bad body / a timeout are ignored and counted as
//! `error`; the request carries the placeholders as a JSON body, a form or a query string;
//! and the chain's order decides between HTTP and the built-in database.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use meshmq_shared::auth::password::{Algorithm, SaltPosition};
use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{ProtocolVersion, ReasonCode};
use meshmq_shared::config::{
    AuthenticatorConfig, BuiltInDatabaseConfig, Config, HttpAuthnConfig, HttpBackend, HttpMethod,
    PasswordBased, UserIdType,
};
use parking_lot::Mutex;

use crate::authn::add_user;
use crate::common::raw::{RawClient, connect_packet};
use crate::common::{self, TestBroker};

/// Serves `router` on 127.0.0.1:0 until the test process ends; its address.
pub(crate) async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// One request as the service received it.
#[derive(Debug, Clone, Default)]
struct Seen {
    method: String,
    content_type: String,
    fields: BTreeMap<String, String>,
}

/// The service: answers by the `username` field, records the last request.
async fn auth_service() -> (SocketAddr, Arc<Mutex<Option<Seen>>>) {
    let seen: Arc<Mutex<Option<Seen>>> = Arc::default();
    let handler = |State(seen): State<Arc<Mutex<Option<Seen>>>>,
                   method: Method,
                   Query(query): Query<BTreeMap<String, String>>,
                   headers: HeaderMap,
                   body: String| async move {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let fields: BTreeMap<String, String> = if method == Method::GET {
            query
        } else if content_type.starts_with("application/json") {
            serde_json::from_str(&body).unwrap_or_default()
        } else {
            serde_urlencoded_pairs(&body)
        };
        let user = fields.get("username").cloned().unwrap_or_default();
        *seen.lock() = Some(Seen {
            method: method.to_string(),
            content_type,
            fields,
        });
        answer(&user).await
    };
    let router = axum::Router::new()
        .route("/auth", axum::routing::any(handler))
        .with_state(seen.clone());
    (serve(router).await, seen)
}

fn serde_urlencoded_pairs(body: &str) -> BTreeMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

async fn answer(user: &str) -> Response {
    let json = |v: serde_json::Value| {
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            v.to_string(),
        )
            .into_response()
    };
    match user.split('-').next().unwrap_or("") {
        "allow" => json(serde_json::json!({"result": "allow", "is_superuser": false})),
        "super" => json(serde_json::json!({"result": "allow", "is_superuser": true})),
        "deny" => json(serde_json::json!({"result": "deny"})),
        "ignore" => json(serde_json::json!({"result": "ignore"})),
        "nocontent" => StatusCode::NO_CONTENT.into_response(),
        "garbage" => (StatusCode::OK, "not json").into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(4)).await;
            json(serde_json::json!({"result": "allow"}))
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn http_entry(addr: SocketAddr, method: HttpMethod) -> HttpAuthnConfig {
    HttpAuthnConfig {
        mechanism: PasswordBased::PasswordBased,
        backend: HttpBackend::Http,
        method,
        url: format!("http://{addr}/auth"),
        headers: BTreeMap::new(),
        body: BTreeMap::from([
            ("clientid".into(), "${clientid}".into()),
            ("username".into(), "${username}".into()),
            ("password".into(), "${password}".into()),
            ("peerhost".into(), "${peerhost}".into()),
            ("cn".into(), "${cert_common_name}".into()),
            ("tag".into(), "user=${username}!".into()),
        ]),
        request_timeout: 1,
        pool_size: 4,
        enable: true,
    }
}

fn builtin_entry() -> AuthenticatorConfig {
    AuthenticatorConfig::BuiltInDatabase(BuiltInDatabaseConfig {
        user_id_type: UserIdType::Username,
        ..BuiltInDatabaseConfig::default()
    })
}

async fn try_connect(
    b: &TestBroker,
    v: ProtocolVersion,
    username: &str,
    password: &str,
) -> ReasonCode {
    let mut c = connect_packet(v, &common::unique("http"));
    c.username = Some(username.to_owned());
    c.password = Some(password.as_bytes().to_vec().into());
    RawClient::connect_with(b.mqtt_addr(), c).await.1.code
}

async fn http_errors(b: &TestBroker) -> f64 {
    let text = common::metrics_text(b).await;
    common::metric_sum(
        &text,
        "meshmq_authentication_total",
        &[
            ("authenticator", "password_based:http"),
            ("result", "error"),
        ],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn the_services_answer_decides_and_errors_are_ignored_and_counted() {
    let (addr, _) = auth_service().await;
    let b = common::start_broker(|c: &mut Config| {
        c.authentication = vec![AuthenticatorConfig::Http(http_entry(
            addr,
            HttpMethod::Post,
        ))];
    })
    .await;
    for v in [V5, V311] {
        assert_eq!(
            try_connect(&b, v, "allow", "pw").await,
            ReasonCode::Success,
            "{v:?}"
        );
        assert_eq!(
            try_connect(&b, v, "super", "pw").await,
            ReasonCode::Success,
            "{v:?}"
        );
        assert_eq!(
            try_connect(&b, v, "nocontent", "pw").await,
            ReasonCode::Success,
            "{v:?}"
        );
        let deny = try_connect(&b, v, "deny", "pw").await;
        assert_eq!(deny, ReasonCode::BadUserNameOrPassword, "{v:?} deny");
        // Ignore with nobody after it: refused as not authorized.
        let ignore = try_connect(&b, v, "ignore", "pw").await;
        assert_eq!(ignore, ReasonCode::NotAuthorized, "{v:?} ignore");
    }
    for bad in ["broken", "garbage"] {
        let before = http_errors(&b).await;
        assert_eq!(
            try_connect(&b, V5, bad, "pw").await,
            ReasonCode::NotAuthorized,
            "{bad}"
        );
        assert!(http_errors(&b).await > before, "{bad} counted as an error");
    }
    // The service takes 4 s, the request_timeout is 1 s: ignored well before the answer.
    let before = http_errors(&b).await;
    let started = Instant::now();
    assert_eq!(
        try_connect(&b, V5, "slow", "pw").await,
        ReasonCode::NotAuthorized
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        http_errors(&b).await > before,
        "the timeout counted as an error"
    );
}

#[tokio::test]
async fn json_form_and_query_requests_carry_the_placeholders() {
    let (addr, seen) = auth_service().await;
    let mut form = http_entry(addr, HttpMethod::Post);
    form.headers.insert(
        "content-type".into(),
        "application/x-www-form-urlencoded".into(),
    );
    let cases = [
        (
            "POST",
            "application/json",
            http_entry(addr, HttpMethod::Post),
        ),
        ("POST", "application/x-www-form-urlencoded", form),
        ("GET", "", http_entry(addr, HttpMethod::Get)),
    ];
    for (method, content_type, entry) in cases {
        let b = common::start_broker(|c: &mut Config| {
            c.authentication = vec![AuthenticatorConfig::Http(entry)];
        })
        .await;
        let client_id = common::unique("fields");
        let mut c = connect_packet(V5, &client_id);
        c.username = Some("allow-ü &x".to_owned());
        c.password = Some(b"p=w&rd".to_vec().into());
        let code = RawClient::connect_with(b.mqtt_addr(), c).await.1.code;
        assert_eq!(code, ReasonCode::Success, "{method} {content_type}");
        let got = seen.lock().clone().expect("a request");
        assert_eq!(got.method, method);
        assert!(got.content_type.starts_with(content_type), "{got:?}");
        let want = BTreeMap::from([
            ("clientid".to_owned(), client_id),
            ("username".to_owned(), "allow-ü &x".to_owned()),
            ("password".to_owned(), "p=w&rd".to_owned()),
            ("peerhost".to_owned(), "127.0.0.1".to_owned()),
            ("cn".to_owned(), String::new()),
            ("tag".to_owned(), "user=allow-ü &x!".to_owned()),
        ]);
        assert_eq!(got.fields, want, "{method} {content_type}");
    }
}

#[tokio::test]
async fn the_chain_order_decides_between_http_and_the_built_in_database() {
    let (addr, _) = auth_service().await;
    let sha = Algorithm::Sha256 {
        salt_position: SaltPosition::Suffix,
    };
    // HTTP first: its deny wins over a right built-in password; its ignore lets the
    // built-in database decide.
    let http = AuthenticatorConfig::Http(http_entry(addr, HttpMethod::Post));
    let b = common::start_broker(|c: &mut Config| {
        c.authentication = vec![http.clone(), builtin_entry()];
    })
    .await;
    let (denied, ignored) = (common::unique("deny-u"), common::unique("ignore-u"));
    add_user(&b, &denied, "pw", &sha).await;
    add_user(&b, &ignored, "pw", &sha).await;
    let code = try_connect(&b, V5, &denied, "pw").await;
    assert_eq!(code, ReasonCode::BadUserNameOrPassword, "http denies first");
    assert_eq!(
        try_connect(&b, V5, &ignored, "pw").await,
        ReasonCode::Success
    );
    let code = try_connect(&b, V5, &ignored, "wrong").await;
    assert_eq!(
        code,
        ReasonCode::BadUserNameOrPassword,
        "built-in checks after ignore"
    );
    drop(b);
    // Built-in first: a known user with the right password is in before HTTP is asked; an
    // unknown user falls through to HTTP.
    let b = common::start_broker(|c: &mut Config| {
        c.authentication = vec![builtin_entry(), http];
    })
    .await;
    add_user(&b, &denied, "pw", &sha).await;
    assert_eq!(
        try_connect(&b, V311, &denied, "pw").await,
        ReasonCode::Success
    );
    let stranger = common::unique("allow-u");
    assert_eq!(
        try_connect(&b, V311, &stranger, "pw").await,
        ReasonCode::Success
    );
    let stranger = common::unique("deny-u");
    let code = try_connect(&b, V311, &stranger, "pw").await;
    assert_eq!(code, ReasonCode::BadUserNameOrPassword);
}
