//! Runs one [`Plan`] in this process: `conn`, `sub` and `pub` start their clients on the
//! connect schedule (`-i` / `--rate`) and let them run until the duration ends, every
//! client has done its count, or the caller's stop fires; `storm` is [`crate::storm`].
//!
//! It owns the run's time bounds: after the stop, clients get the run's timeout plus a
//! second to say goodbye, then are aborted. It must never resolve a broker outside the
//! loopback policy.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::clients::run_client;
use crate::counters::{Stop, stop_signal};
use crate::figures::Figures;
use crate::live::Live;
use crate::pace::Pacer;
use crate::plan::{Job, Plan};
use crate::session::{self, Target};

/// Resolves every endpoint of `plan` once (loopback policy applied, bounded by the run's
/// timeout).
pub async fn targets(plan: &Plan) -> anyhow::Result<Vec<Target>> {
    let mut out = Vec::with_capacity(plan.endpoints.len());
    for endpoint in &plan.endpoints {
        endpoint.check(plan.opts.allow_remote)?;
        let addr = tokio::time::timeout(
            plan.opts.timeout,
            session::resolve(endpoint, plan.opts.allow_remote),
        )
        .await
        .map_err(|_| crate::failure::Timeout("name resolution"))??;
        out.push(Target {
            endpoint: endpoint.clone(),
            addr: Some(addr),
        });
    }
    Ok(out)
}

/// Sleeps until `at`; never resolves for `None`.
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Runs `plan` until it ends by itself or `stop` fires; returns what this process counted.
pub async fn run_plan(plan: Arc<Plan>, live: Arc<Live>, stop: Stop) -> anyhow::Result<Figures> {
    live.mark_start();
    if let Job::Storm(spec) = &plan.job {
        return crate::storm::run_storm(plan.clone(), spec.clone(), live, stop).await;
    }
    let started = Instant::now();
    let handshakes0 = plan.tls_handshakes();
    let targets = Arc::new(targets(&plan).await?);
    let deadline = plan.duration.map(|d| started + d);
    let (trigger, clients_stop) = stop_signal();
    let mut set = JoinSet::new();
    let mut pacer = plan.connect_rate.map(|rate| Pacer::new(started, rate));
    let outer = stop.clone().wait();
    tokio::pin!(outer);
    let mut ended = false;
    for index in plan.clients.clone() {
        if let Some(p) = &pacer
            && p.due(Instant::now()) == 0
        {
            tokio::select! {
                biased;
                _ = &mut outer => { ended = true; break; }
                _ = sleep_until(deadline) => { ended = true; break; }
                _ = tokio::time::sleep_until(p.next_at().into()) => {}
            }
        }
        let task = run_client(
            index,
            plan.clone(),
            targets.clone(),
            live.clone(),
            clients_stop.clone(),
        );
        set.spawn(task);
        if let Some(p) = pacer.as_mut() {
            p.sent(1);
        }
    }
    if !ended {
        loop {
            tokio::select! {
                biased;
                _ = &mut outer => break,
                _ = sleep_until(deadline) => break,
                joined = set.join_next() => if joined.is_none() { break },
            }
        }
    }
    let open_at_end = live.open.load(Ordering::Relaxed);
    trigger.fire();
    let grace = plan.opts.timeout + Duration::from_secs(1);
    let joined =
        tokio::time::timeout(grace, async { while set.join_next().await.is_some() {} }).await;
    if joined.is_err() {
        set.abort_all();
        while set.join_next().await.is_some() {}
    }
    let mut figures = live.figures();
    figures.clients = plan.clients.len() as u64;
    figures.elapsed_secs = started.elapsed().as_secs_f64();
    figures.open_at_end = open_at_end;
    let handshakes = plan.tls_handshakes().since(handshakes0);
    (figures.tls_full, figures.tls_resumed) = (handshakes.full, handshakes.resumed);
    figures.never_connected = figures
        .clients
        .saturating_sub(live.clients_connected.load(Ordering::Relaxed));
    Ok(figures)
}
