//! Registry claims whose outcome is unknown: the CONNECT was refused (0x88 / code 3), but
//! the claim may still have committed (the reply was lost, the core died after taking it,
//! or it committed and the local replica had not applied it in time). Such a claim would
//! leave a row saying the client is connected here, which nothing else clears while this
//! node lives: the next CONNECT of that client elsewhere would try to take over a session
//! that does not exist.
//!
//! One task watches the replica for them, for [`WATCH`] each: a row that is exactly ours
//! (this node, this incarnation, our claim's timestamp, still connected) is closed again,
//! as a disconnect keeps a persistent session (its expiry clock starts) and a remove ends a
//! clean one. Bounded: at most [`MAX_PENDING`] claims are watched (the oldest is dropped
//! and counted), and the replica is read once per [`TICK`], not per claim.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use meshmq_proto::tables::{RegistryDisconnect, op};
use meshmq_shared::metrics as m;
use parking_lot::Mutex;
use tracing::info;

use crate::cluster;
use crate::ctx::Ctx;

/// How long a claim is watched after its outcome became unknown.
pub const WATCH: Duration = Duration::from_secs(60);
/// Most claims watched at once.
pub const MAX_PENDING: usize = 100_000;
/// How often the replica is looked at.
const TICK: Duration = Duration::from_millis(500);

/// A claim whose outcome is unknown.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// The claim's `now_ms` (the row's `connected_at_ms` if it committed).
    at_ms: u64,
    /// The session expiry it asked for (0: the row is removed, else disconnected).
    expiry: u32,
    /// Watched until then.
    until: Instant,
}

/// The claims being watched, by client id.
#[derive(Debug, Default)]
pub struct UnknownClaims {
    pending: Mutex<HashMap<String, Pending>>,
}

impl UnknownClaims {
    /// Watches the claim of `client_id` made at `at_ms` with session expiry `expiry`.
    pub fn watch(&self, client_id: &str, at_ms: u64, expiry: u32) {
        let mut pending = self.pending.lock();
        if pending.len() >= MAX_PENDING && !pending.contains_key(client_id) {
            let oldest = pending
                .iter()
                .min_by_key(|(_, p)| p.until)
                .map(|(c, _)| c.clone());
            if let Some(c) = oldest {
                pending.remove(&c);
                metrics::counter!(m::UNKNOWN_CLAIMS_TOTAL, "result" => "dropped").increment(1);
            }
        }
        let until = Instant::now() + WATCH;
        pending.insert(
            client_id.to_owned(),
            Pending {
                at_ms,
                expiry,
                until,
            },
        );
    }

    /// Claims being watched now.
    pub fn len(&self) -> usize {
        self.pending.lock().len()
    }

    /// True when no claim is watched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The watching task; runs until shutdown.
pub async fn run(ctx: Arc<Ctx>) {
    loop {
        tokio::select! {
            _ = ctx.admission.shutdown.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        if ctx.tables.unknown_claims.is_empty() {
            continue;
        }
        let ops = sweep(&ctx);
        if !ops.is_empty() {
            let n = ops.len() as u64;
            // Generation-guarded: if the client claimed again meanwhile, these are rejected.
            cluster::transact(&ctx.tables, ops).await;
            metrics::counter!(m::UNKNOWN_CLAIMS_TOTAL, "result" => "closed").increment(n);
        }
    }
}

/// Takes the claims that turned out committed (and builds the ops closing them) or whose
/// watch ended.
fn sweep(ctx: &Ctx) -> Vec<meshmq_proto::tables::Op> {
    let now = Instant::now();
    let me = ctx.node();
    let mut ops = Vec::new();
    let mut pending = ctx.tables.unknown_claims.pending.lock();
    ctx.tables.core.read(|t| {
        pending.retain(|client_id, p| {
            let ours = t.registry(client_id).filter(|r| {
                r.node == me
                    && r.incarnation == ctx.tables.incarnation
                    && r.connected
                    && r.connected_at_ms == p.at_ms
            });
            if let Some(row) = ours {
                info!(%client_id, generation = row.generation, "a refused CONNECT's claim committed after all; closing its row");
                ops.push(if p.expiry == 0 {
                    cluster::registry_remove(client_id, row.generation)
                } else {
                    cluster::op(op::Kind::RegistryDisconnect(RegistryDisconnect {
                        client_id: client_id.clone(),
                        generation: row.generation,
                        session_expiry_secs: p.expiry,
                        now_ms: cluster::now_ms(),
                    }))
                });
                return false;
            }
            if p.until <= now {
                metrics::counter!(m::UNKNOWN_CLAIMS_TOTAL, "result" => "not_committed")
                    .increment(1);
                return false;
            }
            true
        });
    });
    ops
}
