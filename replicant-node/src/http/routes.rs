//! The REST API's routes, assembled once: every module's router, built with `utoipa-axum`
//! so that the OpenAPI document ([`super::openapi`]) describes each of them.
//!
//! Owns the list of API modules (one line each). The same router serves the HTTP listener
//! and calls from other nodes (`crate::fanout`). A module must never add a plain
//! `axum::Router` route here: `tests/openapi.rs` fails on any route the document lacks.

use std::sync::Arc;

use axum::Router;
use utoipa_axum::router::OpenApiRouter;

use crate::ctx::Ctx;

/// Every API route (`/api/v5/...`) with the broker as state.
pub fn api(ctx: &Arc<Ctx>) -> Router {
    let (routes, _openapi) = documented(ctx).split_for_parts();
    routes
}

/// The API's routes with their OpenAPI description.
pub fn documented(ctx: &Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .merge(crate::http::openapi::routes(ctx.clone()))
        .merge(crate::nodes::api::routes(ctx.clone()))
        .merge(crate::evacuation::api::routes(ctx.clone()))
        .merge(crate::authn::api::routes(ctx.clone()))
        .merge(crate::banned::api::routes(ctx.clone()))
        .merge(crate::authz::api::routes(ctx.clone()))
        .merge(crate::listeners::api::routes(ctx.clone()))
        .merge(crate::configs::api::routes(ctx.clone()))
        .merge(crate::alarms::api::routes(ctx.clone()))
        .merge(crate::http::log_level::routes(ctx.clone()))
        .merge(crate::trace::api::routes(ctx.clone()))
        .merge(crate::api_keys::api::routes(ctx.clone()))
        .merge(crate::data::api::routes(ctx.clone()))
        .merge(crate::api::routes(ctx.clone()))
}
