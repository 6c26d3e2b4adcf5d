//! The alarm checks: every `alarms.check_interval` one task takes a [`Snapshot`] of what it
//! watches (memory and descriptors, the core link, the peer links, the listeners' counts
//! and certificates), [`evaluate`]s it against the thresholds, and activates or deactivates
//! alarms so that exactly the conditions that hold are active. Interval and thresholds are
//! read from the node's effective configuration (`ctx.runtime`) at each check, so a
//! run-time change applies from the next one.
//!
//! Owns the conditions, their names, messages and hysteresis (an alarm clears a little
//! below the level that raised it, so a reading that hovers at the threshold does not
//! flap), and the rule that a condition marked `lasting` (replication lag, a peer link
//! down) must hold on two checks in a row before it raises anything. [`evaluate`] is pure;
//! the task only gathers readings (blocking file reads on a blocking thread) and applies
//! the result. It must never wait on the network or hold a lock across an await.

use std::collections::HashSet;
use std::sync::Arc;

use meshmq_proto::tables::{NodeRole, NodeState};
use meshmq_shared::config::AlarmsConfig;
use serde_json::json;

use super::readings::{self, Readings};
use super::{Alarm, Severity, notify};
use crate::core_link::{LinkHealth, LinkState};
use crate::ctx::Ctx;

/// Percentage points below `sysmem_high_watermark` / `fd_high_watermark` at which their
/// alarm clears.
const CLEAR_MARGIN_POINTS: f64 = 5.0;
/// Fraction of `procmem_high_watermark` at which its alarm clears.
const PROCMEM_CLEAR_FRACTION: f64 = 0.9;
/// Seconds in a day.
const DAY_S: i64 = 86_400;

/// What one check looks at.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Memory and descriptors.
    pub readings: Readings,
    /// The link to the core group.
    pub link: LinkHealth,
    /// The core group has no leader, as far as the link can tell.
    pub no_leader: bool,
    /// Running replicants (not this node) whose peer link is not connected.
    pub peers_down: Vec<String>,
    /// Listeners with a `max_connections`: (id, connections now, the cap).
    pub listeners: Vec<(String, usize, usize)>,
    /// TLS listeners: (id, their default certificate's `notAfter`, Unix seconds).
    pub certs: Vec<(String, i64)>,
    /// Now, Unix seconds.
    pub now_s: i64,
}

/// A condition that holds now.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The alarm it raises.
    pub alarm: Alarm,
    /// It must hold on two checks in a row first.
    pub lasting: bool,
}

fn finding(
    name: String,
    severity: Severity,
    message: String,
    details: serde_json::Value,
) -> Finding {
    Finding {
        alarm: Alarm::new(name, severity, message, details),
        lasting: false,
    }
}

/// The conditions that hold in `s`; `active` says whether an alarm is active now (for the
/// hysteresis).
pub fn evaluate(cfg: &AlarmsConfig, s: &Snapshot, active: &dyn Fn(&str) -> bool) -> Vec<Finding> {
    let mut out = Vec::new();
    resources(cfg, &s.readings, active, &mut out);
    cluster(cfg, s, &mut out);
    for (id, current, max) in &s.listeners {
        if current >= max {
            out.push(finding(
                format!("listener_max_connections:{id}"),
                Severity::Warning,
                format!(
                    "listener {id} is at its max_connections ({max}): new connections are refused"
                ),
                json!({ "listener": id, "current_connections": current, "max_connections": max }),
            ));
        }
    }
    if cfg.cert_expiry_days > 0 {
        let within = i64::from(cfg.cert_expiry_days) * DAY_S;
        for (id, not_after) in &s.certs {
            let left = not_after - s.now_s;
            if left <= within {
                out.push(cert_finding(id, *not_after, left));
            }
        }
    }
    out
}

fn cert_finding(id: &str, not_after: i64, left: i64) -> Finding {
    let at = crate::banned::rfc3339::format(u64::try_from(not_after).unwrap_or(0));
    let (severity, message) = if left <= 0 {
        (
            Severity::Critical,
            format!("the certificate of listener {id} expired at {at}"),
        )
    } else {
        (
            Severity::Warning,
            format!(
                "the certificate of listener {id} expires at {at}, in {} days",
                left / DAY_S
            ),
        )
    };
    let details = json!({ "listener": id, "not_after": at, "days_left": left / DAY_S });
    finding(
        format!("certificate_expiring:{id}"),
        severity,
        message,
        details,
    )
}

/// Memory and file descriptors, with their hysteresis.
fn resources(
    cfg: &AlarmsConfig,
    r: &Readings,
    active: &dyn Fn(&str) -> bool,
    out: &mut Vec<Finding>,
) {
    let over = |name: &str, value: Option<f64>, raise: f64, clear: f64| {
        value.is_some_and(|v| if active(name) { v > clear } else { v > raise })
    };
    let wm = cfg.sysmem_high_watermark;
    let name = "high_system_memory_usage";
    if over(name, r.sysmem_percent(), wm, wm - CLEAR_MARGIN_POINTS) {
        let usage = r.sysmem_percent().unwrap_or_default();
        out.push(finding(
            name.into(),
            Severity::Warning,
            format!("system memory usage is higher than {wm}%"),
            json!({ "high_watermark": wm, "usage": round(usage), "total_bytes": r.mem_total, "used_bytes": r.mem_used }),
        ));
    }
    let wm = cfg.procmem_high_watermark;
    let name = "high_process_memory_usage";
    if over(name, r.procmem_percent(), wm, wm * PROCMEM_CLEAR_FRACTION) {
        let usage = r.procmem_percent().unwrap_or_default();
        out.push(finding(
            name.into(),
            Severity::Warning,
            format!("process memory usage is higher than {wm}%"),
            json!({ "high_watermark": wm, "usage": round(usage), "rss_bytes": r.proc_rss, "total_bytes": r.mem_total }),
        ));
    }
    let wm = cfg.fd_high_watermark;
    let name = "high_fd_usage";
    if over(name, r.fd_percent(), wm, wm - CLEAR_MARGIN_POINTS) {
        out.push(finding(
            name.into(),
            Severity::Warning,
            format!("open file descriptors are above {wm}% of the limit"),
            json!({ "high_watermark": wm, "open": r.fds_open, "max": r.fds_max }),
        ));
    }
}

/// The core link, Raft and the peer links.
fn cluster(cfg: &AlarmsConfig, s: &Snapshot, out: &mut Vec<Finding>) {
    let link = &s.link;
    if link.state == LinkState::Down {
        out.push(finding(
            "core_link_down".into(),
            Severity::Critical,
            "no core reachable: table writes (new sessions, subscriptions) wait, reads may be stale".into(),
            json!({ "applied_index": link.applied_index, "commit_index": link.commit_index }),
        ));
    } else if s.no_leader {
        out.push(finding(
            "no_raft_leader".into(),
            Severity::Critical,
            "the core group has no Raft leader: table writes fail until one is elected".into(),
            json!({ "core": link.core.map(|c| c.to_string()) }),
        ));
    }
    if link.state != LinkState::Down && link.lag > cfg.replication_lag_threshold {
        let mut f = finding(
            "replication_lag".into(),
            Severity::Warning,
            format!(
                "the local replica is {} log entries behind the core group",
                link.lag
            ),
            json!({ "lag": link.lag, "threshold": cfg.replication_lag_threshold }),
        );
        f.lasting = true;
        out.push(f);
    }
    for node in &s.peers_down {
        let mut f = finding(
            format!("peer_link_down:{node}"),
            Severity::Warning,
            format!("the peer link to {node} is down: messages for its subscribers are dropped"),
            json!({ "peer": node }),
        );
        f.lasting = true;
        out.push(f);
    }
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Runs the checks until shutdown; the first one at once. The interval and thresholds are
/// the effective configuration's at each check (`PUT /api/v5/configs/alarms` changes
/// them); a new interval counts from the last check.
pub async fn run(ctx: Arc<Ctx>) {
    let mut swapped = ctx.runtime.subscribe();
    let mut seen_before: HashSet<String> = HashSet::new();
    loop {
        let checked = tokio::time::Instant::now();
        let cfg = ctx.runtime.current().config.alarms.clone();
        let snap = snapshot(&ctx).await;
        let findings = evaluate(&cfg, &snap, &|n| ctx.alarms.is_active(n));
        seen_before = apply(&ctx, findings, &seen_before);
        loop {
            let next = checked + ctx.runtime.current().config.alarms.interval();
            tokio::select! {
                () = ctx.admission.shutdown.cancelled() => return,
                () = tokio::time::sleep_until(next) => break,
                changed = swapped.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Activates what holds (a lasting finding only when it held last time too, or is already
/// active) and deactivates every active alarm that no longer holds; the names that held.
fn apply(ctx: &Ctx, findings: Vec<Finding>, seen_before: &HashSet<String>) -> HashSet<String> {
    let seen: HashSet<String> = findings.iter().map(|f| f.alarm.name.clone()).collect();
    let mut wanted = HashSet::new();
    for f in findings {
        let name = f.alarm.name.clone();
        if f.lasting && !seen_before.contains(&name) && !ctx.alarms.is_active(&name) {
            continue;
        }
        if let Some(event) = ctx.alarms.activate(f.alarm) {
            notify::changed(ctx, &event);
        }
        wanted.insert(name);
    }
    for name in ctx.alarms.active_names() {
        if !wanted.contains(&name)
            && let Some(event) = ctx.alarms.deactivate(&name)
        {
            notify::changed(ctx, &event);
        }
    }
    seen
}

/// Gathers what the checks look at.
async fn snapshot(ctx: &Ctx) -> Snapshot {
    let readings = tokio::task::spawn_blocking(readings::read)
        .await
        .unwrap_or_default();
    let link = ctx.tables.core.link();
    let mut listeners = Vec::new();
    let mut certs = Vec::new();
    for l in ctx.admission.listeners.all().iter().filter(|l| l.running()) {
        if let Some(max) = l.spec.config.max_connections {
            listeners.push((l.id.clone(), l.current_connections(), max));
        }
        if let Some(not_after) = l.tls.as_ref().and_then(|t| t.not_after_unix()) {
            certs.push((l.id.clone(), not_after));
        }
    }
    Snapshot {
        readings,
        link: link.health(),
        no_leader: link.no_leader(),
        peers_down: peers_down(ctx),
        listeners,
        certs,
        now_s: i64::try_from(crate::banned::now_s()).unwrap_or(i64::MAX),
    }
}

/// Running replicants other than this node whose peer link is not connected.
fn peers_down(ctx: &Ctx) -> Vec<String> {
    let Some(peers) = &ctx.cluster.peers else {
        return Vec::new();
    };
    let me = ctx.node();
    let expected: Vec<String> = ctx.tables.core.read(|t| {
        t.nodes()
            .filter(|n| n.node != me && !n.peer_addr.is_empty())
            .filter(|n| n.role == NodeRole::Replicant as i32)
            .filter(|n| n.status != NodeState::Left as i32)
            .map(|n| n.node.clone())
            .collect()
    });
    expected.into_iter().filter(|n| !peers.is_up(n)).collect()
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
