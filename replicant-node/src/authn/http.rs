//! The HTTP authenticator (EMQX's `password_based:http`): each CONNECT becomes one request
//! to the operator's service (POST with a JSON or form body, or GET with a query string,
//! fields templated from the CONNECT), and the answer decides.
//!
//! Answers as EMQX reads them: 200 with `{"result": "allow" | "deny" | "ignore",
//! "is_superuser": bool, "acl": ...}`, or 204 = allow. Any other status, a body that is not
//! such JSON or larger than [`MAX_RESPONSE_BYTES`], a connection failure or a request past
//! `request_timeout` (waiting for a free connection included) → error (counted), then
//! ignore. At most `pool_size` requests are in flight. Never logs a password: errors are
//! logged without the URL (a GET carries the fields in it).

use std::time::Duration;

use meshmq_shared::config::{HttpAuthnConfig, HttpMethod};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tracing::warn;

use crate::log_gate::LogGate;

use super::{Credentials, Decision, Failure, UserName, acl, template};

/// One line per 10 s while the service fails (`held`: the failures not logged since);
/// `meshmq_authentication_total{result="error"}` counts each.
static SERVICE_DOWN: std::sync::LazyLock<LogGate> =
    std::sync::LazyLock::new(|| LogGate::new(Duration::from_secs(10)));

/// Largest answer read from the service.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Longest wait for a TCP (and TLS) connection to the service.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// See the module doc.
pub(super) struct HttpAuth {
    client: reqwest::Client,
    method: HttpMethod,
    url: reqwest::Url,
    headers: HeaderMap,
    /// The fields, each value a template.
    body: Vec<(String, String)>,
    /// POST as `application/x-www-form-urlencoded` (the headers say so) instead of JSON.
    form: bool,
    timeout: Duration,
    /// Requests in flight (`pool_size`).
    slots: Semaphore,
}

/// The service's answer.
#[derive(Deserialize)]
struct Answer {
    result: String,
    #[serde(default)]
    is_superuser: Option<serde_json::Value>,
    #[serde(default)]
    acl: Option<serde_json::Value>,
}

/// A client for the authenticators' requests: rustls on ring, no proxy from the
/// environment, `idle` connections kept per host.
pub(crate) fn client(idle: usize) -> Result<reqwest::Client, reqwest::Error> {
    // reqwest is built without a crypto provider (no aws-lc): ring, as everywhere else in
    // meshmq. A provider installed first by an embedder is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_max_idle_per_host(idle)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// The body of `resp`, refused past `limit` bytes.
pub(crate) async fn read_bounded(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!("answer larger than {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!("answer larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl HttpAuth {
    /// The authenticator of `c` (validated at load).
    pub(super) fn new(c: &HttpAuthnConfig) -> Result<Self, String> {
        let url = reqwest::Url::parse(&c.url).map_err(|e| format!("authentication.url: {e}"))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &c.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("authentication.headers: {name:?} is not a header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("authentication.headers: bad value for {name}"))?;
            headers.insert(name, value);
        }
        let form = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if c.method == HttpMethod::Post && !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Ok(HttpAuth {
            client: client(c.pool_size).map_err(|e| e.to_string())?,
            method: c.method,
            url,
            headers,
            body: c.body.clone().into_iter().collect(),
            form,
            timeout: Duration::from_secs(c.request_timeout),
            slots: Semaphore::new(c.pool_size.max(1)),
        })
    }

    pub(super) async fn check(&self, creds: Credentials<'_>) -> Result<Decision, Failure> {
        let fields: Vec<(&str, String)> = self
            .body
            .iter()
            .map(|(k, t)| (k.as_str(), template::render(t, &creds)))
            .collect();
        let asked = tokio::time::timeout(self.timeout, self.ask(&fields)).await;
        let answer = match asked {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                if let Some(held) = SERVICE_DOWN.pass() {
                    warn!(client_id = creds.client_id, error = %e, held, "http authentication failed");
                }
                return Err(Failure::Unavailable);
            }
            Err(_) => {
                if let Some(held) = SERVICE_DOWN.pass() {
                    warn!(
                        client_id = creds.client_id,
                        held, "http authentication timed out"
                    );
                }
                return Err(Failure::Unavailable);
            }
        };
        let Some(answer) = answer else {
            return Ok(Decision::Allow {
                superuser: false,
                acl: None,
                expires: None,
                username: UserName::AsSent,
            }); // 204
        };
        match answer.result.as_str() {
            "allow" => {
                let acl = match answer.acl.as_ref().map(acl::parse).transpose() {
                    Ok(a) => a,
                    // The service meant to restrict this client and said it wrongly: refuse
                    // (as a JWT with a bad acl claim), rather than fall through to an
                    // authenticator that may let it in unrestricted.
                    Err(e) => {
                        warn!(client_id = creds.client_id, error = %e, "http authentication: bad acl");
                        return Ok(Decision::Deny);
                    }
                };
                Ok(Decision::Allow {
                    superuser: super::jwt::is_superuser(answer.is_superuser.as_ref()),
                    acl,
                    expires: None,
                    username: UserName::AsSent,
                })
            }
            "deny" => Ok(Decision::Deny),
            "ignore" => Ok(Decision::Ignore),
            other => {
                warn!(
                    client_id = creds.client_id,
                    result = other,
                    "http authentication: unknown result"
                );
                Err(Failure::Unavailable)
            }
        }
    }

    /// One request; `None` for a 204.
    async fn ask(&self, fields: &[(&str, String)]) -> Result<Option<Answer>, String> {
        let _slot = self.slots.acquire().await.map_err(|e| e.to_string())?;
        let req = match self.method {
            HttpMethod::Get => self.client.get(self.url.clone()).query(fields),
            HttpMethod::Post if self.form => self.client.post(self.url.clone()).form(fields),
            HttpMethod::Post => {
                let body: serde_json::Map<String, serde_json::Value> = fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone())))
                    .collect();
                let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
                self.client.post(self.url.clone()).body(bytes)
            }
        };
        let resp = req
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        match resp.status().as_u16() {
            204 => Ok(None),
            200 => {
                let body = read_bounded(resp, MAX_RESPONSE_BYTES).await?;
                serde_json::from_slice(&body)
                    .map(Some)
                    .map_err(|e| format!("answer is not {{\"result\": ...}}: {e}"))
            }
            s => Err(format!("status {s}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshmq_shared::config::{HttpBackend, PasswordBased};

    /// A service that always answers `answer` with status 200.
    async fn service(answer: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router =
            axum::Router::new().route("/", axum::routing::post(move || async move { answer }));
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}/")
    }

    fn auth(url: String) -> HttpAuth {
        HttpAuth::new(&HttpAuthnConfig {
            mechanism: PasswordBased::PasswordBased,
            backend: HttpBackend::Http,
            method: HttpMethod::Post,
            url,
            headers: Default::default(),
            body: Default::default(),
            request_timeout: 5,
            pool_size: 2,
            enable: true,
        })
        .expect("authenticator")
    }

    const CREDS: Credentials<'static> = Credentials {
        client_id: "c",
        username: Some("u"),
        password: Some(b"p"),
        peerhost: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        cert: None,
    };

    #[tokio::test]
    async fn superuser_and_acl_are_read_from_the_answer() {
        let a = auth(
            service(r#"{"result": "allow", "is_superuser": true, "acl": {"pub": ["p/1"]}}"#).await,
        );
        let Ok(Decision::Allow { superuser, acl, .. }) = a.check(CREDS).await else {
            panic!("allowed")
        };
        assert!(superuser);
        assert_eq!(acl.expect("rules")[0].topic, "p/1");
        let a = auth(service(r#"{"result": "allow"}"#).await);
        let decided = a.check(CREDS).await.ok();
        assert_eq!(
            decided,
            Some(Decision::Allow {
                superuser: false,
                acl: None,
                expires: None,
                username: UserName::AsSent,
            })
        );
    }

    #[tokio::test]
    async fn an_allow_with_a_bad_acl_is_a_deny() {
        let a = auth(service(r#"{"result": "allow", "acl": 7}"#).await);
        assert!(matches!(a.check(CREDS).await, Ok(Decision::Deny)));
    }

    #[tokio::test]
    async fn an_unknown_result_and_an_oversized_answer_are_errors() {
        let huge: &'static str = Box::leak(
            format!(
                r#"{{"result": "allow", "pad": "{}"}}"#,
                "x".repeat(MAX_RESPONSE_BYTES)
            )
            .into_boxed_str(),
        );
        for answer in [r#"{"result": "maybe"}"#, r#"{"is_superuser": true}"#, huge] {
            let a = auth(service(answer).await);
            assert!(
                matches!(a.check(CREDS).await, Err(Failure::Unavailable)),
                "{}",
                &answer[..answer.len().min(60)]
            );
        }
    }
}
