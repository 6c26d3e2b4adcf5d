//! `GET /api/v5/openapi.json`: the OpenAPI 3 document of the REST API, generated from the
//! handlers' `#[utoipa::path]` annotations (every router in [`super::routes::documented`]
//! plus the node's own `/metrics`, `/health` and `/api/v5/status`).
//!
//! Owns the document's frame: `info`, the `Error` schema, the security schemes (`basicAuth`
//! with an API key and secret, `bearerAuth` with `listeners.api_key`) applied to every
//! operation except the open ones ([`OPEN_PATHS`]). The route is open too, as EMQX's
//! `/api-docs`: the document describes the API and holds no secret. It must never describe
//! a route by hand: what is in it comes from the handlers.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, PathItem};
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
        scheme(
            HttpAuthScheme::Basic,
            "An API key and its secret (`key:secret`)",
        ),
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
    unique_operation_ids(&mut doc);
    for (path, item) in doc.paths.paths.iter_mut() {
        if !OPEN_PATHS.contains(&path.as_str()) {
            continue;
        }
        for op in operations(item) {
            // An empty list overrides the global requirement: no key needed.
            op.security = Some(Vec::new());
        }
    }
    doc
}

/// Every operation of a path, with its method's name.
fn operations_named(item: &mut PathItem) -> [(&'static str, &mut Option<Operation>); 8] {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("patch", &mut item.patch),
        ("head", &mut item.head),
        ("options", &mut item.options),
        ("trace", &mut item.trace),
    ]
}

/// Every operation of a path.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    operations_named(item)
        .into_iter()
        .filter_map(|(_, op)| op.as_mut())
}

/// `operationId` must be unique in a document: utoipa names an operation after its
/// handler, and two modules may both have a `list`. A name used more than once becomes
/// the method and the path (`get_api_v5_banned`).
fn unique_operation_ids(doc: &mut OpenApi) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            if let Some(id) = &op.operation_id {
                *seen.entry(id.clone()).or_default() += 1;
            }
        }
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in operations_named(item) {
            let Some(op) = op.as_mut() else { continue };
            let shared = op
                .operation_id
                .as_ref()
                .is_none_or(|id| seen.get(id).is_some_and(|n| *n > 1));
            if shared {
                let words = path
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .filter(|w| !w.is_empty());
                let id = std::iter::once(method).chain(words).collect::<Vec<_>>();
                op.operation_id = Some(id.join("_"));
            }
        }
    }
}
