//! This node's log filter through the API:
//!
//! - `GET /api/v5/log/level`: `{"level", "directives"}` in force (`level` is empty when
//!   `RUST_LOG` set the filter at start-up; its text is then in `directives`).
//! - `PUT /api/v5/log/level` `{"level": "debug", "directives": "replicant_node::peer=trace"}`
//!   (`directives` optional, `RUST_LOG` syntax): 200 with the new filter; 400 when the level
//!   or the directives do not parse; 503 when this process runs the broker without the
//!   node's logger (an embedding program).
//!
//! Owns the routes only: the logger and its reload handle are `core_node::logging`'s. The
//! change is this node's alone and temporary (for debugging one node): it is not stored,
//! and holds until the node restarts or the cluster-wide `log.level` / `log.directives`
//! change (`PUT /api/v5/configs/log`, kept in the cluster tables and applied by every
//! replicant, see `crate::configs`), whichever comes first. `GET` shows the filter in force
//! on this node, whichever of the two set it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::response::Json;
use core_node::logging::{self, LogError};
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::http::api::{ApiError, authorize, bad_request, parse_json, require_json, unavailable};

/// Largest request body.
const MAX_BODY: usize = 8 * 1024;

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> utoipa_axum::router::OpenApiRouter {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(show, change))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
}

/// The filter in force, and the body of a change.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogLevel {
    /// trace, debug, info, warn, error or off.
    pub level: String,
    /// Per-module levels (`RUST_LOG` syntax), applied over `level`.
    #[serde(default)]
    pub directives: String,
}

/// The filter in force.
#[utoipa::path(get, path = "/api/v5/log/level", tag = "log",
    responses((status = 200, body = LogLevel), (status = 401), (status = 503)))]
async fn show(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Json<LogLevel>, ApiError> {
    authorize(&ctx, &headers)?;
    let (level, directives) = logging::current_filter().ok_or_else(not_installed)?;
    Ok(Json(LogLevel { level, directives }))
}

/// Replaces the filter.
#[utoipa::path(put, path = "/api/v5/log/level", tag = "log", request_body = LogLevel,
    responses((status = 200, body = LogLevel), (status = 400), (status = 401), (status = 503)))]
async fn change(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<LogLevel>, ApiError> {
    authorize(&ctx, &headers)?;
    require_json(&headers)?;
    let want: LogLevel = parse_json(&body)?;
    if want.directives.len() > 4096 {
        return Err(bad_request("directives: longer than 4096 bytes"));
    }
    match logging::set_log_filter(&want.level, &want.directives) {
        Ok(()) => {}
        Err(LogError::NotInstalled) => return Err(not_installed()),
        Err(e) => return Err(bad_request(e.to_string())),
    }
    let (level, directives) = logging::current_filter().ok_or_else(not_installed)?;
    Ok(Json(LogLevel { level, directives }))
}

fn not_installed() -> ApiError {
    unavailable("this process runs the broker without the node's logger (an embedded broker)")
}
