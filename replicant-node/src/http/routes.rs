//! The REST API's routes, assembled once: every module's router merged, and the OpenAPI
//! document those built with `utoipa-axum` describe.
//!
//! Owns the list of API modules. The same router serves the HTTP listener and calls from
//! other nodes (`crate::fanout`).

use std::sync::Arc;

use axum::Router;
use utoipa_axum::router::OpenApiRouter;

use crate::ctx::Ctx;

/// Every API route (`/api/v5/...`) with the broker as state.
pub fn api(ctx: &Arc<Ctx>) -> Router {
    let (documented, _openapi) = documented(ctx).split_for_parts();
    documented
        .merge(crate::evacuation::api::routes(ctx.clone()))
        .merge(crate::authn::api::routes(ctx.clone()))
        .merge(crate::banned::api::routes(ctx.clone()))
        .merge(crate::authz::api::routes(ctx.clone()))
        .merge(crate::listeners::api::routes(ctx.clone()))
        .merge(crate::configs::api::routes(ctx.clone()))
}

/// The routes built with `utoipa-axum`, with their OpenAPI description.
pub fn documented(ctx: &Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .merge(crate::nodes::api::routes(ctx.clone()))
        .merge(crate::alarms::api::routes(ctx.clone()))
}
