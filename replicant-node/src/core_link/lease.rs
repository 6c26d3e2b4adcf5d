//! The lease task: renews `Lease{node, incarnation, ttl}` every third of the ttl, so the
//! cores keep this node's routes and registry rows while it lives (invariant 6: they purge
//! them once the lease lapses).
//!
//! It sends to the followed core (a follower core forwards to the leader); when a core
//! answers `NotLeader` with the leader's address it tries the leader once. Failures are
//! logged and counted, never fatal: two more renewals fit in one ttl. It never changes the
//! followed core and never touches the replica.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use meshmq_proto::core::{LeaseRequest, Request, Response, lease_response, request, response};
use meshmq_shared::metrics as m;
use meshmq_shared::quic::frame;
use tracing::{debug, warn};

use super::Shared;

/// What one renewal attempt gave.
enum Renewal {
    /// The core accepted the lease.
    Ok,
    /// The core is not the leader and could not forward; the leader's address if known.
    NotLeader(Option<String>),
}

/// Renews the lease until the link stops.
pub async fn run(shared: Arc<Shared>) {
    let period = (shared.lease_ttl / 3).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match renew(&shared).await {
            Ok(()) => {
                shared.no_leader.store(false, Ordering::Relaxed);
                shared.leases_ok.fetch_add(1, Ordering::Relaxed);
                debug!("lease renewed");
            }
            Err((reason, detail)) => {
                if reason == "not_leader" {
                    shared.no_leader.store(true, Ordering::Relaxed);
                }
                shared.lease_failures.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::REPLICA_LEASE_FAILURES_TOTAL, "reason" => reason).increment(1);
                warn!(reason, detail = %detail, "lease renewal failed");
            }
        }
    }
}

/// One renewal: the followed core, then the leader it names (once).
async fn renew(shared: &Shared) -> Result<(), (&'static str, String)> {
    let Some((addr, conn)) = shared.current_conn() else {
        return Err(("no_core", "no core followed".into()));
    };
    let leader = match send(shared, &conn).await {
        Ok(Renewal::Ok) => return Ok(()),
        Ok(Renewal::NotLeader(Some(leader))) => leader,
        Ok(Renewal::NotLeader(None)) => {
            return Err(("not_leader", format!("{addr}: not leader, leader unknown")));
        }
        Err(e) => return Err(("request", format!("{addr}: {e}"))),
    };
    let (_, conn) = shared.conn_to(&leader).await.map_err(|e| ("request", e))?;
    match send(shared, &conn).await {
        Ok(Renewal::Ok) => Ok(()),
        Ok(Renewal::NotLeader(_)) => Err(("not_leader", format!("{leader}: not leader"))),
        Err(e) => Err(("request", format!("{leader}: {e}"))),
    }
}

/// Sends the lease on `conn` and reads the answer.
async fn send(shared: &Shared, conn: &quinn::Connection) -> Result<Renewal, String> {
    let ttl_ms = u32::try_from(shared.lease_ttl.as_millis()).unwrap_or(u32::MAX);
    let req = Request {
        kind: Some(request::Kind::Lease(LeaseRequest {
            node: shared.node.clone(),
            incarnation: shared.incarnation,
            ttl_ms,
        })),
        wire: shared.dialer.wire.proto(),
    };
    let resp: Response = frame::request(conn, &req, frame::MAX_FRAME, shared.request_timeout)
        .await
        .map_err(|e| e.to_string())?;
    let said = match &resp.kind {
        Some(response::Kind::Error(e)) => Some(e.message.as_str()),
        _ => None,
    };
    let core = conn.remote_address().to_string();
    shared.dialer.wire.check(resp.wire.as_ref(), &core, said)?;
    match resp.kind {
        Some(response::Kind::Lease(l)) => match l.result {
            Some(lease_response::Result::Ok(_)) => Ok(Renewal::Ok),
            Some(lease_response::Result::NotLeader(n)) => Ok(Renewal::NotLeader(
                (!n.leader_addr.is_empty()).then_some(n.leader_addr),
            )),
            None => Err("lease response without a result".into()),
        },
        Some(response::Kind::Error(e)) => Err(e.message),
        _ => Err("unexpected response to a lease".into()),
    }
}
