//! The alarm webhook: every activation and deactivation is POSTed as JSON to each URL of
//! `alarms.webhook_urls`, in the order they happened, with `alarms.webhook_headers`.
//!
//! One bounded queue and one task per URL: [`Webhook::push`] only queues (never waits), a
//! queue at `webhook_queue_len` notifications or `webhook_queue_bytes` bytes drops the new
//! one (counted: `meshmq_alarm_webhook_failures_total{reason="queue_full"}`), so a slow or
//! dead receiver never holds up the checks, another URL or a connection. A request that
//! fails (connection error, `webhook_timeout`, a status other than 2xx) is tried again up
//! to `webhook_max_retries` times with a back-off doubling from 200 ms to 10 s, then given
//! up (`reason="retries_exhausted"`, a warning). Logs name the URL's host only, never its
//! path, query or credentials, nor any header value.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meshmq_shared::config::AlarmsConfig;
use meshmq_shared::metrics as m;
use parking_lot::Mutex;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// First delay between two attempts.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest delay between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A URL of `alarms.webhook_urls` does not parse.
    #[error("alarms.webhook_urls: a URL does not parse: {0}")]
    Url(String),
    /// A header of `alarms.webhook_headers` is not a valid header.
    #[error("alarms.webhook_headers: {0:?} is not a valid header (name or value)")]
    Header(String),
    /// The HTTP client could not be built.
    #[error("alarm webhook client: {0}")]
    Client(String),
}

/// The webhook's queues; `push` to notify every URL.
#[derive(Default)]
pub struct Webhook {
    /// One per URL (none: the webhook is off).
    targets: Vec<Arc<Target>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("targets", &self.targets.len())
            .finish()
    }
}

/// One URL's queue.
struct Target {
    /// Where to POST.
    url: reqwest::Url,
    /// The URL's host and port, for logs.
    host: String,
    /// Notifications waiting, and their bytes.
    queue: Mutex<(VecDeque<Bytes>, usize)>,
    /// Wakes the task when something is queued.
    wake: Notify,
    /// Most notifications waiting.
    max_len: usize,
    /// Most bytes waiting.
    max_bytes: usize,
}

/// How one URL's task sends.
struct Sender {
    client: reqwest::Client,
    headers: HeaderMap,
    timeout: Duration,
    retries: u32,
}

impl Webhook {
    /// No URL: `push` does nothing.
    pub fn disabled() -> Webhook {
        Webhook::default()
    }

    /// Parses the settings and spawns one sender task per URL (ending with `shutdown`).
    pub fn start(
        cfg: &AlarmsConfig,
        shutdown: &CancellationToken,
    ) -> Result<Webhook, WebhookError> {
        if cfg.webhook_urls.is_empty() {
            return Ok(Webhook::disabled());
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.webhook_headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| WebhookError::Header(name.clone()))?;
            let mut v =
                HeaderValue::from_str(value).map_err(|_| WebhookError::Header(name.clone()))?;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let client =
            crate::authn::http::client(1).map_err(|e| WebhookError::Client(e.to_string()))?;
        let mut targets = Vec::new();
        for url in &cfg.webhook_urls {
            let parsed = reqwest::Url::parse(url).map_err(|e| WebhookError::Url(e.to_string()))?;
            let host = format!(
                "{}:{}",
                parsed.host_str().unwrap_or("?"),
                parsed.port_or_known_default().unwrap_or(0)
            );
            let target = Arc::new(Target {
                url: parsed,
                host,
                queue: Mutex::new((VecDeque::new(), 0)),
                wake: Notify::new(),
                max_len: cfg.webhook_queue_len.max(1),
                max_bytes: cfg.webhook_queue_bytes.max(1),
            });
            let sender = Sender {
                client: client.clone(),
                headers: headers.clone(),
                timeout: cfg.timeout(),
                retries: cfg.webhook_max_retries,
            };
            tokio::spawn(run(target.clone(), sender, shutdown.clone()));
            targets.push(target);
        }
        Ok(Webhook { targets })
    }

    /// Whether any URL is configured.
    pub fn is_enabled(&self) -> bool {
        !self.targets.is_empty()
    }

    /// Queues `body` for every URL; never waits (a full queue drops it, counted).
    pub fn push(&self, body: Bytes) {
        for t in &self.targets {
            let mut q = t.queue.lock();
            if q.0.len() >= t.max_len || q.1 + body.len() > t.max_bytes {
                drop(q);
                metrics::counter!(m::ALARM_WEBHOOK_FAILURES_TOTAL, "reason" => "queue_full")
                    .increment(1);
                warn!(host = %t.host, "alarm webhook queue full: notification dropped");
                continue;
            }
            q.1 += body.len();
            q.0.push_back(body.clone());
            drop(q);
            t.wake.notify_one();
        }
    }
}

/// Sends what `target` queues, in order, until shutdown.
async fn run(target: Arc<Target>, sender: Sender, shutdown: CancellationToken) {
    loop {
        let next = {
            let mut q = target.queue.lock();
            let item = q.0.pop_front();
            if let Some(b) = &item {
                q.1 -= b.len();
            }
            item
        };
        let Some(body) = next else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = target.wake.notified() => continue,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = deliver(&target, &sender, body) => {}
        }
    }
}

/// One notification, with its retries.
async fn deliver(target: &Target, sender: &Sender, body: Bytes) {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0;
    loop {
        match post(target, sender, body.clone()).await {
            Ok(()) => {
                metrics::counter!(m::ALARM_WEBHOOK_REQUESTS_TOTAL, "result" => "ok").increment(1);
                return;
            }
            Err(why) => {
                metrics::counter!(m::ALARM_WEBHOOK_REQUESTS_TOTAL, "result" => "error")
                    .increment(1);
                if attempt >= sender.retries {
                    metrics::counter!(m::ALARM_WEBHOOK_FAILURES_TOTAL, "reason" => "retries_exhausted")
                        .increment(1);
                    warn!(host = %target.host, attempts = attempt + 1, %why, "alarm webhook gave up on a notification");
                    return;
                }
            }
        }
        attempt += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One POST; `Err` with a short reason unless the answer is 2xx.
async fn post(target: &Target, sender: &Sender, body: Bytes) -> Result<(), String> {
    let resp = sender
        .client
        .post(target.url.clone())
        .headers(sender.headers.clone())
        .timeout(sender.timeout)
        .body(body)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("status {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_and_an_empty_config_is_off() {
        let off = Webhook::start(&AlarmsConfig::default(), &CancellationToken::new());
        assert!(off.is_ok_and(|w| !w.is_enabled()));
        let cfg = AlarmsConfig {
            // Nothing listens on port 9 of loopback: every request fails.
            webhook_urls: vec!["http://127.0.0.1:9/hook".into()],
            webhook_queue_len: 2,
            ..AlarmsConfig::default()
        };
        let stop = CancellationToken::new();
        stop.cancel(); // the task ends at once: pushes stay queued
        let w = Webhook::start(&cfg, &stop).expect("starts");
        for _ in 0..5 {
            w.push(Bytes::from_static(b"{}"));
        }
        assert_eq!(w.targets[0].queue.lock().0.len(), 2);
        let bad = AlarmsConfig {
            webhook_urls: vec!["http://".into()],
            ..AlarmsConfig::default()
        };
        assert!(matches!(
            Webhook::start(&bad, &CancellationToken::new()),
            Err(WebhookError::Url(_))
        ));
    }
}
