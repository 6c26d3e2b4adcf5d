//! The retained messages, as EMQX's retainer API shows them:
//!
//! - `GET /api/v5/mqtt/retainer/messages?page&limit&topic`: a page of
//!   `{msgid, topic, qos, publish_at, from_clientid, from_username}` sorted by topic;
//!   `topic` is a topic filter (wildcards allowed) the messages must match.
//! - `GET /api/v5/mqtt/retainer/message/{topic}`: one message with its `payload` (base64)
//!   and properties; 404 when none (or expired).
//! - `DELETE /api/v5/mqtt/retainer/message/{topic}`: 204; the delete is a `RetainedDelete`
//!   written through the cores (503 when they cannot commit); 404 when none.
//!
//! Every replica holds the whole `retained` table: reads are local, from an O(1) view taken
//! under the replica's lock and walked after it (cost: the number of retained messages).
//! The table does not keep the publisher, so `from_clientid` and `from_username` are null.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use base64::Engine;
use meshmq_proto::tables::{RetainedDelete, RetainedMessage, op};
use meshmq_shared::metrics as m;
use meshmq_shared::topic;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Paging, bad, now_ms, rfc3339_ms, text};
use crate::cluster;
use crate::ctx::Ctx;
use crate::http::api::{ApiError, Denied, ErrorBody, authorize, not_found, unavailable};

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(one, remove))
        .with_state(ctx)
}

/// `GET .../messages` query.
#[derive(Debug, Deserialize)]
struct ListQuery {
    page: Option<String>,
    limit: Option<String>,
    /// A topic filter the messages must match.
    topic: Option<String>,
}

fn expired(r: &RetainedMessage, now: u64) -> bool {
    r.expires_at_ms.is_some_and(|e| e <= now)
}

/// EMQX's message id is a 128-bit hex GUID; ours is derived from what the row holds (the
/// publication time and the topic), stable while the message stays.
fn msgid(r: &RetainedMessage) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    r.topic.hash(&mut h);
    format!("{:016X}{:016X}", r.published_at_ms, h.finish())
}

/// The list item of a message.
fn summary(r: &RetainedMessage) -> Value {
    json!({
        "msgid": msgid(r),
        "topic": r.topic,
        "qos": r.qos,
        "publish_at": rfc3339_ms(r.published_at_ms),
        "from_clientid": Value::Null,
        "from_username": Value::Null,
    })
}

/// A message with its payload (base64) and properties.
fn full(r: &RetainedMessage) -> Value {
    let mut v = summary(r);
    let b64 = base64::engine::general_purpose::STANDARD;
    let user: serde_json::Map<String, Value> = r
        .user_properties
        .iter()
        .map(|kv| (kv.key.clone(), Value::from(kv.value.clone())))
        .collect();
    if let Value::Object(o) = &mut v {
        o.insert("payload".into(), b64.encode(&r.payload).into());
        let mut props = serde_json::Map::new();
        if let Some(p) = r.payload_format_indicator {
            props.insert("payload_format_indicator".into(), p.into());
        }
        if let Some(ct) = &r.content_type {
            props.insert("content_type".into(), ct.clone().into());
        }
        if let Some(rt) = &r.response_topic {
            props.insert("response_topic".into(), rt.clone().into());
        }
        if let Some(cd) = &r.correlation_data {
            props.insert("correlation_data".into(), b64.encode(cd).into());
        }
        if let Some(e) = r.expires_at_ms {
            let left = e.saturating_sub(now_ms()).div_ceil(1000);
            props.insert("message_expiry_interval".into(), left.into());
        }
        if !user.is_empty() {
            props.insert("user_properties".into(), Value::Object(user));
        }
        o.insert("properties".into(), Value::Object(props));
    }
    v
}

/// A page of the retained messages (sorted by topic), optionally matching a filter.
#[utoipa::path(get, path = "/api/v5/mqtt/retainer/messages", tag = "retainer",
    params(("page" = Option<u32>, Query, description = "page, from 1"),
           ("limit" = Option<u32>, Query, description = "1..=10000"),
           ("topic" = Option<String>, Query, description = "topic filter (wildcards allowed)")),
    responses((status = 200, description = "a page of retained messages (no payload)", body = Object),
              Denied, (status = 400, description = "bad query", body = ErrorBody)))]
async fn list(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let Ok(Query(q)) = query else {
        return Err(bad("retained", "invalid query string"));
    };
    let paging = Paging::parse("retained", q.page.as_deref(), q.limit.as_deref())?;
    let filter = text("retained", "topic", &q.topic)?;
    if let Some(f) = filter
        && topic::validate_topic_filter(f).is_err()
    {
        return Err(bad("retained", "topic is not a valid topic filter"));
    }
    let view = ctx.tables.core.read(|t| t.retained_view());
    let now = now_ms();
    let (mut count, mut data) = (0, Vec::new());
    let skip = paging.skip();
    for r in view.iter() {
        if expired(r, now) || filter.is_some_and(|f| !topic::matches(f, &r.topic)) {
            continue;
        }
        if count >= skip && data.len() < paging.limit {
            data.push(summary(r));
        }
        count += 1;
    }
    Ok(Json(paging.answer(data, count)).into_response())
}

/// The retained message of `topic` (percent-encoded in the path), with its payload.
#[utoipa::path(get, path = "/api/v5/mqtt/retainer/message/{topic}", tag = "retainer",
    params(("topic" = String, Path, description = "topic name, percent-encoded")),
    responses((status = 200, description = "the message, payload base64", body = Object), Denied,
              (status = 404, description = "no retained message", body = ErrorBody)))]
async fn one(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(topic): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let now = now_ms();
    let found = ctx
        .tables
        .core
        .read(|t| t.retained(&topic).filter(|r| !expired(r, now)).map(full));
    match found {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(not_found("Viewed message doesn't exist")),
    }
}

/// Deletes the retained message of `topic` through the cores: 204, or 404 when none.
#[utoipa::path(delete, path = "/api/v5/mqtt/retainer/message/{topic}", tag = "retainer",
    params(("topic" = String, Path, description = "topic name, percent-encoded")),
    responses((status = 204, description = "deleted"), Denied,
              (status = 404, description = "no retained message", body = ErrorBody),
              (status = 503, description = "the cores could not commit", body = ErrorBody)))]
async fn remove(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(topic): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let now = now_ms();
    let exists = ctx
        .tables
        .core
        .read(|t| t.retained(&topic).is_some_and(|r| !expired(r, now)));
    if !exists {
        return Err(not_found("Viewed message doesn't exist"));
    }
    let op = cluster::op(op::Kind::RetainedDelete(RetainedDelete { topic }));
    cluster::try_transact(&ctx.tables, vec![op])
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let (count, bytes) = ctx
        .tables
        .core
        .read(|t| (t.retained_count(), t.retained_bytes()));
    metrics::gauge!(m::RETAINED_MESSAGES).set(count as f64);
    metrics::gauge!(m::RETAINED_BYTES).set(bytes as f64);
    Ok(StatusCode::NO_CONTENT.into_response())
}
