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

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use meshmq_shared::codec::QoS;
use serde::Deserialize;
use serde_json::{Value, json};

use super::clients::{client_not_found, own_node};
use super::nodes::{self, encode};
use super::{bad, counted, sub_replay};
use crate::connection::sub_apply::{self, FilterVerdict, SubscriptionQuota};
use crate::ctx::Ctx;
use crate::http::api::{ApiError, authorize, parse_json, require_json, unavailable};
use crate::session::SubOpts;
use crate::sessions::SessionSlot;

/// Most filters in one bulk request.
pub const MAX_BULK: usize = 1_000;
/// Largest request body.
pub const MAX_BODY: usize = 1024 * 1024;

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> Router {
    let mut r = Router::new();
    for prefix in [
        "/api/v5/clients/{clientid}",
        "/api/v5/nodes/{node}/clients/{clientid}",
    ] {
        r = r
            .route(&format!("{prefix}/subscriptions"), get(subscriptions))
            .route(&format!("{prefix}/subscribe"), post(subscribe_one))
            .route(&format!("{prefix}/subscribe/bulk"), post(subscribe_bulk))
            .route(&format!("{prefix}/unsubscribe"), post(unsubscribe_one))
            .route(
                &format!("{prefix}/unsubscribe/bulk"),
                post(unsubscribe_bulk),
            );
    }
    r.layer(DefaultBodyLimit::max(MAX_BODY)).with_state(ctx)
}

/// The path's parameters: the client, and the node for node-local routes.
#[derive(Debug, Deserialize)]
struct Target {
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

/// The client's subscriptions.
#[utoipa::path(get, path = "/api/v5/clients/{clientid}/subscriptions", tag = "clients",
    params(("clientid" = String, Path, description = "client id")),
    responses((status = 200, description = "[{clientid, node, topic, qos, nl, rap, rh}]"),
              (status = 404, description = "unknown client")))]
async fn subscriptions(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(t): Path<Target>,
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

/// Reads a JSON body of this API (415 / 400 counted).
fn body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, b: &[u8]) -> Result<T, ApiError> {
    require_json(headers).inspect_err(counted("clients"))?;
    parse_json(b).inspect_err(counted("clients"))
}

/// Subscribes the client to one filter.
#[utoipa::path(post, path = "/api/v5/clients/{clientid}/subscribe", tag = "clients",
    request_body = SubBody,
    responses((status = 200, description = "the subscription"), (status = 400, description = "refused"),
              (status = 404, description = "unknown client"), (status = 503, description = "not committed")))]
async fn subscribe_one(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(t): Path<Target>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    admit(&ctx, &headers, &t)?;
    let sub: SubBody = body(&headers, &raw)?;
    let here = subscribe_here(&ctx, &t.clientid, std::slice::from_ref(&sub)).await;
    let answer = |mut v: Vec<Value>| Json(v.pop().unwrap_or(Value::Null)).into_response();
    route(&ctx, &t, here, ("/subscribe", raw), answer).await
}

/// Subscribes the client to up to [`MAX_BULK`] filters.
#[utoipa::path(post, path = "/api/v5/clients/{clientid}/subscribe/bulk", tag = "clients",
    request_body = Vec<SubBody>,
    responses((status = 200, description = "the subscriptions"), (status = 400, description = "refused"),
              (status = 404, description = "unknown client"), (status = 503, description = "not committed")))]
async fn subscribe_bulk(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(t): Path<Target>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    admit(&ctx, &headers, &t)?;
    let subs: Vec<SubBody> = body(&headers, &raw)?;
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

/// Unsubscribes the client from one filter: 204.
#[utoipa::path(post, path = "/api/v5/clients/{clientid}/unsubscribe", tag = "clients",
    request_body = UnsubBody,
    responses((status = 204, description = "done"), (status = 404, description = "unknown client")))]
async fn unsubscribe_one(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(t): Path<Target>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    admit(&ctx, &headers, &t)?;
    let u: UnsubBody = body(&headers, &raw)?;
    let here = unsubscribe_here(&ctx, &t.clientid, vec![u.topic]).await;
    let answer = |()| StatusCode::NO_CONTENT.into_response();
    route(&ctx, &t, here, ("/unsubscribe", raw), answer).await
}

/// Unsubscribes the client from up to [`MAX_BULK`] filters: 204.
#[utoipa::path(post, path = "/api/v5/clients/{clientid}/unsubscribe/bulk", tag = "clients",
    request_body = Vec<UnsubBody>,
    responses((status = 204, description = "done"), (status = 404, description = "unknown client")))]
async fn unsubscribe_bulk(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(t): Path<Target>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    admit(&ctx, &headers, &t)?;
    let list: Vec<UnsubBody> = body(&headers, &raw)?;
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
