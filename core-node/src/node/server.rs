//! The core's QUIC endpoint: accepts connections from cores and replicants (mutual TLS,
//! ALPN `meshmq-core/1`) and serves each bidirectional stream as one request: a Raft RPC,
//! `Transact`, `Lease`, `Status`, or `Follow` (whose answer is a stream of frames).
//!
//! One task per connection and one per stream; a bad request is answered with
//! `Response::Error` and counted, never a panic. It holds no state of its own. Every request
//! is checked for the sender's inter-node protocol version first ([`crate::wire`]) and every
//! answer carries this core's.

use std::sync::Arc;
use std::time::Duration;

use meshmq_proto::core::{
    FollowFrame, FollowHeartbeat, LeaseRequest, LeaseResponse, NotLeader, Request, Response,
    StatusResponse, TransactRequest, follow_frame, lease_response, request::Kind as Req,
    response::Kind as Resp,
};
use meshmq_proto::raft::Blank;
use meshmq_shared::metrics as m;
use meshmq_shared::quic::frame::{self, FrameError};
use tracing::debug;

use super::CoreNode;
use crate::api::{self, TransactError};
use crate::raft::rpc_server;

/// How long a reply waits for the peer to acknowledge it.
const ACK_WAIT: Duration = Duration::from_secs(2);
/// How long a peer has to send its request once it opened a stream.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until shutdown.
pub async fn accept_loop(core: Arc<CoreNode>) {
    loop {
        let incoming = tokio::select! {
            _ = core.shutdown.cancelled() => return,
            i = core.endpoint.accept() => i,
        };
        let Some(incoming) = incoming else { return };
        let task_core = Arc::clone(&core);
        core.tasks.spawn(async move {
            let core = task_core;
            match incoming.await {
                Ok(conn) => serve_connection(core, conn).await,
                Err(e) => {
                    metrics::counter!(m::CORE_REQUEST_ERRORS_TOTAL, "reason" => "handshake")
                        .increment(1);
                    debug!(error = %e, "core endpoint: handshake failed");
                }
            }
        });
    }
}

async fn serve_connection(core: Arc<CoreNode>, conn: quinn::Connection) {
    // The name the cluster CA certified for the caller, for refusal messages.
    let certified: Option<Arc<str>> = meshmq_shared::quic::endpoint::certified_name(&conn);
    loop {
        let stream = tokio::select! {
            _ = core.shutdown.cancelled() => {
                // Keep the connection open (untracked) until the endpoint closes it with
                // CLOSE_SHUTDOWN: dropping the last handle now would close it with code 0
                // and the peer could not tell "not processed" from "outcome unknown".
                tokio::spawn(async move { conn.closed().await });
                return;
            }
            s = conn.accept_bi() => s,
        };
        let Ok((send, recv)) = stream else { return };
        let task_core = Arc::clone(&core);
        let certified = certified.clone();
        core.tasks.spawn(async move {
            let core = task_core;
            if let Err(e) = serve_stream(&core, send, recv, certified.as_deref()).await {
                metrics::counter!(m::CORE_REQUEST_ERRORS_TOTAL, "reason" => e.label()).increment(1);
                debug!(error = %e, "core endpoint: stream failed");
            }
        });
    }
}

async fn serve_stream(
    core: &Arc<CoreNode>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    certified: Option<&str>,
) -> Result<(), FrameError> {
    let req = tokio::time::timeout(
        REQUEST_TIMEOUT,
        frame::read_msg::<Request>(&mut recv, frame::MAX_FRAME),
    )
    .await
    .map_err(|_| FrameError::Timeout)??;
    let Some(mut req) = req else {
        let resp = error_response(core, "empty request");
        return reply(&mut send, &resp).await;
    };
    let Some(kind) = req.kind.take() else {
        let resp = error_response(core, "empty request");
        return reply(&mut send, &resp).await;
    };
    if let Err(refused) = core.wire.check_request(&req, &kind, certified) {
        return refuse(core, &kind, &refused, &mut send).await;
    }
    let resp = match kind {
        Req::Follow(f) => {
            // The first frame carries this core's version (the follower checks it).
            let hello = FollowFrame {
                kind: Some(follow_frame::Kind::Heartbeat(FollowHeartbeat {
                    commit_index: core.sm.applied_index(),
                })),
                wire: core.wire.proto(),
            };
            frame::write_msg(&mut send, &hello).await?;
            let r = super::follow::serve(core, f, &mut send).await;
            let _ = send.finish();
            return r;
        }
        Req::Transact(t) => Resp::Transact(api::to_wire(transact(core, t).await)),
        Req::Lease(l) => Resp::Lease(lease(core, l).await),
        Req::Status(_) => Resp::Status(status(core)),
        Req::Elect(e) => Resp::Elect(core.elect_now(e.from_leader, certified).await),
        raft_rpc @ (Req::Vote(_) | Req::Append(_) | Req::Snapshot(_)) => {
            let mut resp = rpc_server::handle(&core.raft, &core.snapshot_receipt, raft_rpc).await;
            resp.wire = core.wire.proto();
            return reply(&mut send, &resp).await;
        }
    };
    let resp = Response {
        kind: Some(resp),
        wire: core.wire.proto(),
    };
    reply(&mut send, &resp).await
}

/// Answers a request of another protocol major: `Error` (a `refused` frame on a Follow
/// stream), naming both versions, with this core's version.
async fn refuse(
    core: &CoreNode,
    kind: &Req,
    refused: &str,
    send: &mut quinn::SendStream,
) -> Result<(), FrameError> {
    if matches!(kind, Req::Follow(_)) {
        let frame = FollowFrame {
            kind: Some(follow_frame::Kind::Refused(meshmq_proto::core::Error {
                message: refused.to_owned(),
            })),
            wire: core.wire.proto(),
        };
        frame::write_msg(send, &frame).await?;
        let _ = send.finish();
        let _ = tokio::time::timeout(ACK_WAIT, send.stopped()).await;
        return Ok(());
    }
    reply(send, &error_response(core, refused)).await
}

async fn reply(send: &mut quinn::SendStream, resp: &Response) -> Result<(), FrameError> {
    frame::write_msg(send, resp).await?;
    let _ = send.finish();
    // Wait (bounded) until the peer has the whole answer: a shutdown closes the connection
    // only after this, so an unanswered request on it was truly never processed.
    let _ = tokio::time::timeout(ACK_WAIT, send.stopped()).await;
    Ok(())
}

fn error_response(core: &CoreNode, message: &str) -> Response {
    Response {
        kind: Some(Resp::Error(meshmq_proto::core::Error {
            message: message.to_owned(),
        })),
        wire: core.wire.proto(),
    }
}

async fn transact(core: &CoreNode, t: TransactRequest) -> Result<api::Committed, TransactError> {
    let ops = t.batch.map(|b| b.ops).unwrap_or_default();
    let forwarded = t.forwarded;
    let result = if forwarded {
        core.transact_here(ops).await
    } else {
        core.transact(ops).await
    };
    let label = match &result {
        Ok(_) => "ok",
        Err(e) => e.label(),
    };
    metrics::counter!(m::CORE_TRANSACT_TOTAL, "result" => label, "forwarded" => if forwarded { "true" } else { "false" })
        .increment(1);
    result
}

async fn lease(core: &CoreNode, l: LeaseRequest) -> LeaseResponse {
    let result = if core.is_leader() {
        let ttl = Duration::from_millis(u64::from(l.ttl_ms.clamp(1_000, 300_000)));
        core.leases.renew(&l.node, l.incarnation, ttl);
        lease_response::Result::Ok(Blank {})
    } else {
        match core.leader() {
            // Pass it on once; the leader answers for itself.
            Some((id, addr)) if id != core.id => {
                let req = Request {
                    kind: Some(Req::Lease(l)),
                    wire: core.wire.proto(),
                };
                match core
                    .conns
                    .request::<_, Response>(&addr, &req, Duration::from_secs(2))
                    .await
                {
                    Ok(Response {
                        kind: Some(Resp::Lease(r)),
                        wire,
                    }) if core.wire.check_answer(wire.as_ref(), &addr).is_ok() => return r,
                    _ => lease_response::Result::NotLeader(NotLeader {
                        leader_id: Some(id),
                        leader_addr: addr,
                    }),
                }
            }
            _ => lease_response::Result::NotLeader(NotLeader::default()),
        }
    };
    LeaseResponse {
        result: Some(result),
    }
}

/// This core's view of the group.
pub fn status(core: &CoreNode) -> StatusResponse {
    let metrics = core.raft.metrics().borrow().clone();
    let leader = core.leader();
    StatusResponse {
        node_id: core.id,
        leader_id: metrics.current_leader,
        term: metrics.current_term,
        commit_index: metrics.last_applied.map_or(0, |l| l.index),
        applied_index: core.sm.applied_index(),
        followers: core.followers.load(std::sync::atomic::Ordering::Relaxed),
        leader_addr: leader.map(|(_, a)| a).unwrap_or_default(),
    }
}
