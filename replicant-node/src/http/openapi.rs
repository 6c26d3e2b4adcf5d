//! `GET /api/v5/openapi.json`: the OpenAPI 3 document of the REST API, generated from the
//! handlers' `#[utoipa::path]` annotations (every router in [`super::routes::documented`]
//! plus the node's own `/metrics`, `/health` and `/api/v5/status`).
//!
//! Owns the document's frame: `info`, the `Error` schema, the security schemes (`basicAuth`
//! with an API key and secret, `bearerAuth` with `listeners.api_key`) applied to every
//! operation except the open ones ([`OPEN_PATHS`]). The route is open too, as EMQX's
//! `/api-docs`: the document describes the API and holds no secret. It must never describe
//! a route by hand: what is in it comes from the handlers.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Components, Info, OpenApi};
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ctx::Ctx;
use crate::http::api::{ErrorBody, error};

/// The routes that answer without an API key: load balancers, monitoring and this document.
pub const OPEN_PATHS: [&str; 5] = [
    "/health",
    "/metrics",
    "/api/v5/status",
    "/api/v5/load_rebalance/availability_check",
    "/api/v5/openapi.json",
];

/// The document, rendered once per process (it depends on the code only).
static DOCUMENT: OnceLock<Result<Bytes, String>> = OnceLock::new();

/// The route, with the broker as its state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .with_state(ctx)
}

/// This document: every REST route of the node, its parameters, bodies and answers.
#[utoipa::path(get, path = "/api/v5/openapi.json", tag = "openapi",
    responses((status = 200, description = "The OpenAPI 3 document", body = Object),
              (status = 500, description = "The document could not be rendered", body = ErrorBody)))]
async fn openapi_json(State(ctx): State<Arc<Ctx>>) -> Response {
    let rendered = DOCUMENT.get_or_init(|| {
        serde_json::to_vec(&document(&ctx))
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    });
    match rendered {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("the OpenAPI document could not be rendered: {e}"),
        )
        .into_response(),
    }
}

/// The whole document: the API's routes, the node's own and the frame.
pub fn document(ctx: &Arc<Ctx>) -> OpenApi {
    let (_, mut doc) = super::routes::documented(ctx).split_for_parts();
    doc.merge(super::openapi_paths());
    doc.info = Info::builder()
        .title("meshmq")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "The REST API of a meshmq replicant (EMQX 5 paths and JSON shapes). Errors are \
             `{\"code\", \"message\"}`; lists are paged with `page` and `limit` and answer \
             `{\"data\", \"meta\": {\"page\", \"limit\", \"count\", \"hasnext\"}}`.",
        ))
        .build();
    let components = doc.components.get_or_insert_with(Components::new);
    components
        .schemas
        .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    let scheme = |scheme, description: &str| {
        let http = HttpBuilder::new().scheme(scheme);
        SecurityScheme::Http(http.description(Some(description)).build())
    };
    components.add_security_scheme(
        "basicAuth",
        scheme(HttpAuthScheme::Basic, "An API key and its secret (`key:secret`)"),
    );
    components.add_security_scheme(
        "bearerAuth",
        scheme(HttpAuthScheme::Bearer, "The node's `listeners.api_key`"),
    );
    let none: [&str; 0] = [];
    doc.security = Some(vec![
        SecurityRequirement::new("basicAuth", none),
        SecurityRequirement::new("bearerAuth", none),
    ]);
    for (path, item) in doc.paths.paths.iter_mut() {
        if !OPEN_PATHS.contains(&path.as_str()) {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for op in operations.into_iter().flatten() {
            // An empty list overrides the global requirement: no key needed.
            op.security = Some(Vec::new());
        }
    }
    doc
}
