//! The `listeners` REST API of a node, in EMQX's shape:
//!
//! - `GET /api/v5/listeners`: every configured listener, enabled or not, as `{"id":
//!   "ssl:default", "type", "name", "bind", "enable", "running", "current_connections",
//!   "max_connections", "max_conn_rate", "proxy_protocol", "enable_authn", "status":
//!   {"running", "current_connections", "max_connections"}}`; `max_connections` and
//!   `max_conn_rate` are `"infinity"` when unset (as EMQX writes them). TLS listeners add
//!   `"ssl": {"verify", "certificate": {"subject_cn", "not_after", "loaded_at_ms", "sni"}}`:
//!   file names, keys and passwords are never shown.
//! - `GET /api/v5/listeners/{id}`: one of them; 404 for an unknown id.
//! - `POST /api/v5/listeners/{id}/reload`: re-reads a TLS listener's certificate files now.
//!   200 `{"id", "changed", "certificate"}`; 400 with the reason when the new files do not
//!   load (the previous certificate stays in use) or the listener has no TLS; 404.
//!
//! Every route needs the operator's API key when one is set ([`authorize`] first).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Json;
use meshmq_shared::config::tls::ClientAuth;
use serde_json::{Value, json};

use super::Listener;
use super::reload::{ReloadError, reload_now};
use crate::ctx::Ctx;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::api::{ApiError, Denied, ErrorBody, authorize, bad_request, not_found};

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(one))
        .routes(routes!(reload))
        .with_state(ctx)
}

/// A listener as the API shows it.
pub fn to_json(l: &Listener) -> Value {
    let c = &l.spec.config;
    let infinity = |v: Option<u64>| v.map_or(json!("infinity"), |n| json!(n));
    let max_connections = infinity(c.max_connections.map(|n| n as u64));
    let mut v = json!({
        "id": l.id,
        "type": l.spec.kind.as_str(),
        "name": l.spec.name,
        "bind": l.addr.unwrap_or(l.spec.bind).to_string(),
        "enable": c.enable,
        "running": l.running(),
        "current_connections": l.current_connections(),
        "max_connections": max_connections,
        "max_conn_rate": infinity(c.max_conn_rate.map(u64::from)),
        "proxy_protocol": c.proxy_protocol,
        "enable_authn": c.enable_authn,
        "status": {
            "running": l.running(),
            "current_connections": l.current_connections(),
            "max_connections": max_connections,
        },
    });
    if l.spec.kind.is_tls() {
        let verify = match c.ssl_options.as_ref().map(|o| o.client_auth()) {
            Some(ClientAuth::Optional) => "optional",
            Some(ClientAuth::Required) => "required",
            _ => "none",
        };
        v["ssl"] = json!({
            "verify": verify,
            "certificate": l.tls.as_ref().map(|t| t.summary()),
        });
    }
    v
}

/// Every configured listener, enabled or not.
#[utoipa::path(get, path = "/api/v5/listeners", tag = "listeners",
    responses((status = 200, description = "Every listener (`id`, `type`, `bind`, `running`, \
counts, `ssl` for TLS listeners)", body = [Object]), Denied))]
async fn list(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&ctx, &headers)?;
    let all: Vec<Value> = ctx
        .admission
        .listeners
        .all()
        .iter()
        .map(|l| to_json(l))
        .collect();
    Ok(Json(Value::Array(all)))
}

/// The listener `id`, or 404.
fn find(ctx: &Ctx, id: &str) -> Result<Arc<Listener>, ApiError> {
    ctx.admission
        .listeners
        .get(id)
        .cloned()
        .ok_or_else(|| not_found(format!("no listener {id:?} (ids are type:name)")))
}

/// One listener.
#[utoipa::path(get, path = "/api/v5/listeners/{id}", tag = "listeners",
    params(("id" = String, Path, description = "Listener id, `type:name` (`ssl:default`)")),
    responses((status = 200, description = "The listener", body = Object), Denied,
              (status = 404, description = "No such listener", body = ErrorBody)))]
async fn one(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&ctx, &headers)?;
    Ok(Json(to_json(&*find(&ctx, &id)?)))
}

/// Re-reads a TLS listener's certificate files now.
#[utoipa::path(post, path = "/api/v5/listeners/{id}/reload", tag = "listeners",
    params(("id" = String, Path, description = "Listener id, `type:name` (`ssl:default`)")),
    responses((status = 200, description = "`{id, changed, certificate}`", body = Object), Denied,
              (status = 400, description = "Not a TLS listener, or the new files do not load \
(the previous certificate stays in use)", body = ErrorBody),
              (status = 404, description = "No such listener", body = ErrorBody),
              (status = 500, description = "The reload was aborted", body = ErrorBody)))]
async fn reload(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&ctx, &headers)?;
    let listener = find(&ctx, &id)?;
    let changed = match reload_now(&listener).await {
        Ok(changed) => changed,
        Err(e @ (ReloadError::NotTls(_) | ReloadError::Load { .. })) => {
            return Err(bad_request(e.to_string()));
        }
        Err(e @ ReloadError::Aborted(_)) => {
            return Err(crate::http::api::error(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                e.to_string(),
            ));
        }
    };
    Ok(Json(json!({
        "id": listener.id,
        "changed": changed,
        "certificate": listener.tls.as_ref().map(|t| t.summary()),
    })))
}
