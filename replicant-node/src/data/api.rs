//! The data routes:
//!
//! - `GET /api/v5/data/export`: the document (see [`super::export`]), streamed, as an
//!   attachment `meshmq-export-<node>-<unix seconds>.json`;
//! - `POST /api/v5/data/import` (`Content-Type: application/json`, at most
//!   [`MAX_IMPORT_BYTES`]): checks the whole document ([`super::plan`]; 400 naming the first
//!   bad row, nothing written), writes it ([`super::import`]) and answers the rows written
//!   per table. One import at a time per node (429 meanwhile, before the body is read).
//!
//! Both need the API key ([`authorize`] first). Every import and export is counted in
//! `meshmq_data_transfers_total{kind, result}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Json, Response};
use meshmq_shared::metrics as m;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::import::{Report, Turn};
use super::{DataError, MAX_IMPORT_BYTES};
use crate::ctx::Ctx;
use crate::http::api::{ApiError, Denied, ErrorBody, authorize, require_json};

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(export))
        .routes(routes!(import))
        .layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES))
        .with_state(ctx)
}

fn counted(kind: &'static str, result: &'static str) {
    metrics::counter!(m::DATA_TRANSFERS_TOTAL, "kind" => kind, "result" => result).increment(1);
}

/// A backup of users, authorization rules, bans, retained messages and cluster settings.
#[utoipa::path(get, path = "/api/v5/data/export", tag = "data",
    responses((status = 200, description = "`{version, node, exported_at, applied_index, \
auth_users, authz_rules, banned, retained, settings, settings_base64}` (streamed)", body = Object),
              Denied))]
async fn export(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let stream = super::export::document(&ctx);
    counted("export", "ok");
    tracing::info!("data export started");
    let name = format!(
        "attachment; filename=\"meshmq-export-{}-{}.json\"",
        ctx.node()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect::<String>(),
        crate::banned::now_s()
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Imports an export document into the cluster (upsert).
#[utoipa::path(post, path = "/api/v5/data/import", tag = "data",
    request_body(content = Object, description = "A document of `GET /api/v5/data/export`",
                 content_type = "application/json"),
    responses((status = 200, description = "Rows written per table", body = Report), Denied,
              (status = 400, description = "Not JSON, an unknown version, or a bad row (named); \
nothing written", body = ErrorBody),
              (status = 413, description = "The document is too large", body = ErrorBody),
              (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
              (status = 429, description = "An import is already running on this node", body = ErrorBody),
              (status = 503, description = "The cores stopped committing part-way", body = ErrorBody)))]
async fn import(State(ctx): State<Arc<Ctx>>, request: Request) -> Result<Response, ApiError> {
    authorize(&ctx, request.headers())?;
    require_json(request.headers()).inspect_err(|_| counted("import", "bad_request"))?;
    let result = run(&ctx, request).await;
    counted(
        "import",
        result.as_ref().map_or_else(DataError::label, |_| "ok"),
    );
    Ok(Json(result?).into_response())
}

/// Reads, checks and writes one document.
async fn run(ctx: &Arc<Ctx>, request: Request) -> Result<Report, DataError> {
    let turn = Turn::take().ok_or(DataError::Busy)?;
    let body = axum::body::to_bytes(request.into_body(), MAX_IMPORT_BYTES)
        .await
        .map_err(|_| DataError::TooLarge)?;
    // Parsing and checking a large document takes a while: off the async workers.
    let c = ctx.clone();
    let plan = tokio::task::spawn_blocking(move || super::plan::build(&c, &body))
        .await
        .map_err(|e| DataError::Field(format!("the check did not finish: {e}")))??;
    let report = super::import::run(ctx, plan).await;
    drop(turn);
    report
}
