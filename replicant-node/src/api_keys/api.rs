//! The `api_key` REST API, with EMQX's paths and JSON:
//!
//! - `GET /api/v5/api_key`: every key, `[{"name", "api_key", "desc", "enable", "expired",
//!   "expired_at", "created_at"}]` (never a secret or its hash); at most
//!   [`MAX_KEYS`], so not paged (as EMQX).
//! - `POST /api/v5/api_key` `{"name", "desc"?, "enable"? (true), "expired_at"?}`: 200 with
//!   the key and, this once, its `api_secret`; 409 `ALREADY_EXISTS` for a name in use, 400
//!   past [`MAX_KEYS`] keys (`QUOTA_EXCEEDED`) or on bad input.
//! - `GET /api/v5/api_key/{name}`: the key, 404 if there is none.
//! - `PUT /api/v5/api_key/{name}` `{"desc"?, "enable"?, "expired_at"?}`: the key changed
//!   (its name, id and secret never change), 404 if there is none.
//! - `DELETE /api/v5/api_key/{name}`: 204, 404 if there is none.
//!
//! `expired_at` is RFC 3339 text, unix seconds, or `"infinity"` / `null` / absent for no
//! expiry; `0` is refused (400), and so is a past time on create (a change may set one: the
//! key is expired at once). Every route needs a key when one is required ([`authorize`] first). Writes go
//! through the cores with compare-and-set on the row's version (409 `CONFLICT` if another
//! write got in between). It never logs a secret.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::record::{self, KeyRecord, MAX_DESC_LEN, MAX_KEYS, NS};
use crate::banned::{now_s, rfc3339};
use crate::ctx::Ctx;
use crate::http::api::{
    ApiError, authorize, bad_request, error, not_found, parse_json, require_json,
};
use crate::settings::{self, SettingsError};

/// Largest request body.
const MAX_BODY: usize = 16 * 1024;
/// Latest `expired_at` accepted (the year 9999).
const MAX_TIME: u64 = 253_402_300_799;

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(one, update, remove))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
}

/// Body of `POST /api/v5/api_key`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// Unique name: a letter, then letters, digits, `-`, `_` (at most 256).
    name: String,
    /// Free text.
    #[serde(default)]
    desc: Option<String>,
    /// Default true.
    #[serde(default)]
    enable: Option<bool>,
    /// RFC 3339 text, unix seconds or `"infinity"`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    expired_at: Option<Value>,
    /// Sent by EMQX's dashboard; ignored (it follows from `expired_at`).
    #[serde(default, rename = "expired")]
    #[schema(value_type = Option<bool>)]
    _expired: Option<Value>,
}

/// Body of `PUT /api/v5/api_key/{name}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    /// New description.
    #[serde(default)]
    desc: Option<String>,
    /// Enable or disable the key.
    #[serde(default)]
    enable: Option<bool>,
    /// New expiry: RFC 3339 text, unix seconds or `"infinity"`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    expired_at: Option<Value>,
    /// Ignored, as in `POST`.
    #[serde(default, rename = "expired")]
    #[schema(value_type = Option<bool>)]
    _expired: Option<Value>,
}

/// The JSON of a key (no secret).
fn view(name: &str, r: &KeyRecord) -> Value {
    let time = |t: u64| match t {
        0 => Value::from("infinity"),
        t => Value::from(rfc3339::format(t)),
    };
    json!({
        "name": name,
        "api_key": r.key_id,
        "desc": r.desc,
        "enable": r.enable,
        "expired": r.expired(now_s()),
        "expired_at": time(r.expired_at),
        "created_at": rfc3339::format(r.created_at),
    })
}

/// `expired_at` as stored (0: never). Only absent, `null` or `"infinity"` mean never; `0`
/// (unix seconds or the RFC 3339 epoch) is refused rather than read as never, and so is a
/// time already past when a key is created (`now`, unix seconds). A change may set a past
/// time: the key is then expired at once.
fn expiry(v: Option<&Value>, now: Option<u64>) -> Result<u64, ApiError> {
    let t = match v {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::String(s)) if s == "infinity" => return Ok(0),
        Some(Value::String(s)) => {
            rfc3339::parse(s).ok_or_else(|| bad_request("expired_at is not an RFC 3339 time"))?
        }
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| bad_request("expired_at must be unix seconds or RFC 3339 text"))?,
        Some(_) => {
            return Err(bad_request(
                "expired_at must be RFC 3339 text or \"infinity\"",
            ));
        }
    };
    if t == 0 {
        return Err(bad_request(
            "expired_at 0 is not \"never\": leave it out, or send null or \"infinity\"",
        ));
    }
    if now.is_some_and(|now| t <= now) {
        return Err(bad_request("expired_at is in the past"));
    }
    if t > MAX_TIME {
        return Err(bad_request("expired_at is after the year 9999"));
    }
    Ok(t)
}

/// A description within [`MAX_DESC_LEN`] bytes.
fn desc(d: Option<String>) -> Result<Option<String>, ApiError> {
    match d {
        Some(d) if d.len() > MAX_DESC_LEN => Err(bad_request(format!(
            "desc must be at most {MAX_DESC_LEN} bytes"
        ))),
        d => Ok(d),
    }
}

/// The record stored under `name`, with its version.
fn stored(ctx: &Ctx, name: &str) -> Result<(KeyRecord, u64), ApiError> {
    settings::get(ctx, NS, name)
        .and_then(|(v, version)| Some((KeyRecord::decode(&v)?, version)))
        .ok_or_else(|| not_found(format!("no API key named {name:?}")))
}

/// A name from the path, checked before it is looked up.
fn path_name(name: &str) -> Result<(), ApiError> {
    record::check_name(name).map_err(|_| not_found("no API key with that name"))
}

#[utoipa::path(get, path = "/api/v5/api_key", tag = "api_key",
    responses((status = 200, description = "Every API key, without secrets"),
              (status = 401, description = "No or wrong API key")))]
async fn list(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let keys: Vec<Value> = settings::list(&ctx, NS)
        .into_iter()
        .filter_map(|(name, v, _)| Some(view(&name, &KeyRecord::decode(&v)?)))
        .collect();
    Ok(Json(keys).into_response())
}

#[utoipa::path(post, path = "/api/v5/api_key", tag = "api_key", request_body = CreateBody,
    responses((status = 200, description = "The key, with its secret (shown this once)"),
              (status = 400, description = "Bad input, or too many keys"),
              (status = 401, description = "No or wrong API key"),
              (status = 409, description = "A key with this name exists")))]
async fn create(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    require_json(&headers)?;
    let b: CreateBody = parse_json(&body)?;
    record::check_name(&b.name).map_err(bad_request)?;
    let expired_at = expiry(b.expired_at.as_ref(), Some(now_s()))?;
    let desc = desc(b.desc)?.unwrap_or_default();
    if settings::list(&ctx, NS).len() >= MAX_KEYS {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "QUOTA_EXCEEDED",
            format!("the cluster holds {MAX_KEYS} API keys, the most it may"),
        ));
    }
    let (key_id, secret) = record::generate();
    let rec = KeyRecord::new(&key_id, &secret, desc, b.enable.unwrap_or(true), expired_at);
    match settings::put(&ctx, NS, &b.name, rec.encode(), Some(0)).await {
        Ok(_) => {}
        Err(SettingsError::Conflict { .. }) => {
            return Err(error(
                StatusCode::CONFLICT,
                "ALREADY_EXISTS",
                format!("an API key named {:?} exists", b.name),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(name = %b.name, api_key = %key_id, "API key created");
    let mut answer = view(&b.name, &rec);
    answer["api_secret"] = Value::from(secret);
    Ok(Json(answer).into_response())
}

#[utoipa::path(get, path = "/api/v5/api_key/{name}", tag = "api_key",
    params(("name" = String, Path, description = "The key's name")),
    responses((status = 200, description = "The key, without its secret"),
              (status = 401, description = "No or wrong API key"),
              (status = 404, description = "No such key")))]
async fn one(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    path_name(&name)?;
    let (rec, _) = stored(&ctx, &name)?;
    Ok(Json(view(&name, &rec)).into_response())
}

#[utoipa::path(put, path = "/api/v5/api_key/{name}", tag = "api_key", request_body = UpdateBody,
    params(("name" = String, Path, description = "The key's name")),
    responses((status = 200, description = "The key changed"),
              (status = 400, description = "Bad input"),
              (status = 401, description = "No or wrong API key"),
              (status = 404, description = "No such key"),
              (status = 409, description = "Changed by another call meanwhile")))]
async fn update(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    require_json(&headers)?;
    path_name(&name)?;
    let b: UpdateBody = parse_json(&body)?;
    let (mut rec, version) = stored(&ctx, &name)?;
    if let Some(d) = desc(b.desc)? {
        rec.desc = d;
    }
    if let Some(e) = b.enable {
        rec.enable = e;
    }
    if b.expired_at.is_some() {
        rec.expired_at = expiry(b.expired_at.as_ref(), None)?;
    }
    settings::put(&ctx, NS, &name, rec.encode(), Some(version)).await?;
    tracing::info!(name = %name, enable = rec.enable, "API key changed");
    Ok(Json(view(&name, &rec)).into_response())
}

#[utoipa::path(delete, path = "/api/v5/api_key/{name}", tag = "api_key",
    params(("name" = String, Path, description = "The key's name")),
    responses((status = 204, description = "Deleted"),
              (status = 401, description = "No or wrong API key"),
              (status = 404, description = "No such key")))]
async fn remove(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    path_name(&name)?;
    if !settings::delete(&ctx, NS, &name, None).await? {
        return Err(not_found(format!("no API key named {name:?}")));
    }
    tracing::info!(name = %name, "API key deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
