//! The trace REST API, with EMQX's paths and JSON:
//!
//! - `GET /api/v5/trace`: every trace, `[{"name", "type", "clientid"|"topic"|"ip_address",
//!   "status" (waiting, running, stopped), "start_at", "end_at" (RFC 3339), "payload_encode",
//!   "formatter", "log_size": {node: bytes}}]`.
//! - `POST /api/v5/trace` `{"name", "type", "clientid"|"topic"|"ip_address", "start_at"?,
//!   "end_at"? (unix seconds or RFC 3339), "payload_encode"? (text, hex, hidden: the
//!   default)}`: 200 with the trace; 400 on bad input or when `trace.max_traces` are held;
//!   409 `ALREADY_EXISTS` (the name) or `DUPLICATE_CONDITION` (a waiting or running trace
//!   matches the same thing).
//! - `PUT /api/v5/trace/{name}/stop`: 200 with the stopped trace; 404.
//! - `DELETE /api/v5/trace/{name}`: 204 (its files deleted); 404. `DELETE /api/v5/trace`:
//!   every trace, 204.
//! - `GET /api/v5/trace/{name}/download[?node=N]`: the trace's file of each node, one after
//!   the other as text, each after a line `# meshmq trace <name> node <node> (<n> bytes)`
//!   (or a line saying why a node has none); 404 when no node has the trace; 503 when the
//!   one node asked for does not answer.
//! - `GET /api/v5/trace/{name}/log?node=N&position=P&bytes=B`: `{"items": text, "meta":
//!   {"position": next, "bytes": n}}`, up to `B` bytes (default 1 MiB, at most 16 MiB) of
//!   the node's file from `P` (EMQX's streaming view).
//!
//! Every route needs the API key when one is set ([`authorize`] first); bodies are bounded.
//! A `{name}` in a path is checked against the trace name rules (400 otherwise) before it is
//! used in a file path or in the path of a call to another node.
//! Definitions are cluster rows ([`super::defs`]: the `settings` table), so a change made
//! through any node reaches every node. Asked by an operator, the list carries every node's
//! file size and a download without `node` gathers every node's file, with `node` it is
//! that node's (forwarded); asked by another node (the fan-out), a route answers for this
//! node only ([`super::cluster`]). Writes go through the cores (503 when they cannot commit).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::spec::{CreateRequest, Status, TraceSpec};
use super::sync::{now_s, sync_once};
use super::{Traces, cluster};
use crate::api::nodes::encode;
use crate::ctx::Ctx;
use crate::http::api::{
    ApiError, authorize, bad_request, error, not_found, parse_json, require_json, unavailable,
};
use crate::settings::SettingsError;

/// Largest request body.
const MAX_BODY: usize = 256 * 1024;
/// Default and largest `bytes` of the log view.
const LOG_BYTES: (u64, u64) = (1 << 20, 16 << 20);

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> utoipa_axum::router::OpenApiRouter {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(list, create, clear))
        .routes(routes!(remove))
        .routes(routes!(stop))
        .routes(routes!(download))
        .routes(routes!(log_view))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
}

/// This node's file size of trace `name`, as `{node: bytes}`.
async fn log_size(t: &Traces, name: &str) -> Value {
    let size = std::fs::metadata(t.file(name)).map_or(0, |m| m.len());
    json!({ t.node.as_ref(): size })
}

async fn view(t: &Traces, spec: &TraceSpec, now: u64) -> Value {
    spec.to_json(now, log_size(t, &spec.name).await)
}

/// The traces.
#[utoipa::path(get, path = "/api/v5/trace", tag = "trace",
    responses((status = 200, description = "every trace"), (status = 401)))]
async fn list(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let now = now_s();
    let mut sizes = if ctx.cluster.fanout.is_internal(&headers) {
        Default::default()
    } else {
        cluster::log_sizes(&ctx).await
    };
    let mut out = Vec::new();
    for spec in ctx.trace.defs.list() {
        let mut v = view(&ctx.trace, &spec, now).await;
        if let (Some(mine), Some(theirs)) =
            (v["log_size"].as_object_mut(), sizes.remove(&spec.name))
        {
            mine.extend(theirs);
        }
        out.push(v);
    }
    Ok(Json(Value::Array(out)).into_response())
}

/// Creates a trace.
#[utoipa::path(post, path = "/api/v5/trace", tag = "trace", request_body = CreateRequest,
    responses((status = 200, description = "the trace"), (status = 400), (status = 401),
        (status = 409), (status = 415)))]
async fn create(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    require_json(&headers)?;
    let req: CreateRequest = parse_json(&body)?;
    let now = now_s();
    let spec = TraceSpec::from_request(req, now, crate::cluster::now_ms()).map_err(bad_request)?;
    let t = &ctx.trace;
    let all = t.defs.list();
    if all.iter().any(|s| s.name == spec.name) {
        let msg = format!("a trace named {} exists", spec.name);
        return Err(error(StatusCode::CONFLICT, "ALREADY_EXISTS", msg));
    }
    if all.len() >= t.config.max_traces {
        return Err(bad_request(format!(
            "at most {} traces are kept (trace.max_traces): delete one first",
            t.config.max_traces
        )));
    }
    if let Some(dup) = all
        .iter()
        .find(|s| s.filter == spec.filter && s.status(now) != Status::Stopped)
    {
        let msg = format!(
            "trace {} already matches the same {}",
            dup.name,
            spec.filter.type_label()
        );
        return Err(error(StatusCode::CONFLICT, "DUPLICATE_CONDITION", msg));
    }
    // A file left by an older trace of the same name is not part of this one.
    let _ = std::fs::remove_file(t.file(&spec.name));
    t.defs
        .put(&ctx, &spec, true)
        .await
        .map_err(|e| write_error(e, &spec.name))?;
    sync_once(t, now);
    Ok(Json(view(t, &spec, now).await).into_response())
}

/// The answer to a definition write that failed.
fn write_error(e: SettingsError, name: &str) -> ApiError {
    match e {
        SettingsError::Conflict { .. } => error(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("a trace named {name} exists"),
        ),
        SettingsError::Invalid(m) | SettingsError::Full(m) => bad_request(m),
        SettingsError::Unavailable(e) => unavailable(e.to_string()),
    }
}

/// Stops a trace (its files are kept until deleted or the retention passes).
#[utoipa::path(put, path = "/api/v5/trace/{name}/stop", tag = "trace",
    params(("name" = String, Path)), responses((status = 200), (status = 401), (status = 404)))]
async fn stop(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    checked(&name)?;
    let t = &ctx.trace;
    let mut spec = t.defs.get(&name).ok_or_else(|| no_trace(&name))?;
    let now = now_s();
    if spec.stopped_at.is_none() {
        spec.stopped_at = Some(now);
        t.defs
            .put(&ctx, &spec, false)
            .await
            .map_err(|e| write_error(e, &name))?;
        sync_once(t, now);
    }
    let v = view(t, &spec, now).await;
    Ok(Json(v).into_response())
}

/// 400 unless `name` follows the rules a trace's name was created with
/// ([`super::spec::valid_name`]): checked before the name goes into a file path or the path
/// of a call to another node (`..`, `/` and `%` never do).
fn checked(name: &str) -> Result<(), ApiError> {
    if super::spec::valid_name(name) {
        Ok(())
    } else {
        Err(bad_request(
            "invalid trace name: letters, digits, `-` and `_` only",
        ))
    }
}

fn no_trace(name: &str) -> ApiError {
    not_found(format!(
        "no trace named {}",
        name.chars().take(300).collect::<String>()
    ))
}

/// Deletes one trace and its files.
#[utoipa::path(delete, path = "/api/v5/trace/{name}", tag = "trace",
    params(("name" = String, Path)), responses((status = 204), (status = 401), (status = 404)))]
async fn remove(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    checked(&name)?;
    let t = &ctx.trace;
    let had = t
        .defs
        .delete(&ctx, &name)
        .await
        .map_err(|e| write_error(e, &name))?;
    if !had {
        return Err(no_trace(&name));
    }
    sync_once(t, now_s());
    let _ = std::fs::remove_file(t.file(&name));
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Deletes every trace and their files.
#[utoipa::path(delete, path = "/api/v5/trace", tag = "trace",
    responses((status = 204), (status = 401)))]
async fn clear(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let t = &ctx.trace;
    for spec in t.defs.list() {
        t.defs
            .delete(&ctx, &spec.name)
            .await
            .map_err(|e| write_error(e, &spec.name))?;
        let _ = std::fs::remove_file(t.file(&spec.name));
    }
    sync_once(t, now_s());
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `?node=` of the download and the log view, with the log view's window.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct NodeQuery {
    /// The node (default: every node for the download, this node for the log view).
    node: Option<String>,
    /// Log view: the byte offset to read from.
    position: Option<u64>,
    /// Log view: how many bytes to read.
    bytes: Option<u64>,
}

/// Where a node-local read is served.
enum Target {
    /// This node.
    Here,
    /// Every node (a download without `node`, asked of this node by an operator).
    All,
    /// Another node, for an operator of this one: forwarded.
    There(String),
}

/// The node asked for: this one, every one, or another (forwarded, except for a call that
/// another node made: 404 then, so that calls never bounce).
fn target(ctx: &Ctx, headers: &HeaderMap, q: &NodeQuery, all: bool) -> Result<Target, ApiError> {
    let internal = ctx.cluster.fanout.is_internal(headers);
    match q.node.as_deref() {
        None if all && !internal => Ok(Target::All),
        None => Ok(Target::Here),
        Some(n) if n == ctx.node() => Ok(Target::Here),
        Some(_) if internal => Err(not_found("this node serves only its own file")),
        Some(n) => Ok(Target::There(n.to_owned())),
    }
}

/// Another node's answer to `path`, as it gave it (503 when it gave none).
async fn forwarded(ctx: &Arc<Ctx>, node: &str, path: &str) -> Result<Response, ApiError> {
    match cluster::forward(ctx, node, path).await {
        Some(r) => {
            let ct = if r.status.is_success() && path.contains("/download") {
                "text/plain; charset=utf-8"
            } else {
                "application/json"
            };
            Ok((r.status, [(header::CONTENT_TYPE, ct)], r.body).into_response())
        }
        None => Err(unavailable(format!(
            "node {} did not answer",
            node.chars().take(300).collect::<String>()
        ))),
    }
}

/// The trace's files, per node.
#[utoipa::path(get, path = "/api/v5/trace/{name}/download", tag = "trace",
    params(("name" = String, Path), NodeQuery),
    responses((status = 200, content_type = "text/plain"), (status = 401), (status = 404)))]
async fn download(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<NodeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    checked(&name)?;
    let Ok(Query(q)) = query else {
        return Err(bad_request("invalid query string"));
    };
    let t = &ctx.trace;
    let body = match target(&ctx, &headers, &q, true)? {
        Target::Here => {
            t.defs.get(&name).ok_or_else(|| no_trace(&name))?;
            node_section(t, &name, &t.node).await
        }
        Target::All => cluster::download_all(&ctx, &name)
            .await
            .ok_or_else(|| no_trace(&name))?,
        Target::There(node) => {
            let path = format!("/api/v5/trace/{name}/download?node={}", encode(&node));
            return forwarded(&ctx, &node, &path).await;
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"trace_{name}.log\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// This node's file of trace `name` after its header line.
pub async fn node_section(t: &Traces, name: &str, node: &str) -> Vec<u8> {
    let path = t.file(name);
    let file = tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut out =
        format!("# meshmq trace {name} node {node} ({} bytes)\n", file.len()).into_bytes();
    out.extend_from_slice(&file);
    out
}

/// A window of this node's file (EMQX's streaming log view).
#[utoipa::path(get, path = "/api/v5/trace/{name}/log", tag = "trace",
    params(("name" = String, Path), NodeQuery),
    responses((status = 200), (status = 400), (status = 401), (status = 404)))]
async fn log_view(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<NodeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    checked(&name)?;
    let Ok(Query(q)) = query else {
        return Err(bad_request("invalid query string"));
    };
    let t = &ctx.trace;
    if let Target::There(node) = target(&ctx, &headers, &q, false)? {
        let (p, b) = (q.position.unwrap_or(0), q.bytes.unwrap_or(LOG_BYTES.0));
        let path = format!(
            "/api/v5/trace/{name}/log?node={}&position={p}&bytes={b}",
            encode(&node)
        );
        return forwarded(&ctx, &node, &path).await;
    }
    t.defs.get(&name).ok_or_else(|| no_trace(&name))?;
    let want = q.bytes.unwrap_or(LOG_BYTES.0);
    if want == 0 || want > LOG_BYTES.1 {
        return Err(bad_request(format!("bytes must be in 1..={}", LOG_BYTES.1)));
    }
    let position = q.position.unwrap_or(0);
    let path = t.file(&name);
    let buf = tokio::task::spawn_blocking(move || read_window(&path, position, want))
        .await
        .unwrap_or_default();
    let n = buf.len() as u64;
    let items = String::from_utf8_lossy(&buf).into_owned();
    let meta = json!({ "position": position + n, "bytes": n });
    Ok(Json(json!({ "items": items, "meta": meta })).into_response())
}

/// Up to `len` bytes of the file at `path` from `position` (none when it cannot be read).
fn read_window(path: &std::path::Path, position: u64, len: u64) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(std::io::SeekFrom::Start(position)).is_ok()
    {
        let _ = f.take(len).read_to_end(&mut buf);
    }
    buf
}
