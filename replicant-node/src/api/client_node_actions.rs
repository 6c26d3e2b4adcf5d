//! The node-local twins of `super::client_actions`' routes:
//! `/api/v5/nodes/{node}/clients/{clientid}/{subscriptions, subscribe, subscribe/bulk,
//! unsubscribe, unsubscribe/bulk}`. Each serves a client of this node only: another node's
//! name, or a client whose session is not here, is a 404 (these routes never call another
//! node; the cluster-wide routes call them on the node that has the client).
//!
//! Owns only the routes and their OpenAPI description; what they do is
//! `super::client_actions`' (the same functions serve both).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::client_actions::{
    SubBody, Target, UnsubBody, list_subs, sub_bulk, sub_one, unsub_bulk, unsub_one,
};
use crate::ctx::Ctx;
use crate::http::api::{ApiError, Denied, ErrorBody};

/// The routes; the caller adds the body bound and the state.
pub fn routes() -> OpenApiRouter<Arc<Ctx>> {
    OpenApiRouter::new()
        .routes(routes!(node_subscriptions))
        .routes(routes!(node_subscribe))
        .routes(routes!(node_subscribe_bulk))
        .routes(routes!(node_unsubscribe))
        .routes(routes!(node_unsubscribe_bulk))
}

/// The subscriptions of a client of this node.
#[utoipa::path(get, path = "/api/v5/nodes/{node}/clients/{clientid}/subscriptions", tag = "clients",
    params(("node" = String, Path, description = "this node's name"),
           ("clientid" = String, Path, description = "client id")),
    responses((status = 200, description = "[{clientid, node, topic, qos, nl, rap, rh}]", body = Object),
              Denied, (status = 404, description = "not a client of this node, or another node's name", body = ErrorBody)))]
async fn node_subscriptions(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(t): Path<Target>,
) -> Result<Response, ApiError> {
    list_subs(ctx, headers, t).await
}

/// Subscribes a client of this node to one filter.
#[utoipa::path(post, path = "/api/v5/nodes/{node}/clients/{clientid}/subscribe", tag = "clients",
    params(("node" = String, Path, description = "this node's name"),
           ("clientid" = String, Path, description = "client id")), request_body = SubBody,
    responses((status = 200, description = "the subscription", body = Object), Denied,
              (status = 400, description = "refused (the filter named)", body = ErrorBody),
              (status = 404, description = "not a client of this node, or another node's name", body = ErrorBody),
              (status = 415, description = "not JSON", body = ErrorBody),
              (status = 503, description = "not committed", body = ErrorBody)))]
async fn node_subscribe(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(t): Path<Target>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    sub_one(ctx, headers, t, raw).await
}

/// Subscribes a client of this node to up to 1 000 filters.
#[utoipa::path(post, path = "/api/v5/nodes/{node}/clients/{clientid}/subscribe/bulk", tag = "clients",
    params(("node" = String, Path, description = "this node's name"),
           ("clientid" = String, Path, description = "client id")), request_body = Vec<SubBody>,
    responses((status = 200, description = "the subscriptions", body = Object), Denied,
              (status = 400, description = "refused (the filter named)", body = ErrorBody),
              (status = 404, description = "not a client of this node, or another node's name", body = ErrorBody),
              (status = 415, description = "not JSON", body = ErrorBody),
              (status = 503, description = "not committed", body = ErrorBody)))]
async fn node_subscribe_bulk(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(t): Path<Target>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    sub_bulk(ctx, headers, t, raw).await
}

/// Unsubscribes a client of this node from one filter: 204.
#[utoipa::path(post, path = "/api/v5/nodes/{node}/clients/{clientid}/unsubscribe", tag = "clients",
    params(("node" = String, Path, description = "this node's name"),
           ("clientid" = String, Path, description = "client id")), request_body = UnsubBody,
    responses((status = 204, description = "done (whether or not it had the filter)"), Denied,
              (status = 400, description = "bad body", body = ErrorBody),
              (status = 404, description = "not a client of this node, or another node's name", body = ErrorBody),
              (status = 415, description = "not JSON", body = ErrorBody),
              (status = 503, description = "not committed", body = ErrorBody)))]
async fn node_unsubscribe(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(t): Path<Target>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    unsub_one(ctx, headers, t, raw).await
}

/// Unsubscribes a client of this node from up to 1 000 filters: 204.
#[utoipa::path(post, path = "/api/v5/nodes/{node}/clients/{clientid}/unsubscribe/bulk", tag = "clients",
    params(("node" = String, Path, description = "this node's name"),
           ("clientid" = String, Path, description = "client id")), request_body = Vec<UnsubBody>,
    responses((status = 204, description = "done"), Denied,
              (status = 400, description = "bad body", body = ErrorBody),
              (status = 404, description = "not a client of this node, or another node's name", body = ErrorBody),
              (status = 415, description = "not JSON", body = ErrorBody),
              (status = 503, description = "not committed", body = ErrorBody)))]
async fn node_unsubscribe_bulk(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(t): Path<Target>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    unsub_bulk(ctx, headers, t, raw).await
}
