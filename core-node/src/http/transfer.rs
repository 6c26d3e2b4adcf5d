//! `POST /api/v5/cluster/leader/transfer`: hands the leadership of the core group to another
//! voter (see `crate::node::transfer` for how). Behind the cluster API's credential check,
//! like every other `/api/v5/cluster` write.
//!
//! Body (optional, JSON): `{"to": <core id>}`; without it the most up-to-date other voter is
//! chosen. Answers: 200 `{"leader": id}` once another core leads; 400 `BAD_REQUEST` (body
//! not understood, the id is this core, not a member or not a voter); 409 `NOT_LEADER` (with
//! `leader`, the id of the leader this core knows, or null) or `TRANSFER_IN_PROGRESS`; 503
//! `SERVICE_UNAVAILABLE` when no other core led within [`TRANSFER_TIMEOUT`]. It only
//! formats: the transfer is `CoreNode::transfer_leader`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::node::CoreNode;
use crate::node::transfer::TransferError;
use crate::raft::types::NodeId;

/// How long the transfer may take before the answer is 503.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

/// Body of `POST /api/v5/cluster/leader/transfer`.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    /// The core to hand the leadership to (default: the most up-to-date other voter).
    pub to: Option<NodeId>,
}

/// Hands the leadership over.
#[utoipa::path(post, path = "/api/v5/cluster/leader/transfer", tag = "cluster",
    request_body(content = Option<TransferBody>, description = "Optional: the target core"),
    responses((status = 200, description = "Another core leads: `{\"leader\": id}`", body = Object),
              (status = 400, description = "Bad body, or the target is not another voter", body = Object),
              (status = 401, description = "No or bad credential", body = Object),
              (status = 409, description = "This core is not the leader (`NOT_LEADER`, with `leader`), or a transfer runs", body = Object),
              (status = 503, description = "No other core led in time", body = Object)))]
pub async fn transfer(State(core): State<Arc<CoreNode>>, body: Bytes) -> Response {
    let to = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<TransferBody>(&body) {
            Ok(TransferBody { to: Some(0) }) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    "to: a core id is >= 1",
                );
            }
            Ok(b) => b.to,
            Err(e) => {
                let message = format!("the body must be {{\"to\": <core id>}} or empty: {e}");
                return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message);
            }
        }
    };
    match core.transfer_leader(to, TRANSFER_TIMEOUT).await {
        Ok(leader) => (StatusCode::OK, Json(json!({ "leader": leader }))).into_response(),
        Err(TransferError::NotLeader { leader }) => {
            let message = match leader {
                Some(id) => format!("this core is not the leader; core {id} is"),
                None => "this core is not the leader; no leader is known".to_owned(),
            };
            let body = json!({"code": "NOT_LEADER", "message": message, "leader": leader});
            (StatusCode::CONFLICT, Json(body)).into_response()
        }
        Err(e @ TransferError::BadTarget(_)) => {
            error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &e.to_string())
        }
        Err(e @ TransferError::Busy) => {
            error(StatusCode::CONFLICT, "TRANSFER_IN_PROGRESS", &e.to_string())
        }
        Err(e @ TransferError::Timeout { .. }) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            &e.to_string(),
        ),
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}
