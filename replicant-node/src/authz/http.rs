//! The HTTP authorization source (`type = "http"`, EMQX's HTTP authorizer): a request the
//! cache cannot answer becomes one request to the operator's service (POST with a JSON or
//! form body, or GET with a query string, fields templated from the client and the
//! request), and the answer decides.
//!
//! Answers as EMQX reads them: 200 with `{"result": "allow" | "deny" | "ignore"}` (ignore:
//! no match), or 204 = allow. Any other status, a body that is not such JSON or larger
//! than the authenticator's `MAX_RESPONSE_BYTES`, a connection failure or a request past
//! `request_timeout` (waiting for a free connection included) → no match, counted as
//! `meshmq_authorization_total{source="http",result="error"}` and logged without the URL.
//! At most `pool_size` requests are in flight; the connection that asked waits (async, its
//! task only), other clients are not held up. The HTTP client and the bounded read are the
//! authenticator's (`crate::authn::http`).

use std::time::Duration;

use meshmq_shared::auth::acl::{ClientInfo, Permission, Request};
use meshmq_shared::config::{HttpAuthzConfig, HttpMethod};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tracing::warn;

use crate::authn::http::{MAX_RESPONSE_BYTES, client, read_bounded};
use crate::authn::template::{cert_field, render_with};
use crate::listeners::CertNames;
use crate::log_gate::LogGate;

/// One line per 10 s while the service fails (`held`: the failures not logged since);
/// `meshmq_authorization_total{source="http",result}` counts each.
static SERVICE_DOWN: std::sync::LazyLock<LogGate> =
    std::sync::LazyLock::new(|| LogGate::new(Duration::from_secs(10)));

/// See the module doc.
pub struct HttpSource {
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
}

/// What the service said: a permission, no match (`ignore`), or an error.
pub(super) type Outcome = Result<Option<Permission>, ()>;

impl HttpSource {
    /// The source of `c` (validated at load).
    pub fn new(c: &HttpAuthzConfig) -> Result<Self, String> {
        let url = reqwest::Url::parse(&c.url).map_err(|e| format!("url: {e}"))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &c.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: {name:?} is not a header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("headers: bad value for {name}"))?;
            headers.insert(name, value);
        }
        let form = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if c.method == HttpMethod::Post && !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Ok(HttpSource {
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

    /// Asks the service about `req` by `c`.
    pub(super) async fn decide(
        &self,
        c: &ClientInfo,
        cert: Option<&CertNames>,
        req: &Request<'_>,
    ) -> Outcome {
        let (action, topic, qos, retain) = match *req {
            Request::Publish { topic, qos, retain } => ("publish", topic, qos, retain),
            Request::Subscribe { full, qos, .. } => ("subscribe", full, qos, false),
        };
        let fields: Vec<(&str, String)> = self
            .body
            .iter()
            .map(|(k, t)| {
                let v = render_with(t, |name, out| match name {
                    "clientid" => out.push_str(&c.client_id),
                    "username" => out.push_str(c.username.as_deref().unwrap_or("")),
                    "peerhost" => out.push_str(&c.peerhost.to_canonical().to_string()),
                    "topic" => out.push_str(topic),
                    "action" => out.push_str(action),
                    "qos" => out.push_str(&qos.to_string()),
                    "retain" => out.push_str(if retain { "true" } else { "false" }),
                    "cert_common_name" => out.push_str(cert_field(cert, |c| &c.common_name)),
                    "cert_subject" => out.push_str(cert_field(cert, |c| &c.subject)),
                    _ => {}
                });
                (k.as_str(), v)
            })
            .collect();
        let answer = match tokio::time::timeout(self.timeout, self.ask(&fields)).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                if let Some(held) = SERVICE_DOWN.pass() {
                    warn!(client_id = %c.client_id, error = %e, held, "http authorization failed");
                }
                return Err(());
            }
            Err(_) => {
                if let Some(held) = SERVICE_DOWN.pass() {
                    warn!(client_id = %c.client_id, held, "http authorization timed out");
                }
                return Err(());
            }
        };
        let Some(answer) = answer else {
            return Ok(Some(Permission::Allow)); // 204
        };
        match answer.result.as_str() {
            "allow" => Ok(Some(Permission::Allow)),
            "deny" => Ok(Some(Permission::Deny)),
            "ignore" => Ok(None),
            _ => {
                warn!(client_id = %c.client_id, "http authorization: unknown result");
                Err(())
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
                    .map_err(|_| "answer is not {\"result\": ...}".to_owned())
            }
            s => Err(format!("status {s}")),
        }
    }
}
