//! The operator REST API for clients, subscriptions, topics, publishing, retained
//! messages, stats and metrics, in EMQX 5's paths and JSON shapes (`/api/v5/clients`,
//! `/subscriptions`, `/topics`, `/publish`, `/mqtt/retainer/...`, `/stats`, `/metrics`):
//! see docs/api.md.
//!
//! Owns the routes and what they share: paging (`page`, `limit`, the `meta` object), the
//! bounded query numbers and the 400 answer that is counted
//! (`meshmq_mgmt_api_bad_requests_total{api}`). Every handler calls
//! [`authorize`](crate::http::api::authorize) first, before any extractor may refuse the
//! request (queries and bodies are taken as `Result`s), and declares `Denied` among its
//! OpenAPI responses. It never holds a session or replica lock
//! across an await, and never builds an answer larger than one page.
//!
//! Client and subscription data live on the node a client is connected to: the node-local
//! routes (`/api/v5/nodes/{node}/...`) answer for this node only and never call another
//! node; the cluster-wide routes ask every node (see [`clients`]). Topics and retained
//! messages are cluster tables every replica holds whole: read locally.

mod client_actions;
mod client_node_actions;
pub mod clients;
pub mod clients_query;
pub(crate) mod nodes;
mod publish;
mod retained;
mod stats;
mod sub_replay;
mod subscriptions;
mod topics;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use meshmq_shared::metrics as m;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;

use crate::ctx::Ctx;
use crate::http::api::{ApiError, bad_request, error};

/// Largest page (EMQX's bound on `limit`).
pub const MAX_LIMIT: usize = 10_000;
/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page number (bounds `(page - 1) * limit`).
pub const MAX_PAGE: usize = 1_000_000;
/// Longest text a filter of a query may carry (client id, username, topic, fuzzy match).
pub const MAX_FILTER_LEN: usize = 65_535;

/// Every route of this module (built with `utoipa-axum`: each handler's `#[utoipa::path]`
/// goes into the OpenAPI document), with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    topics::routes(ctx.clone())
        .merge(retained::routes(ctx.clone()))
        .merge(publish::routes(ctx.clone()))
        .merge(clients::routes(ctx.clone()))
        .merge(client_actions::routes(ctx.clone()))
        .merge(subscriptions::routes(ctx.clone()))
        .merge(stats::routes(ctx))
}

/// Counts a refused input of `api` and builds its 400.
pub fn bad(api: &'static str, message: impl Into<String>) -> ApiError {
    metrics::counter!(m::MGMT_API_BAD_REQUESTS_TOTAL, "api" => api).increment(1);
    bad_request(message)
}

/// Counts an error of `api` that is about its input (a 415, a 400 from `parse_json`).
pub fn counted(api: &'static str) -> impl FnOnce(&ApiError) {
    move |_| {
        metrics::counter!(m::MGMT_API_BAD_REQUESTS_TOTAL, "api" => api).increment(1);
    }
}

/// The request body, read once the caller is authorized (the extractor's rejection is
/// taken as a value, so that a request without the key is a 401 whatever its body): a body
/// over the route's bound is a 413 `PAYLOAD_TOO_LARGE`, another read failure a 400; both
/// counted under `api`.
pub fn body_bytes(api: &'static str, b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        metrics::counter!(m::MGMT_API_BAD_REQUESTS_TOTAL, "api" => api).increment(1);
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "the request body is larger than this route takes",
            )
        } else {
            bad_request(e.body_text())
        }
    })
}

/// `page` and `limit` of a list query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Page number, from 1.
    pub page: usize,
    /// Items per page, 1..=[`MAX_LIMIT`].
    pub limit: usize,
}

impl Paging {
    /// Reads `page` (1..=[`MAX_PAGE`], default 1) and `limit` (1..=[`MAX_LIMIT`], default
    /// 100).
    pub fn parse(
        api: &'static str,
        page: Option<&str>,
        limit: Option<&str>,
    ) -> Result<Paging, ApiError> {
        Ok(Paging {
            page: number(api, "page", page, 1, 1, MAX_PAGE)?,
            limit: number(api, "limit", limit, DEFAULT_LIMIT, 1, MAX_LIMIT)?,
        })
    }

    /// Items before this page.
    pub fn skip(&self) -> usize {
        (self.page - 1).saturating_mul(self.limit)
    }

    /// The list answer: `{"data": [...], "meta": {page, limit, count, hasnext}}`.
    pub fn answer(&self, data: Vec<Value>, count: usize) -> Value {
        let hasnext = self.skip().saturating_add(data.len()) < count;
        json!({
            "data": data,
            "meta": { "page": self.page, "limit": self.limit, "count": count, "hasnext": hasnext },
        })
    }
}

/// An integer query parameter in `min..=max` (`default` when absent).
pub fn number(
    api: &'static str,
    name: &str,
    v: Option<&str>,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match v {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| bad(api, format!("{name} must be an integer in {min}..={max}"))),
    }
}

/// A text filter of a query, at most [`MAX_FILTER_LEN`] bytes.
pub fn text<'q>(
    api: &'static str,
    name: &str,
    v: &'q Option<String>,
) -> Result<Option<&'q str>, ApiError> {
    match v.as_deref() {
        Some(s) if s.len() > MAX_FILTER_LEN => Err(bad(
            api,
            format!("{name} is longer than {MAX_FILTER_LEN} bytes"),
        )),
        other => Ok(other),
    }
}

/// A boolean query parameter (`true` / `false`).
pub fn boolean(api: &'static str, name: &str, v: Option<&str>) -> Result<Option<bool>, ApiError> {
    match v {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(bad(api, format!("{name} must be true or false"))),
    }
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A time in unix milliseconds as EMQX writes times (RFC 3339 with milliseconds, UTC).
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = crate::banned::rfc3339::format(ms / 1000);
    // `...:SSZ` → `...:SS.mmmZ`
    match secs.strip_suffix('Z') {
        Some(head) => format!("{head}.{:03}Z", ms % 1000),
        None => secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_is_bounded_and_answers_emqx_meta() {
        let p = Paging::parse("topics", Some("2"), Some("10")).expect("ok");
        assert_eq!(p.skip(), 10);
        let v = p.answer(vec![json!(1)], 11);
        assert_eq!(v["meta"]["hasnext"], false);
        assert_eq!(v["meta"]["count"], 11);
        let v = p.answer(vec![json!(1)], 12);
        assert_eq!(v["meta"]["hasnext"], true);
        for (page, limit) in [
            ("0", "1"),
            ("1", "0"),
            ("1", "10001"),
            ("x", "1"),
            ("-1", "1"),
        ] {
            assert!(Paging::parse("topics", Some(page), Some(limit)).is_err());
        }
        assert_eq!(
            Paging::parse("topics", None, None).ok(),
            Some(Paging {
                page: 1,
                limit: 100
            })
        );
    }

    #[test]
    fn times_are_written_with_milliseconds() {
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.500Z");
    }
}
