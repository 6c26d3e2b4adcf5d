//! The `banned` REST API, with EMQX's paths and JSON:
//!
//! - `GET /api/v5/banned?page=1&limit=100`: `{"data": [{"as", "who", "by", "reason", "at",
//!   "until"}], "meta": {"page", "limit", "count", "hasnext"}}`; times as RFC 3339 text,
//!   `until` = `"infinity"` for a ban with no end; `limit` 1..=10 000. One exact filter
//!   may be given, as in EMQX: `clientid=`, `username=` or `peerhost=` (the regex filters
//!   `like_*` are not supported: 400).
//! - `POST /api/v5/banned` `{"as", "who", "by"?, "reason"?, "at"?, "until"?}`: `as` is
//!   `clientid`, `username`, `peerhost` or `peerhost_net`; `at`/`until` unix seconds or
//!   RFC 3339 text, `until` also `"infinity"` (the default); `by` defaults to `mgmt_api`.
//!   200 with the ban; 400 on bad input, an `until` not in the future, or a ban in force
//!   with the same `as` and `who` (`ALREADY_EXISTS`, as EMQX, the message being that ban);
//!   415 without `Content-Type: application/json`.
//! - `DELETE /api/v5/banned/{as}/{who}`: 204, or 404 when there is no such ban.
//! - `DELETE /api/v5/banned`: every ban removed, 204.
//!
//! Every route needs the API key when one is set ([`authorize`] first). Writes go through
//! the cores (503 when they cannot commit). Bodies are bounded ([`MAX_BODY`]).

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use meshmq_proto::tables::{BannedAs, BannedDelete, BannedRow, op};
use meshmq_shared::metrics as m;
use meshmq_shared::tables::banned::{self as table, IpNet};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AddError, as_from_label, as_label, now_s, rfc3339};
use crate::cluster;
use crate::ctx::Ctx;
use crate::http::api::{
    ApiError, Denied, ErrorBody, authorize, bad_request, error, not_found, parse_json,
    require_json, unavailable,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest request body (a `who` of 65 535 bytes, JSON-escaped, fits).
pub const MAX_BODY: usize = 512 * 1024;
/// Largest page (EMQX's bound on `limit`).
pub const MAX_LIMIT: usize = 10_000;
/// EMQX's default `by` for bans made through the API.
const DEFAULT_BY: &str = "mgmt_api";

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list, create, clear))
        .routes(routes!(remove))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
}

/// Counts a 400 and builds it.
fn bad(message: impl Into<String>) -> ApiError {
    metrics::counter!(m::BANNED_API_BAD_REQUESTS_TOTAL).increment(1);
    bad_request(message)
}

/// A ban as the API shows it.
pub fn to_json(row: &BannedRow) -> Value {
    let until = if row.until == 0 {
        Value::from("infinity")
    } else {
        Value::from(rfc3339::format(row.until))
    };
    json!({
        "as": as_label(row.kind),
        "who": row.who,
        "by": row.by,
        "reason": row.reason,
        "at": rfc3339::format(row.at),
        "until": until,
    })
}

/// `GET /api/v5/banned` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// Page, from 1 (default 1).
    #[param(value_type = Option<u64>)]
    page: Option<String>,
    /// Bans per page, 1..=10000 (default 100).
    #[param(value_type = Option<u64>)]
    limit: Option<String>,
    /// Only the ban of this client id.
    clientid: Option<String>,
    /// Only the ban of this username.
    username: Option<String>,
    /// Only the ban of this IP address.
    peerhost: Option<String>,
    /// Not supported (400).
    like_clientid: Option<String>,
    /// Not supported (400).
    like_username: Option<String>,
    /// Not supported (400).
    like_peerhost: Option<String>,
    /// Not supported (400).
    like_peerhost_net: Option<String>,
}

impl PageQuery {
    /// The one exact filter asked for, if any (two are an error, as in EMQX).
    fn filter(&self) -> Result<Option<(BannedAs, &str)>, ApiError> {
        let like = [
            &self.like_clientid,
            &self.like_username,
            &self.like_peerhost,
            &self.like_peerhost_net,
        ];
        if like.iter().any(|f| f.is_some()) {
            return Err(bad("like_* (regular expression) filters are not supported"));
        }
        let exact: Vec<(BannedAs, &str)> = [
            (BannedAs::Clientid, &self.clientid),
            (BannedAs::Username, &self.username),
            (BannedAs::Peerhost, &self.peerhost),
        ]
        .into_iter()
        .filter_map(|(kind, v)| v.as_deref().map(|v| (kind, v)))
        .collect();
        match exact.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            _ => Err(bad(
                "too_many_filters: give at most one of clientid, username, peerhost",
            )),
        }
    }
}

fn number(name: &str, v: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    match v {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| bad(format!("{name} must be an integer in 1..={max}"))),
    }
}

/// The bans, paged; at most one exact filter.
#[utoipa::path(get, path = "/api/v5/banned", tag = "banned", params(PageQuery),
    responses((status = 200, description = "`{data: [{as, who, by, reason, at, until}], meta: \
{page, limit, count, hasnext}}`", body = Object), Denied,
              (status = 400, description = "Bad paging, a `like_*` filter or two filters", body = ErrorBody)))]
async fn list(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let Ok(Query(q)) = query else {
        return Err(bad("invalid query string"));
    };
    let page = number("page", q.page.as_deref(), 1, 1_000_000_000)?;
    let limit = number("limit", q.limit.as_deref(), 100, MAX_LIMIT)?;
    if let Some((kind, who)) = q.filter()? {
        let who = canonical_who(kind, who)?;
        let data: Vec<Value> = ctx
            .tables
            .core
            .read(|t| t.banned(kind, &who).map(to_json).into_iter().collect());
        let meta = json!({ "page": page, "limit": limit, "count": data.len(), "hasnext": false });
        return Ok(Json(json!({ "data": data, "meta": meta })).into_response());
    }
    let skip = (page - 1).saturating_mul(limit);
    let (data, count) = ctx.tables.core.read(|t| {
        let rows: Vec<Value> = t
            .banned_page(skip, limit)
            .into_iter()
            .map(to_json)
            .collect();
        (rows, t.banned_count())
    });
    let hasnext = skip.saturating_add(data.len()) < count;
    let meta = json!({ "page": page, "limit": limit, "count": count, "hasnext": hasnext });
    Ok(Json(json!({ "data": data, "meta": meta })).into_response())
}

/// `POST /api/v5/banned` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// `clientid`, `username`, `peerhost` or `peerhost_net`.
    #[serde(rename = "as")]
    kind: String,
    /// The client id, username, IP address or CIDR network banned.
    who: String,
    /// Who banned (default `mgmt_api`).
    by: Option<String>,
    /// Why.
    reason: Option<String>,
    /// From when: unix seconds or RFC 3339 text (default now).
    #[schema(value_type = Option<Object>)]
    at: Option<Value>,
    /// Until when: unix seconds, RFC 3339 text or `"infinity"` (the default).
    #[schema(value_type = Option<Object>)]
    until: Option<Value>,
}

/// A time field: unix seconds or RFC 3339 text (`until` also `"infinity"`: 0), at most
/// the year 9999.
pub(crate) fn time_field(name: &str, v: &Value, infinity_ok: bool) -> Result<u64, ApiError> {
    let t = time_value(name, v, infinity_ok)?;
    if t > table::MAX_TIME {
        return Err(bad(format!("{name} is after the year 9999")));
    }
    Ok(t)
}

fn time_value(name: &str, v: &Value, infinity_ok: bool) -> Result<u64, ApiError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| bad(format!("{name} must be unix seconds or RFC 3339 text"))),
        Value::String(s) if infinity_ok && s == "infinity" => Ok(0),
        Value::String(s) => {
            rfc3339::parse(s).ok_or_else(|| bad(format!("{name}: {s:?} is not an RFC 3339 time")))
        }
        _ => Err(bad(format!("{name} must be unix seconds or RFC 3339 text"))),
    }
}

/// `who` in the form the table keeps (a canonical address for `peerhost`).
pub(crate) fn canonical_who(kind: BannedAs, who: &str) -> Result<String, ApiError> {
    match kind {
        BannedAs::Peerhost => who
            .parse::<IpAddr>()
            .map(|ip| ip.to_canonical().to_string())
            .map_err(|_| bad(format!("peerhost: {who:?} is not an IP address"))),
        BannedAs::PeerhostNet => IpNet::parse(who)
            .map(|_| who.to_owned())
            .map_err(|e| bad(format!("peerhost_net: {e}"))),
        _ => Ok(who.to_owned()),
    }
}

/// Checks a create body; the row to add.
fn row_from(body: CreateBody, now: u64) -> Result<BannedRow, ApiError> {
    let kind = as_from_label(&body.kind).ok_or_else(|| {
        bad(format!(
            "as: {:?} is not one of clientid, username, peerhost, peerhost_net",
            body.kind.chars().take(64).collect::<String>()
        ))
    })?;
    if body.who.is_empty() || body.who.len() > table::MAX_WHO_LEN {
        return Err(bad(format!("who must be 1..={} bytes", table::MAX_WHO_LEN)));
    }
    let who = canonical_who(kind, &body.who)?;
    let by = body.by.unwrap_or_else(|| DEFAULT_BY.to_owned());
    if by.len() > table::MAX_BY_LEN {
        return Err(bad(format!(
            "by is longer than {} bytes",
            table::MAX_BY_LEN
        )));
    }
    let reason = body.reason.unwrap_or_default();
    if reason.len() > table::MAX_REASON_LEN {
        return Err(bad(format!(
            "reason is longer than {} bytes",
            table::MAX_REASON_LEN
        )));
    }
    let at = match &body.at {
        Some(v) => time_field("at", v, false)?,
        None => now,
    };
    let until = match &body.until {
        Some(v) => time_field("until", v, true)?,
        None => 0,
    };
    if until != 0 && until <= now {
        return Err(bad("until must be in the future"));
    }
    Ok(BannedRow {
        kind: kind as i32,
        who,
        by,
        reason,
        at,
        until,
    })
}

/// Bans a client id, username, address or network.
#[utoipa::path(post, path = "/api/v5/banned", tag = "banned", request_body = CreateBody,
    responses((status = 200, description = "The ban", body = Object), Denied,
              (status = 400, description = "Bad input, `until` not in the future, \
`ALREADY_EXISTS` (the message is the ban in force) or `QUOTA_EXCEEDED`", body = ErrorBody),
              (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
async fn create(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    require_json(&headers).inspect_err(|_| {
        metrics::counter!(m::BANNED_API_BAD_REQUESTS_TOTAL).increment(1);
    })?;
    let body: CreateBody = parse_json(&body).inspect_err(|_| {
        metrics::counter!(m::BANNED_API_BAD_REQUESTS_TOTAL).increment(1);
    })?;
    let row = row_from(body, now_s())?;
    let shown = to_json(&row);
    let kind = BannedAs::try_from(row.kind).unwrap_or(BannedAs::Unspecified);
    let who = row.who.clone();
    match super::add(&ctx, row).await {
        Ok(()) => Ok(Json(shown).into_response()),
        Err(AddError::Exists) => {
            // EMQX answers with the ban in force as the message.
            let old = ctx.tables.core.read(|t| t.banned(kind, &who).map(to_json));
            let message = old.map_or_else(|| "already banned".to_owned(), |o| o.to_string());
            Err(error(StatusCode::BAD_REQUEST, "ALREADY_EXISTS", message))
        }
        Err(AddError::Full) => Err(error(
            StatusCode::BAD_REQUEST,
            "QUOTA_EXCEEDED",
            format!("the banned table holds {} bans", table::MAX_BANNED_ROWS),
        )),
        Err(AddError::Invalid(m)) => Err(bad(m)),
        Err(AddError::Unavailable(e)) => Err(unavailable(e.to_string())),
    }
}

/// Lifts one ban.
#[utoipa::path(delete, path = "/api/v5/banned/{as}/{who}", tag = "banned",
    params(("as" = String, Path, description = "`clientid`, `username`, `peerhost` or `peerhost_net`"),
           ("who" = String, Path, description = "What is banned (URL-encoded)")),
    responses((status = 204, description = "Lifted"), Denied,
              (status = 400, description = "Unknown `as`", body = ErrorBody),
              (status = 404, description = "No such ban", body = ErrorBody),
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
async fn remove(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path((kind, who)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let kind = as_from_label(&kind).ok_or_else(|| bad("unknown as"))?;
    // `peerhost` is matched in its canonical form (`::1`, not `0:0::1`).
    let who = canonical_who(kind, &who).unwrap_or(who);
    if ctx.tables.core.read(|t| t.banned(kind, &who).is_none()) {
        return Err(not_found("no such ban"));
    }
    write_delete(&ctx, kind, who, false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Lifts every ban.
#[utoipa::path(delete, path = "/api/v5/banned", tag = "banned",
    responses((status = 204, description = "Every ban lifted"), Denied,
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
async fn clear(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    write_delete(&ctx, BannedAs::Unspecified, String::new(), true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn write_delete(ctx: &Ctx, kind: BannedAs, who: String, all: bool) -> Result<(), ApiError> {
    let op = cluster::op(op::Kind::BannedDelete(BannedDelete {
        kind: kind as i32,
        who,
        all,
    }));
    cluster::try_transact(&ctx.tables, vec![op])
        .await
        .map(|_| ())
        .map_err(|e| unavailable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> CreateBody {
        serde_json::from_value(v).expect("body")
    }

    #[test]
    fn create_bodies_are_checked_and_defaulted() {
        let row = row_from(body(json!({"as": "clientid", "who": "c"})), 100).expect("ok");
        assert_eq!((row.by.as_str(), row.at, row.until), ("mgmt_api", 100, 0));
        let row = row_from(
            body(json!({"as": "peerhost", "who": "0:0::1", "until": "1970-01-01T00:03:20Z"})),
            100,
        )
        .expect("ok");
        assert_eq!((row.who.as_str(), row.until), ("::1", 200));
        let row = row_from(
            body(json!({"as": "username", "who": "u", "until": 500})),
            100,
        );
        assert_eq!(row.map(|r| r.until).ok(), Some(500));
        for bad_body in [
            json!({"as": "clientid_re", "who": "c"}),
            json!({"as": "clientid", "who": ""}),
            json!({"as": "peerhost", "who": "10.0.0.300"}),
            json!({"as": "peerhost_net", "who": "10.0.0.1/8"}),
            json!({"as": "clientid", "who": "c", "until": 100}),
            json!({"as": "clientid", "who": "c", "until": "tomorrow"}),
            json!({"as": "clientid", "who": "c", "until": -5}),
            json!({"as": "clientid", "who": "c", "at": "infinity"}),
            json!({"as": "clientid", "who": "c", "until": 253_402_300_800_u64}),
            json!({"as": "clientid", "who": "c", "reason": "r".repeat(2000)}),
        ] {
            assert!(row_from(body(bad_body.clone()), 100).is_err(), "{bad_body}");
        }
    }

    #[test]
    fn bans_show_as_emqx_shows_them() {
        let row = BannedRow {
            kind: BannedAs::PeerhostNet as i32,
            who: "10.0.0.0/8".into(),
            by: "b".into(),
            reason: "r".into(),
            at: 0,
            until: 0,
        };
        let v = to_json(&row);
        assert_eq!(v["as"], "peerhost_net");
        assert_eq!(v["at"], "1970-01-01T00:00:00Z");
        assert_eq!(v["until"], "infinity");
    }
}
