//! The configuration REST API (EMQX's paths):
//!
//! - `GET /api/v5/configs`: this node's effective configuration (file, environment, flags
//!   and the cluster's run-time overrides), secrets as `"******"`; `?node=<name>` asks
//!   another replicant for its own (through the fan-out; 503 if it does not answer).
//! - `GET /api/v5/configs/{root}`: one section (`mqtt`, `flapping_detect`, `listeners`...),
//!   404 for an unknown one.
//! - `PUT /api/v5/configs/{root}` with a JSON object of that section's keys to change, or
//!   `PUT /api/v5/configs` with `{"<root>": {...}, ...}`: every key must be a run-time key
//!   (`meshmq_shared::config::runtime::RUNTIME_KEYS`), else 400 naming it and saying it
//!   needs a restart; the values are checked as the config loader checks them (400 with its
//!   message). All or nothing: the keys are written in one transaction to the `settings`
//!   table (namespace `config`), which every node applies. Answers the new section (or the
//!   whole configuration), redacted.
//! - `DELETE /api/v5/configs/{root}/{key}`: the override removed, the node's own value
//!   back (204; 404 when the key has no override).
//!
//! Every route needs the API key ([`authorize`] first). Writes go through the cores (503
//! when they cannot commit). Values are never logged.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use meshmq_proto::tables::{SettingRow, SettingSet, op};
use meshmq_shared::config::redact::redacted;
use meshmq_shared::config::runtime::{OverrideError, apply_overrides, is_runtime_key};
use meshmq_shared::tables::rejection;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{NS, refresh, stored};
use crate::cluster;
use crate::ctx::Ctx;
use crate::fanout;
use crate::http::api::{
    ApiError, authorize, bad_request, error, not_found, parse_json, require_json, unavailable,
};

/// Largest request body.
pub const MAX_BODY: usize = 64 * 1024;

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_all, put_all))
        .routes(routes!(get_root, put_root))
        .routes(routes!(reset))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
}

/// `GET /api/v5/configs` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct NodeQuery {
    /// Another replicant whose effective configuration to show.
    node: Option<String>,
}

/// This node's effective configuration, redacted.
fn effective(ctx: &Ctx) -> Value {
    redacted(&ctx.runtime.current().config)
}

/// The effective configuration (redacted).
#[utoipa::path(get, path = "/api/v5/configs", tag = "configs", params(NodeQuery),
    responses((status = 200, description = "The effective configuration, secrets redacted"),
              (status = 401, description = "No or wrong API key"),
              (status = 503, description = "The node asked for did not answer")))]
async fn get_all(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    query: Result<Query<NodeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let Ok(Query(q)) = query else {
        return Err(bad_request("invalid query string"));
    };
    match q.node {
        Some(node) if node != ctx.node() => {
            if ctx.cluster.fanout.is_internal(&headers) {
                return Err(not_found(format!("this node is not {node}")));
            }
            let reply =
                fanout::call_node(&ctx, &node, Method::GET, "/api/v5/configs", Bytes::new())
                    .await
                    .map_err(|e| unavailable(format!("node {node}: {e}")))?;
            Ok((
                reply.status,
                [("content-type", "application/json")],
                reply.body,
            )
                .into_response())
        }
        _ => Ok(Json(effective(&ctx)).into_response()),
    }
}

/// One section of the effective configuration (redacted).
#[utoipa::path(get, path = "/api/v5/configs/{root}", tag = "configs",
    params(("root" = String, Path, description = "Section: mqtt, flapping_detect, listeners...")),
    responses((status = 200, description = "The section, secrets redacted"),
              (status = 401, description = "No or wrong API key"),
              (status = 404, description = "No such section")))]
async fn get_root(
    State(ctx): State<Arc<Ctx>>,
    Path(root): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    section(&ctx, &root).map(|v| Json(v).into_response())
}

fn section(ctx: &Ctx, root: &str) -> Result<Value, ApiError> {
    effective(ctx)
        .get(root)
        .cloned()
        .ok_or_else(|| not_found(format!("no configuration section {root:?}")))
}

/// Changes run-time keys of every section given.
#[utoipa::path(put, path = "/api/v5/configs", tag = "configs",
    request_body(content = Object, description = "{\"<section>\": {\"<key>\": value}}"),
    responses((status = 200, description = "The new effective configuration, redacted"),
              (status = 400, description = "A key needs a restart, or a value is refused"),
              (status = 401, description = "No or wrong API key"),
              (status = 503, description = "The cores did not commit")))]
async fn put_all(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    require_json(&headers)?;
    let sections: Map<String, Value> = parse_json(&body)?;
    let mut changes = Vec::new();
    for (root, keys) in sections {
        changes.extend(flatten(&root, keys)?);
    }
    write(&ctx, changes).await?;
    Ok(Json(effective(&ctx)).into_response())
}

/// Changes run-time keys of one section.
#[utoipa::path(put, path = "/api/v5/configs/{root}", tag = "configs",
    params(("root" = String, Path, description = "Section: mqtt, flapping_detect, alarms or log")),
    request_body(content = Object, description = "{\"<key>\": value}"),
    responses((status = 200, description = "The new section, redacted"),
              (status = 400, description = "A key needs a restart, or a value is refused"),
              (status = 401, description = "No or wrong API key"),
              (status = 503, description = "The cores did not commit")))]
async fn put_root(
    State(ctx): State<Arc<Ctx>>,
    Path(root): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    require_json(&headers)?;
    let keys: Value = parse_json(&body)?;
    let changes = flatten(&root, keys)?;
    write(&ctx, changes).await?;
    section(&ctx, &root).map(|v| Json(v).into_response())
}

/// `{"k": v}` of section `root` as (`root.k`, v); every key must be a run-time key.
fn flatten(root: &str, keys: Value) -> Result<Vec<(String, Value)>, ApiError> {
    let Value::Object(keys) = keys else {
        return Err(bad_request(format!(
            "the body of section {root} must be a JSON object of keys to change"
        )));
    };
    let mut out = Vec::with_capacity(keys.len());
    for (k, v) in keys {
        let key = format!("{root}.{k}");
        if !is_runtime_key(&key) {
            return Err(bad_request(OverrideError::NotRuntime(key).to_string()));
        }
        out.push((key, v));
    }
    Ok(out)
}

/// Checks `changes` on top of the stored overrides against this node's base configuration,
/// then writes them in one transaction and applies them here.
async fn write(ctx: &Arc<Ctx>, changes: Vec<(String, Value)>) -> Result<(), ApiError> {
    if changes.is_empty() {
        return Err(bad_request("no key to change"));
    }
    let mut all: Vec<(String, Value)> = stored(ctx).into_iter().map(|(k, v, _)| (k, v)).collect();
    for (k, v) in &changes {
        all.retain(|(old, _)| old != k);
        all.push((k.clone(), v.clone()));
    }
    apply_overrides(ctx.runtime.base(), &all).map_err(|e| bad_request(e.to_string()))?;
    let ops = changes
        .iter()
        .map(|(key, value)| {
            cluster::op(op::Kind::SettingSet(SettingSet {
                row: Some(SettingRow {
                    ns: NS.to_owned(),
                    key: key.clone(),
                    value: value.to_string().into_bytes().into(),
                    version: 0,
                }),
                expect_version: None,
            }))
        })
        .collect();
    let outcomes = cluster::try_transact(&ctx.tables, ops)
        .await
        .map_err(|e| unavailable(format!("not committed: {e}")))?;
    for outcome in outcomes {
        let result = meshmq_proto::tables::OpResult {
            outcome: Some(outcome),
        };
        if let Some((reason, detail)) = rejection(&result) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("refused by the settings table ({reason:?}): {detail}"),
            ));
        }
    }
    let keys: Vec<&str> = changes.iter().map(|(k, _)| k.as_str()).collect();
    tracing::info!(keys = ?keys, "run-time configuration changed through the API");
    refresh(ctx);
    Ok(())
}

/// Removes the override of one key.
#[utoipa::path(delete, path = "/api/v5/configs/{root}/{key}", tag = "configs",
    params(("root" = String, Path, description = "Section"), ("key" = String, Path, description = "Key")),
    responses((status = 204, description = "The override is gone; the node's own value applies"),
              (status = 401, description = "No or wrong API key"),
              (status = 404, description = "The key has no override"),
              (status = 503, description = "The cores did not commit")))]
async fn reset(
    State(ctx): State<Arc<Ctx>>,
    Path((root, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let key = format!("{root}.{key}");
    if !crate::settings::delete(&ctx, NS, &key, None).await? {
        return Err(not_found(format!("{key} has no run-time override")));
    }
    refresh(&ctx);
    Ok(StatusCode::NO_CONTENT.into_response())
}
