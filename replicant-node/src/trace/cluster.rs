//! The trace API's reads across the cluster, through the fan-out (`crate::fanout`): a list
//! gathers each node's file sizes; a download gathers each node's file. (Definitions need
//! no fan-out: they are rows of the `settings` table, on every node.)
//!
//! A call from another node (`Fanout::is_internal`) is answered for this node only and
//! never fans out again; a node that does not answer is named in its section of the
//! download.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::ctx::Ctx;
use crate::fanout::{self, NodeReply};

/// The other replicants, this node left out.
fn others(ctx: &Ctx) -> Vec<String> {
    let me = ctx.node();
    fanout::replicants(ctx)
        .into_iter()
        .filter(|n| n != me)
        .collect()
}

/// Every other replicant's `GET /api/v5/trace`: per trace name, per node, its file size.
pub async fn log_sizes(ctx: &Arc<Ctx>) -> HashMap<String, Map<String, Value>> {
    let calls = others(ctx).into_iter().map(|node| async move {
        fanout::call_node(ctx, &node, Method::GET, "/api/v5/trace", Bytes::new())
            .await
            .ok()
            .and_then(|r| r.json())
    });
    let mut sizes: HashMap<String, Map<String, Value>> = HashMap::new();
    for list in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
    {
        for t in list.as_array().into_iter().flatten() {
            let (Some(name), Some(per_node)) = (t["name"].as_str(), t["log_size"].as_object())
            else {
                continue;
            };
            let entry = sizes.entry(name.to_owned()).or_default();
            entry.extend(per_node.clone());
        }
    }
    sizes
}

/// Every replicant's section of trace `name`'s download, in node-name order: each node's own
/// (`?node=` itself), or a line saying why there is none. `None` when no node has the trace.
pub async fn download_all(ctx: &Arc<Ctx>, name: &str) -> Option<Vec<u8>> {
    if !super::spec::valid_name(name) {
        return None;
    }
    let path = format!("/api/v5/trace/{name}/download?node={{node}}");
    let replies = fanout::call_all(ctx, Method::GET, &path, Bytes::new()).await;
    let mut out = Vec::new();
    let mut found = false;
    for (node, reply) in replies {
        match reply {
            Ok(NodeReply { status, body }) if status.is_success() => {
                found = true;
                out.extend_from_slice(&body);
            }
            Ok(NodeReply { status, .. }) if status == StatusCode::NOT_FOUND => {
                let line = format!("# meshmq trace {name} node {node}: no such trace there\n");
                out.extend_from_slice(line.as_bytes());
            }
            Ok(NodeReply { status, .. }) => {
                let line = format!("# meshmq trace {name} node {node}: failed ({status})\n");
                out.extend_from_slice(line.as_bytes());
            }
            Err(e) => {
                let line = format!("# meshmq trace {name} node {node}: no answer ({e})\n");
                out.extend_from_slice(line.as_bytes());
            }
        }
    }
    found.then_some(out)
}

/// `method path` on `node` for a caller of this node (a node-local route asked for another
/// node): its answer, or `None` when it gave none.
pub async fn forward(ctx: &Arc<Ctx>, node: &str, path: &str) -> Option<NodeReply> {
    fanout::call_node(ctx, node, Method::GET, path, Bytes::new())
        .await
        .ok()
}
