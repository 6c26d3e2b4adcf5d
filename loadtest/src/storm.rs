//! `storm`: connect every client (at `--rate` or `-i`), hold, drop them all at once (or at
//! `--drop-rate`) without DISCONNECT, reconnect, `--cycles` times; then hold and disconnect
//! cleanly. Each connect phase reports its clients connected and unconnected, failures by
//! reason, connect-to-CONNACK percentiles and how long it took.
//!
//! With `--broker-pid` each phase also records the broker's CPU seconds while it connected.
//!
//! Connected sessions are parked (not read) while held, so `--hold` should stay well under
//! the keep-alive. Every connect has the run's timeout and `--retries` bounded retries;
//! the number of phases is fixed, so a storm always ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::counters::Stop;
use crate::cpu;
use crate::failure::reason_of;
use crate::figures::{CycleFigures, Figures};
use crate::hist::Hist;
use crate::live::{Live, add};
use crate::pace::Pacer;
use crate::plan::{Plan, StormSpec};
use crate::runner::{sleep_until, targets};
use crate::session::{self, Session, Target};

/// Pause before retry `k` (1-based) of a failed connect.
fn backoff(k: u32) -> Duration {
    Duration::from_millis(100 * u64::from(k.min(10)))
}

/// What one client's connect (with retries) gave.
struct Connect {
    pos: usize,
    session: Option<Session>,
    failures: Vec<String>,
    latency_us: Option<u64>,
}

async fn connect_client(
    pos: usize,
    index: usize,
    plan: Arc<Plan>,
    targets: Arc<Vec<Target>>,
    retries: u32,
    live: Arc<Live>,
) -> Connect {
    let client_id = plan.client_id(index);
    let target = targets[plan.endpoint_index(index)].clone();
    let mut failures = Vec::new();
    for attempt in 0..=retries {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        let a = session::connect(vec![target.clone()], &client_id, &plan.opts).await;
        add(&live.attempts, 1);
        add(&live.redirects, u64::from(a.redirects));
        let latency_us = u64::try_from(a.latency.as_micros()).unwrap_or(u64::MAX);
        match a.result {
            Ok(session) => {
                live.connect_ok(latency_us);
                live.opened();
                return Connect {
                    pos,
                    session: Some(session),
                    failures,
                    latency_us: Some(latency_us),
                };
            }
            Err(err) => {
                let reason = reason_of(&err);
                live.connect_failed(&client_id, reason.clone(), &err);
                failures.push(reason);
            }
        }
    }
    Connect {
        pos,
        session: None,
        failures,
        latency_us: None,
    }
}

/// Runs the storm of `plan` in this process.
pub async fn run_storm(
    plan: Arc<Plan>,
    spec: StormSpec,
    live: Arc<Live>,
    stop: Stop,
) -> anyhow::Result<Figures> {
    let started = Instant::now();
    let handshakes0 = plan.tls_handshakes();
    let targets = Arc::new(targets(&plan).await?);
    let indices: Vec<usize> = plan.clients.clone().collect();
    let mut sessions: Vec<Option<Session>> = indices.iter().map(|_| None).collect();
    let mut unconnected_at_end = 0;
    for cycle in 0..=spec.cycles {
        if stop.is_set() {
            break;
        }
        let phase_start = Instant::now();
        let phase_handshakes = plan.tls_handshakes();
        let phase_cpu = cpu::cpu_ticks_sum(&plan.broker_pids);
        let mut pacer = plan.connect_rate.map(|r| Pacer::new(phase_start, r));
        let mut set = JoinSet::new();
        for (pos, &index) in indices.iter().enumerate() {
            if let Some(p) = &pacer
                && p.due(Instant::now()) == 0
            {
                tokio::select! {
                    biased;
                    _ = stop.clone().wait() => break,
                    _ = tokio::time::sleep_until(p.next_at().into()) => {}
                }
            }
            set.spawn(connect_client(
                pos,
                index,
                plan.clone(),
                targets.clone(),
                spec.retries,
                live.clone(),
            ));
            if let Some(p) = pacer.as_mut() {
                p.sent(1);
            }
        }
        let mut fig = CycleFigures {
            cycle,
            clients: indices.len() as u64,
            ..CycleFigures::default()
        };
        let mut failures: BTreeMap<String, u64> = BTreeMap::new();
        let mut hist = Hist::new();
        while let Some(joined) = set.join_next().await {
            let Ok(c) = joined else { continue };
            for reason in c.failures {
                *failures.entry(reason).or_default() += 1;
            }
            if let Some(us) = c.latency_us {
                hist.record(us);
            }
            if let Some(s) = c.session {
                fig.connected += 1;
                sessions[c.pos] = Some(s);
            }
        }
        fig.connect_secs = phase_start.elapsed().as_secs_f64();
        if let (Some(a), Some(b)) = (phase_cpu, cpu::cpu_ticks_sum(&plan.broker_pids)) {
            fig.broker_cpu_secs = Some(b.saturating_sub(a) as f64 / cpu::TICKS_PER_SEC);
        }
        let handshakes = plan.tls_handshakes().since(phase_handshakes);
        (fig.tls_full, fig.tls_resumed) = (handshakes.full, handshakes.resumed);
        fig.unconnected = fig.clients - fig.connected;
        fig.failures = failures;
        fig.connect_latency = hist;
        hold(spec.hold, &stop).await;
        if cycle < spec.cycles && !stop.is_set() {
            let t = Instant::now();
            drop_all(&mut sessions, spec.drop_rate, &live, &stop).await;
            fig.drop_secs = t.elapsed().as_secs_f64();
        } else {
            unconnected_at_end = fig.unconnected;
        }
        live.cycle_done(fig);
    }
    let open_at_end = sessions.iter().filter(|s| s.is_some()).count() as u64;
    let mut bye = JoinSet::new();
    for s in sessions.iter_mut().filter_map(Option::take) {
        let live = live.clone();
        bye.spawn(async move {
            s.goodbye().await;
            live.closed();
        });
    }
    while bye.join_next().await.is_some() {}
    let mut figures = live.figures();
    figures.clients = indices.len() as u64;
    figures.elapsed_secs = started.elapsed().as_secs_f64();
    figures.open_at_end = open_at_end;
    figures.unconnected_at_end = unconnected_at_end;
    let handshakes = plan.tls_handshakes().since(handshakes0);
    (figures.tls_full, figures.tls_resumed) = (handshakes.full, handshakes.resumed);
    Ok(figures)
}

async fn hold(d: Duration, stop: &Stop) {
    tokio::select! {
        _ = stop.clone().wait() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// Drops every parked session without DISCONNECT: all at once, or `rate` per second.
async fn drop_all(sessions: &mut [Option<Session>], rate: Option<f64>, live: &Live, stop: &Stop) {
    let mut pacer = rate.map(|r| Pacer::new(Instant::now(), r));
    for slot in sessions.iter_mut() {
        if slot.is_none() {
            continue;
        }
        if let Some(p) = &pacer
            && p.due(Instant::now()) == 0
            && !stop.is_set()
        {
            tokio::select! {
                _ = stop.clone().wait() => {}
                _ = sleep_until(Some(p.next_at())) => {}
            }
        }
        drop(slot.take());
        live.closed();
        if let Some(p) = pacer.as_mut() {
            p.sent(1);
        }
    }
}
