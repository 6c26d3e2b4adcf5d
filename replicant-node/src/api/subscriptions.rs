//! `GET /api/v5/subscriptions`: every subscription of every client, cluster-wide, as EMQX
//! lists them (`{clientid, node, topic, qos, nl, rap, rh}`, a shared subscription's topic
//! with its `$share/{group}/` prefix), sorted by client id then topic, paged exactly like
//! the clients list (counts first, then only the nodes holding the page: see
//! `nodes::page`). Filters: `clientid` (exact), `qos`, `topic` (exact filter), `share_group`,
//! `match_topic` (subscriptions whose filter the given filter matches, as EMQX), `node`.
//!
//! Node-local twin: `GET /api/v5/nodes/{node}/subscriptions?offset&limit&<filters>`
//! (`{"data", "meta": {"count"}}`; `limit=0`: the count only); another node's name: 404.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Json, Response};
use meshmq_shared::topic::{self, SubscriptionFilter};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::client_actions::sub_json;
use super::clients::{Pairs, own_node};
use super::nodes::{self, encode};
use super::{MAX_FILTER_LEN, MAX_LIMIT, MAX_PAGE, Paging, bad, number};
use crate::ctx::Ctx;
use crate::http::api::{ApiError, Denied, ErrorBody, authorize, unavailable};
use crate::session::SubOpts;
use crate::sessions::Leaving;

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(node_list))
        .with_state(ctx)
}

/// The filters of a subscriptions query (all must hold).
#[derive(Debug, Default)]
struct SubFilter {
    clientid: Option<String>,
    qos: Option<u8>,
    topic: Option<String>,
    share_group: Option<String>,
    match_topic: Option<String>,
    node: Option<String>,
}

impl SubFilter {
    /// Reads one pair; false when `k` is not a filter.
    fn take(&mut self, k: &str, v: &str) -> Result<bool, ApiError> {
        if v.len() > MAX_FILTER_LEN {
            return Err(bad(
                "subscriptions",
                format!("{k} is longer than {MAX_FILTER_LEN} bytes"),
            ));
        }
        match k {
            "clientid" => self.clientid = Some(v.to_owned()),
            "qos" => self.qos = Some(number("subscriptions", k, Some(v), 0, 0, 2)? as u8),
            "topic" => self.topic = Some(v.to_owned()),
            "share_group" => self.share_group = Some(v.to_owned()),
            "match_topic" => {
                if topic::validate_topic_filter(v).is_err() {
                    return Err(bad(
                        "subscriptions",
                        "match_topic is not a valid topic filter",
                    ));
                }
                self.match_topic = Some(v.to_owned());
            }
            "node" => self.node = Some(v.to_owned()),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn matches(&self, filter: &str, o: &SubOpts) -> bool {
        let (group, inner) = match topic::parse_subscription(filter) {
            Ok(SubscriptionFilter::Shared { group, filter }) => (Some(group), filter),
            Ok(SubscriptionFilter::Plain(f)) => (None, f),
            Err(_) => return false,
        };
        self.qos.is_none_or(|q| q == o.qos as u8)
            && self.topic.as_deref().is_none_or(|t| t == filter)
            && self.share_group.as_deref().is_none_or(|g| group == Some(g))
            && self
                .match_topic
                .as_deref()
                .is_none_or(|m| topic::matches(m, inner))
    }
}

/// Reads the query; the filters and the query string that carries them to other nodes.
fn parse(
    pairs: Vec<(String, String)>,
    mut extra: impl FnMut(&str, &str) -> Result<bool, ApiError>,
) -> Result<(SubFilter, String), ApiError> {
    let mut f = SubFilter::default();
    let mut forward = String::new();
    for (k, v) in pairs {
        if extra(&k, &v)? {
            continue;
        }
        if !f.take(&k, &v)? {
            let k: String = k.chars().take(64).collect();
            return Err(bad(
                "subscriptions",
                format!("unknown query parameter {k:?}"),
            ));
        }
        if k != "node" {
            forward.push_str(&format!("{k}={}&", encode(&v)));
        }
    }
    Ok((f, forward))
}

/// This node's matching subscriptions sorted by (client id, filter): the count, and the
/// items `offset..offset + limit`.
fn local_page(ctx: &Ctx, f: &SubFilter, offset: usize, limit: usize) -> (usize, Vec<Value>) {
    let slots = ctx
        .local
        .sessions
        .select(|id| f.clientid.as_deref().is_none_or(|c| c == id));
    let mut rows: Vec<(Arc<str>, String, SubOpts)> = Vec::new();
    for slot in slots {
        let inner = slot.inner.lock();
        if inner.ended || inner.leaving != Leaving::No {
            continue;
        }
        for (filter, o) in &inner.session.subscriptions {
            if f.matches(filter, o) {
                rows.push((slot.client_id.clone(), filter.clone(), *o));
            }
        }
    }
    rows.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let data = rows
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(c, t, o)| sub_json(c, ctx.node(), t, o))
        .collect();
    (rows.len(), data)
}

/// Every subscription of every replicant, paged.
#[utoipa::path(get, path = "/api/v5/subscriptions", tag = "subscriptions",
    params(("page" = Option<u32>, Query, description = "page, from 1"),
           ("limit" = Option<u32>, Query, description = "1..=10000"),
           ("clientid" = Option<String>, Query, description = "exact client id"),
           ("qos" = Option<u8>, Query, description = "0, 1 or 2"),
           ("topic" = Option<String>, Query, description = "exact filter"),
           ("share_group" = Option<String>, Query, description = "shared group"),
           ("match_topic" = Option<String>, Query, description = "filter the subscriptions' filters must match"),
           ("node" = Option<String>, Query, description = "only this node")),
    responses((status = 200, description = "a page of subscriptions (`meta.failed_nodes` names the nodes that did not answer)", body = Object),
              Denied, (status = 400, description = "bad query", body = ErrorBody),
              (status = 503, description = "`node` given and that node did not answer", body = ErrorBody)))]
async fn list(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    query: Pairs,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let Ok(Query(pairs)) = query else {
        return Err(bad("subscriptions", "invalid query string"));
    };
    let (mut page, mut limit) = (None, None);
    let (f, fq) = parse(pairs, |k, v| {
        match k {
            "page" => page = Some(v.to_owned()),
            "limit" => limit = Some(v.to_owned()),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let paging = Paging::parse("subscriptions", page.as_deref(), limit.as_deref())?;
    let mut nodes = nodes::replicants(&ctx);
    if let Some(n) = &f.node {
        nodes.retain(|x| x == n);
    }
    let local = |offset, limit| local_page(&ctx, &f, offset, limit);
    let (data, count, failed) =
        nodes::page(&ctx, nodes, "subscriptions", &fq, &local, paging).await;
    if f.node.is_some() && !failed.is_empty() {
        // A request for one node that did not answer.
        return Err(unavailable(format!(
            "node {} did not answer",
            failed.join(", ")
        )));
    }
    let mut v = paging.answer(data, count);
    v["meta"]["failed_nodes"] = json!(failed);
    Ok(Json(v).into_response())
}

/// This node's subscriptions: `offset` (default 0), `limit` (0..=10 000; 0: count only).
#[utoipa::path(get, path = "/api/v5/nodes/{node}/subscriptions", tag = "subscriptions",
    params(("node" = String, Path, description = "this node's name"),
           ("offset" = Option<u32>, Query, description = "matches to skip"),
           ("limit" = Option<u32>, Query, description = "0..=10000 (0: count only)")),
    responses((status = 200, description = "{data, meta: {count}}", body = Object), Denied,
              (status = 400, description = "bad query", body = ErrorBody),
              (status = 404, description = "another node's name", body = ErrorBody)))]
async fn node_list(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(node): Path<String>,
    query: Pairs,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    own_node(&ctx, &node)?;
    let Ok(Query(pairs)) = query else {
        return Err(bad("subscriptions", "invalid query string"));
    };
    let (mut offset, mut limit) = (0, super::DEFAULT_LIMIT);
    let (f, _) = parse(pairs, |k, v| {
        match k {
            "offset" => offset = number("subscriptions", k, Some(v), 0, 0, MAX_PAGE * MAX_LIMIT)?,
            "limit" => limit = number("subscriptions", k, Some(v), 0, 0, MAX_LIMIT)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let (count, data) = local_page(&ctx, &f, offset, limit);
    Ok(Json(json!({ "data": data, "meta": { "count": count } })).into_response())
}
