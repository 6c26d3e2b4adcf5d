//! A client's subscriptions, and subscribing or unsubscribing on its behalf, as EMQX's API:
//!
//! - `GET /api/v5/clients/{clientid}/subscriptions`: `[{clientid, node, topic, qos, nl, rap,
//!   rh}]` sorted by topic;
//! - `POST /api/v5/clients/{clientid}/subscribe` `{topic, qos, nl, rap, rh}` (200 with the
//!   subscription), `/subscribe/bulk` (a list of those; 200 with the list);
//! - `POST /api/v5/clients/{clientid}/unsubscribe` `{topic}` and `/unsubscribe/bulk` (204).
//!
//! Each has a node-local twin under `/api/v5/nodes/{node}/clients/{clientid}/...`; the
//! cluster-wide route serves the client here when its session is here, and otherwise asks
//! the other nodes (404 `CLIENTID_NOT_FOUND` when none has it). A subscription goes through
//! the same code as a client's SUBSCRIBE (`connection::sub_apply`: session, router, table
//! rows, route commit, peer barrier, rollback) and an unsubscription through UNSUBSCRIBE's,
//! on a connected session or one waiting for its client; the node's rules apply (filter
//! syntax, shared and wildcard subscriptions, `mqtt.max_subscriptions`), client
//! authorization does not (an operator action, as in EMQX). A request is checked whole
//! before any filter is applied (400 naming the first filter at fault); retained messages
//! follow as `sub_replay` says.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use meshmq_shared::codec::QoS;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::clients::{client_not_found, own_node};
use super::nodes::{self, encode};
use super::{bad, body_bytes, counted, sub_replay};
use crate::connection::sub_apply::{self, FilterVerdict, SubscriptionQuota};
use crate::ctx::Ctx;
use crate::http::api::{
    ApiError, Denied, ErrorBody, authorize, parse_json, require_json, unavailable,
};
use crate::session::SubOpts;
use crate::sessions::SessionSlot;

/// Most filters in one bulk request.
pub const MAX_BULK: usize = 1_000;
/// Largest request body.
pub const MAX_BODY: usize = 1024 * 1024;

/// The routes (the cluster-wide ones here, their node-local twins in
/// `super::client_node_actions`), with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(subscriptions))
        .routes(routes!(subscribe_one))
        .routes(routes!(subscribe_bulk))
        .routes(routes!(unsubscribe_one))
        .routes(routes!(unsubscribe_bulk))
        .merge(super::client_node_actions::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
}

/// The path's parameters: the client, and the node for node-local routes.
#[derive(Debug, Deserialize)]
pub(super) struct Target {
    clientid: String,
    node: Option<String>,
}

/// One subscription of a request (EMQX's body; `nl` and `rap` as 0/1 or booleans).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubBody {
    /// The filter (`$share/{group}/...` for a shared subscription).
    topic: String,
    /// Maximum QoS, 0 (default) to 2.
    #[serde(default)]
    qos: u8,
    /// No Local.
    #[serde(default)]
    nl: Option<Value>,
    /// Retain As Published.
    #[serde(default)]
    rap: Option<Value>,
    /// Retain Handling, 0 (default) to 2.
    #[serde(default)]
    rh: u8,
}

/// One filter of an unsubscribe request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsubBody {
    /// The filter to remove.
    topic: String,
}

fn flag(name: &str, v: &Option<Value>) -> Result<bool, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(false),
        Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(true),
        _ => Err(bad("clients", format!("{name} must be 0 or 1"))),
    }
}

/// A subscription as the API shows it.
pub fn sub_json(client_id: &str, node: &str, filter: &str, o: &SubOpts) -> Value {
    json!({
        "clientid": client_id,
        "node": node,
        "topic": filter,
        "qos": o.qos as u8,
        "nl": u8::from(o.no_local),
        "rap": u8::from(o.retain_as_published),
        "rh": o.retain_handling,
    })
}

/// Checks a request's filters whole (rules and quota); 400 naming the first at fault.
fn check(ctx: &Ctx, slot: &SessionSlot, subs: &[SubBody]) -> Result<Vec<SubOpts>, ApiError> {
    let v5 = slot.inner.lock().session.version().is_v5();
    let mut quota = SubscriptionQuota::of(ctx, slot);
    let mut out = Vec::with_capacity(subs.len());
    for s in subs {
        let name: String = s.topic.chars().take(128).collect();
        let qos = QoS::from_u8(s.qos).ok_or_else(|| bad("clients", "qos must be 0, 1 or 2"))?;
        if s.rh > 2 {
            return Err(bad("clients", "rh must be 0, 1 or 2"));
        }
        let opts = SubOpts {
            qos,
            no_local: flag("nl", &s.nl)?,
            retain_as_published: flag("rap", &s.rap)?,
            retain_handling: s.rh,
            subscription_id: None,
        };
        match sub_apply::check_rules(ctx, &s.topic, &opts, v5) {
            Ok(_) => {}
            Err(FilterVerdict::Refuse(code) | FilterVerdict::Close(code)) => {
                return Err(bad(
                    "clients",
                    format!("{name:?}: refused ({code:?}, 0x{:02x})", code.as_u8()),
                ));
            }
        }
        if !quota.admits(slot, &s.topic) {
            return Err(bad(
                "clients",
                format!("{name:?}: over mqtt.max_subscriptions"),
            ));
        }
        out.push(opts);
    }
    Ok(out)
}

/// Subscribes this node's client `id`: `None` when its session is not here.
async fn subscribe_here(
    ctx: &Arc<Ctx>,
    id: &str,
    subs: &[SubBody],
) -> Result<Option<Vec<Value>>, ApiError> {
    let Some(slot) = ctx.local.sessions.get(id) else {
        return Ok(None);
    };
    let opts = check(ctx, &slot, subs)?;
    let valid = subs
        .iter()
        .zip(opts)
        .enumerate()
        .map(|(i, (s, o))| (i, s.topic.as_str(), o))
        .collect();
    let Some(applied) = sub_apply::apply(ctx, &slot, None, valid) else {
        return Ok(None);
    };
    let (applied, failed) = sub_apply::commit(ctx, &slot, applied).await;
    if !failed.is_empty() {
        return Err(unavailable(
            "the cluster tables did not take the subscription; nothing kept, try again",
        ));
    }
    let mut answer = Vec::with_capacity(applied.len());
    for a in applied {
        if sub_replay::wanted(&a.opts, a.old.is_none(), a.shared) {
            sub_replay::replay(ctx, &slot, &a.filter, a.opts);
        }
        answer.push(sub_json(id, ctx.node(), &a.filter, &a.opts));
    }
    Ok(Some(answer))
}

/// Unsubscribes this node's client `id`: `None` when its session is not here.
async fn unsubscribe_here(
    ctx: &Arc<Ctx>,
    id: &str,
    topics: Vec<String>,
) -> Result<Option<()>, ApiError> {
    let Some(slot) = ctx.local.sessions.get(id) else {
        return Ok(None);
    };
    let Some(reasons) =
        crate::connection::unsubscribe::unsubscribe(ctx, &slot, None, &topics).await
    else {
        return Ok(None);
    };
    if reasons.iter().any(|r| r.is_error()) {
        return Err(unavailable(
            "the cluster tables did not take the unsubscription; the subscription is kept",
        ));
    }
    Ok(Some(()))
}

/// The operator check, and 404 for a node-local route named with another node.
fn admit(ctx: &Ctx, headers: &HeaderMap, t: &Target) -> Result<(), ApiError> {
    authorize(ctx, headers)?;
    match &t.node {
        Some(node) => own_node(ctx, node),
        None => Ok(()),
    }
}

/// Serves a request here, or (cluster-wide route, session elsewhere) on the node that has
/// the client; `suffix` is the path after the client id.
async fn route<T>(
    ctx: &Arc<Ctx>,
    t: &Target,
    here: Result<Option<T>, ApiError>,
    (suffix, body): (&str, Bytes),
    answer: impl FnOnce(T) -> Response,
) -> Result<Response, ApiError> {
    if let Some(v) = here? {
        return Ok(answer(v));
    }
    if t.node.is_some() {
        return Err(client_not_found());
    }
    let path = format!(
        "/api/v5/nodes/{{node}}/clients/{}{suffix}",
        encode(&t.clientid)
    );
    let method = if suffix == "/subscriptions" {
        Method::GET
    } else {
        Method::POST
    };
    let (status, v) = nodes::first_found(ctx, method, &path, body, client_not_found).await?;
    Ok((status, Json(v)).into_response())
}

/// Reads a JSON body of this API once the caller is authorized (413 / 415 / 400 counted);
/// the value and the raw bytes (forwarded as they came to the node that has the client).
fn body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(T, Bytes), ApiError> {
    require_json(headers).inspect_err(counted("clients"))?;
    let raw = body_bytes("clients", raw)?;
    let v = parse_json(&raw).inspect_err(counted("clients"))?;
    Ok((v, raw))
}

/// `GET .../subscriptions`: the client's subscriptions, sorted by filter.
pub(super) async fn list_subs(
    ctx: Arc<Ctx>,
    headers: HeaderMap,
    t: Target,
) -> Result<Response, ApiError> {
    admit(&ctx, &headers, &t)?;
    let here = ctx.local.sessions.get(&t.clientid).and_then(|slot| {
        let inner = slot.inner.lock();
        if inner.ended {
            return None;
        }
        let mut subs: Vec<_> = inner.session.subscriptions.iter().collect();
        subs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let list: Vec<Value> = subs
            .into_iter()
            .map(|(f, o)| sub_json(&t.clientid, ctx.node(), f, o))
            .collect();
        Some(list)
    });
    let answer = |v: Vec<Value>| Json(Value::Array(v)).into_response();
    route(&ctx, &t, Ok(here), ("/subscriptions", Bytes::new()), answer).await
}

/// `POST .../subscribe`: one filter; 200 with the subscription.
pub(super) async fn sub_one(
    ctx: Arc<Ctx>,
    headers: HeaderMap,
    t: Target,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admit(&ctx, &headers, &t)?;
    let (sub, raw): (SubBody, _) = body(&headers, raw)?;
    let here = subscribe_here(&ctx, &t.clientid, std::slice::from_ref(&sub)).await;
    let answer = |mut v: Vec<Value>| Json(v.pop().unwrap_or(Value::Null)).into_response();
    route(&ctx, &t, here, ("/subscribe", raw), answer).await
}

/// `POST .../subscribe/bulk`: up to [`MAX_BULK`] filters; 200 with the list.
pub(super) async fn sub_bulk(
    ctx: Arc<Ctx>,
    headers: HeaderMap,
    t: Target,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admit(&ctx, &headers, &t)?;
    let (subs, raw): (Vec<SubBody>, _) = body(&headers, raw)?;
    if subs.is_empty() || subs.len() > MAX_BULK {
        return Err(bad(
            "clients",
            format!("a bulk request carries 1..={MAX_BULK} filters"),
        ));
    }
    let here = subscribe_here(&ctx, &t.clientid, &subs).await;
    let answer = |v: Vec<Value>| Json(Value::Array(v)).into_response();
    route(&ctx, &t, here, ("/subscribe/bulk", raw), answer).await
}

/// `POST .../unsubscribe`: one filter; 204.
pub(super) async fn unsub_one(
    ctx: Arc<Ctx>,
    headers: HeaderMap,
    t: Target,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admit(&ctx, &headers, &t)?;
    let (u, raw): (UnsubBody, _) = body(&headers, raw)?;
    let here = unsubscribe_here(&ctx, &t.clientid, vec![u.topic]).await;
    let answer = |()| StatusCode::NO_CONTENT.into_response();
    route(&ctx, &t, here, ("/unsubscribe", raw), answer).await
}

/// `POST .../unsubscribe/bulk`: up to [`MAX_BULK`] filters; 204.
pub(super) async fn unsub_bulk(
    ctx: Arc<Ctx>,
    headers: HeaderMap,
    t: Target,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admit(&ctx, &headers, &t)?;
    let (list, raw): (Vec<UnsubBody>, _) = body(&headers, raw)?;
    if list.is_empty() || list.len() > MAX_BULK {
        return Err(bad(
            "clients",
            format!("a bulk request carries 1..={MAX_BULK} filters"),
        ));
    }
    let topics = list.into_iter().map(|u| u.topic).collect();
    let here = unsubscribe_here(&ctx, &t.clientid, topics).await;
    let answer = |()| StatusCode::NO_CONTENT.into_response();
    route(&ctx, &t, here, ("/unsubscribe/bulk", raw), answer).await
}

/// The client's subscriptions, wherever it is.
#[utoipa::path(get, path = "/api/v5/clients/{clientid}/subscriptions", tag = "clients",
    params(("clientid" = String, Path, description = "client id")),
    responses((status = 200, description = "[{clientid, node, topic, qos, nl, rap, rh}]", body = Object),
              Denied, (status = 404, description = "unknown client", body = ErrorBody),
              (status = 503, description = "not found and a node did not answer", body = ErrorBody)))]
async fn subscriptions(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(t): Path<Target>,
) -> Result<Response, ApiError> {
    list_subs(ctx, headers, t).await
}

/// Subscribes the client, wherever it is, to one filter.
#[utoipa::path(post, path = "/api/v5/clients/{clientid}/subscribe", tag = "clients",
    params(("clientid" = String, Path, description = "client id")), request_body = SubBody,
    responses((status = 200, description = "the subscription", body = Object), Denied,
              (status = 400, description = "refused (the filter named)", body = ErrorBody),
              (status = 404, description = "unknown client", body = ErrorBody),
              (status = 415, description = "not JSON", body = ErrorBody),
              (status = 503, description = "not committed, or a node did not answer", body = ErrorBody)))]
async fn subscribe_one(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(t): Path<Target>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    sub_one(ctx, headers, t, raw).await
}

/// Subscribes the client, wherever it is, to up to [`MAX_BULK`] filters.
#[utoipa::path(post, path = "/api/v5/clients/{clientid}/subscribe/bulk", tag = "clients",
    params(("clientid" = String, Path, description = "client id")), request_body = Vec<SubBody>,
    responses((status = 200, description = "the subscriptions", body = Object), Denied,
              (status = 400, description = "refused (the filter named)", body = ErrorBody),
              (status = 404, description = "unknown client", body = ErrorBody),
              (status = 415, description = "not JSON", body = ErrorBody),
              (status = 503, description = "not committed, or a node did not answer", body = ErrorBody)))]
async fn subscribe_bulk(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(t): Path<Target>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    sub_bulk(ctx, headers, t, raw).await
}

/// Unsubscribes the client, wherever it is, from one filter: 204.
#[utoipa::path(post, path = "/api/v5/clients/{clientid}/unsubscribe", tag = "clients",
    params(("clientid" = String, Path, description = "client id")), request_body = UnsubBody,
    responses((status = 204, description = "done (whether or not it had the filter)"), Denied,
              (status = 400, description = "bad body", body = ErrorBody),
              (status = 404, description = "unknown client", body = ErrorBody),
              (status = 415, description = "not JSON", body = ErrorBody),
              (status = 503, description = "not committed, or a node did not answer", body = ErrorBody)))]
async fn unsubscribe_one(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(t): Path<Target>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    unsub_one(ctx, headers, t, raw).await
}

/// Unsubscribes the client, wherever it is, from up to [`MAX_BULK`] filters: 204.
#[utoipa::path(post, path = "/api/v5/clients/{clientid}/unsubscribe/bulk", tag = "clients",
    params(("clientid" = String, Path, description = "client id")), request_body = Vec<UnsubBody>,
    responses((status = 204, description = "done"), Denied,
              (status = 400, description = "bad body", body = ErrorBody),
              (status = 404, description = "unknown client", body = ErrorBody),
              (status = 415, description = "not JSON", body = ErrorBody),
              (status = 503, description = "not committed, or a node did not answer", body = ErrorBody)))]
async fn unsubscribe_bulk(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(t): Path<Target>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    unsub_bulk(ctx, headers, t, raw).await
}
