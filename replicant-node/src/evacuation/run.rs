//! The stages of an evacuation, run by the evacuating node itself: wait for the health
//! check, refuse and evict connections at a rate, wait for takeovers, migrate what is left
//! at a rate, then keep refusing. Every wait is bounded or ends with the stop token.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use meshmq_proto::tables::{self, NodeState};
use meshmq_shared::metrics as m;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Stage, migrate, now_ms, publish_progress};
use crate::ctx::Ctx;
use crate::sessions::{Control, Leaving, SessionSlot};

/// How often the stage loops look again (sessions still attaching, counts to report).
const POLL: Duration = Duration::from_millis(100);
/// How often the progress is written to the row while a stage runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Bounds of the fast finish before a graceful stop: evicting every connection, then
/// migrating every session.
const FINISH_EVICT_MAX: Duration = Duration::from_secs(3);
const FINISH_MIGRATE_MAX: Duration = Duration::from_secs(10);
/// Attempts of a rebalance donor to write itself back to RUNNING (1 s apart, then 2 s...).
const BACK_TO_RUNNING_ATTEMPTS: u32 = 8;

/// Runs the stages of `plan` until done (then holds) or `stop`.
pub(super) async fn run(ctx: Arc<Ctx>, plan: tables::Evacuation, stop: CancellationToken) {
    let ev = &ctx.admission.evacuation;
    let rebalance = plan.process == super::REBALANCE;
    let (conn_goal, sess_goal) = if rebalance {
        (plan.conn_goal, plan.sess_goal)
    } else {
        (0, 0)
    };
    set_stage(&ctx, &plan, Stage::WaitingHealthCheck, &stop).await;
    let health_until = plan.started_ms + u64::from(plan.wait_health_check_secs) * 1000;
    let wait = Duration::from_millis(health_until.saturating_sub(now_ms()));
    if !pause(&stop, wait).await {
        return;
    }
    ev.refusing.store(true, Ordering::Relaxed);
    set_stage(&ctx, &plan, Stage::EvictingConns, &stop).await;
    let started = Instant::now();
    let reference = ev.inner.lock().redirect.clone();
    let rate = plan.conn_evict_rate;
    if !evict_connections(&ctx, &plan, rate, reference, conn_goal, true, &stop).await {
        return;
    }
    let took = started.elapsed().as_secs_f64();
    ev.update(|r| r.connections_closed_secs = Some(took));
    set_stage(&ctx, &plan, Stage::WaitingTakeover, &stop).await;
    let until = Instant::now() + Duration::from_secs(u64::from(plan.wait_takeover_secs));
    while Instant::now() < until
        && !disconnected_sessions(&ctx).is_empty()
        && ctx.local.sessions.len() as u64 > sess_goal
    {
        if !pause(&stop, POLL).await {
            return;
        }
        refresh(&ctx);
    }
    set_stage(&ctx, &plan, Stage::EvictingSessions, &stop).await;
    let rate = plan.sess_evict_rate;
    if !migrate::migrate_all(&ctx, &plan, rate, sess_goal, &stop).await {
        return;
    }
    if rebalance {
        info!(node = %ctx.node(), "rebalance done on this donor");
        back_to_running(&ctx, &plan, &stop).await;
        return;
    }
    set_stage(&ctx, &plan, Stage::Prohibiting, &stop).await;
    info!(node = %ctx.node(), "evacuation done; refusing CONNECTs until stopped");
}

/// Sleeps `d` unless stopped first; false when stopped.
pub(super) async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

async fn set_stage(
    ctx: &Arc<Ctx>,
    plan: &tables::Evacuation,
    stage: Stage,
    stop: &CancellationToken,
) {
    if stop.is_cancelled() {
        return;
    }
    ctx.admission.evacuation.update(|r| r.state = stage);
    refresh(ctx);
    publish_progress(ctx, plan).await;
}

/// A rebalance donor within its goals serves again: its row goes back to RUNNING (the watch
/// then clears the rest). Retried with back-off: a donor must not stay refusing because one
/// write failed.
async fn back_to_running(ctx: &Arc<Ctx>, plan: &tables::Evacuation, stop: &CancellationToken) {
    let node = ctx.node().to_owned();
    let (running, evac) = (NodeState::Running, NodeState::Evacuating);
    let mut delay = Duration::from_secs(1);
    for _ in 0..BACK_TO_RUNNING_ATTEMPTS {
        if stop.is_cancelled() {
            return;
        }
        match super::write_status(ctx, &node, running, evac, plan.started_ms, None).await {
            Ok(()) | Err(super::WriteError::Conflict(_)) => return,
            Err(e) => warn!(error = ?e, "rebalance donor could not return to running; retrying"),
        }
        if !pause(stop, delay).await {
            return;
        }
        delay = (delay * 2).min(Duration::from_secs(8));
    }
    warn!("rebalance donor gave up returning to running: stop the rebalance by hand");
}

/// Updates the current counts of the local report.
pub(super) fn refresh(ctx: &Ctx) {
    let connected = ctx.admission.connections.load(Ordering::Relaxed) as u64;
    let sessions = ctx.local.sessions.len() as u64;
    ctx.admission.evacuation.update(|r| {
        r.stats.current_connected = connected;
        r.stats.current_sessions = sessions;
    });
}

/// Sessions with a live connection here.
fn connected_sessions(ctx: &Ctx) -> Vec<Arc<SessionSlot>> {
    ctx.local
        .sessions
        .all()
        .into_iter()
        .filter(|s| {
            let i = s.inner.lock();
            !i.ended && i.owner.is_some() && i.control.is_some() && i.leaving == Leaving::No
        })
        .collect()
}

/// Sessions held here without a connection (and not already leaving).
pub(super) fn disconnected_sessions(ctx: &Ctx) -> Vec<Arc<SessionSlot>> {
    ctx.local
        .sessions
        .all()
        .into_iter()
        .filter(|s| {
            let i = s.inner.lock();
            !i.ended && i.owner.is_none() && i.leaving == Leaving::No
        })
        .collect()
}

/// Tells the connection of `slot` to leave (DISCONNECT 0x9C); false if it had none.
fn evict(slot: &SessionSlot, server_reference: Option<Arc<str>>) -> bool {
    let control = {
        let mut inner = slot.inner.lock();
        if inner.ended || inner.owner.is_none() || inner.leaving != Leaving::No {
            return false;
        }
        inner.control.take()
    };
    let Some(tx) = control else { return false };
    let sent = tx.send(Control::Evict { server_reference }).is_ok();
    if sent {
        metrics::counter!(m::EVACUATION_CONNECTIONS_EVICTED_TOTAL).increment(1);
    }
    sent
}

/// Closes live connections, `rate` per second (0: all at once), until none is left
/// (with `wait_connecting`, connections still in their CONNECT phase are waited for: they
/// attach, then go), or, with a `goal` (rebalance), until no more than `goal` are left.
/// False when stopped.
async fn evict_connections(
    ctx: &Arc<Ctx>,
    plan: &tables::Evacuation,
    rate: u32,
    reference: Option<Arc<str>>,
    goal: u64,
    wait_connecting: bool,
    stop: &CancellationToken,
) -> bool {
    let start = tokio::time::Instant::now();
    let mut sent: u64 = 0;
    let mut last_progress = Instant::now();
    // A connection that never sends CONNECT is closed by the connect timeout.
    let idle_bound = Duration::from_secs(ctx.config.mqtt.connect_timeout.max(1) + 1);
    let mut idle_since: Option<Instant> = None;
    loop {
        let mut targets = connected_sessions(ctx);
        if goal > 0 {
            let over = (targets.len() as u64).saturating_sub(goal);
            if over == 0 {
                break;
            }
            targets.truncate(usize::try_from(over).unwrap_or(usize::MAX));
        }
        if targets.is_empty() {
            if !wait_connecting || ctx.admission.connections.load(Ordering::Relaxed) == 0 {
                break;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= idle_bound {
                break;
            }
        } else {
            idle_since = None;
        }
        for slot in targets {
            if rate > 0 {
                let due = start + Duration::from_secs_f64(sent as f64 / f64::from(rate));
                tokio::select! {
                    _ = stop.cancelled() => return false,
                    _ = tokio::time::sleep_until(due) => {}
                }
            }
            if evict(&slot, reference.clone()) {
                sent += 1;
                let at = start.elapsed().as_secs_f64();
                ctx.admission.evacuation.update(|r| {
                    r.stats.evicted_connections = sent;
                    r.connection_eviction_secs = Some(at);
                });
            }
            if last_progress.elapsed() >= PROGRESS_EVERY && !stop.is_cancelled() {
                last_progress = Instant::now();
                refresh(ctx);
                publish_progress(ctx, plan).await;
            }
        }
        if !pause(stop, POLL).await {
            return false;
        }
        refresh(ctx);
    }
    refresh(ctx);
    true
}

/// A graceful stop of an evacuating node: finish the evacuation at once (every connection
/// evicted, every disconnected session migrated, each bounded) so that queued messages are
/// not lost with the process; then the caller stops. The node's row is no longer followed
/// from here on (no second run starts). A node not evacuating returns at once.
pub async fn finish_before_shutdown(ctx: &Arc<Ctx>) {
    let plan = {
        let mut inner = ctx.admission.evacuation.inner.lock();
        inner.finishing = true;
        match inner.running.take() {
            Some((_, stop)) => {
                stop.cancel();
                super::own_plan(ctx)
            }
            None => None,
        }
    };
    let Some(plan) = plan else { return };
    info!(node = %ctx.node(), "stopping while evacuating: evicting and migrating everything now");
    ctx.admission
        .evacuation
        .refusing
        .store(true, Ordering::Relaxed);
    let reference = ctx.admission.evacuation.inner.lock().redirect.clone();
    let stop = bounded(FINISH_EVICT_MAX);
    evict_connections(ctx, &plan, 0, reference, 0, false, &stop).await;
    // Evicted clients reconnect elsewhere and take their sessions: give them a moment.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until && !disconnected_sessions(ctx).is_empty() {
        tokio::time::sleep(POLL).await;
    }
    let stop = bounded(FINISH_MIGRATE_MAX);
    migrate::migrate_all(ctx, &plan, 0, 0, &stop).await;
}

/// A token cancelled after `d`.
fn bounded(d: Duration) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(d).await;
        t.cancel();
    });
    token
}
