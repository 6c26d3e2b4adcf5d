//! The fan-out benchmark: N subscribers on one filter, then N publishers flooding (or
//! sending at a fixed total rate), a warmup, a measurement window whose edges snapshot the
//! counters, a drain, and the report. Publishers and subscribers may be spread round-robin
//! over several broker nodes (cross-node fan-out).
//!
//! It owns the run's phases and its time bounds: every phase has a deadline, so a run always
//! ends by itself. It must never talk to a non-loopback broker unless `allow_remote` is set,
//! and never does per-message work itself (that is `publisher` and `subscriber`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinSet;

use crate::client::MqttConn;
pub use crate::config::FanoutConfig;
use crate::counters::{RunCounters, Snapshot, Stop, StopTrigger, stop_signal};
pub use crate::endpoint::check_host;
use crate::endpoint::{self, Endpoint};
use crate::pace::pacer_for;
use crate::publisher::{PublisherSpec, run_publisher};
use crate::report::{FanoutReport, LatencySummary};
use crate::subscriber::run_subscriber;
use crate::{cpu, rss};

/// How often the drain looks at the delivery counters.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// The longest the drain waits for deliveries to stop after the publishers stopped.
const DRAIN_MAX: Duration = Duration::from_secs(5);

/// Runs the benchmark described by `cfg` and returns what it measured.
///
/// Fails only on setup (bad config, connect or subscribe refused); failures after setup
/// are counted in the report. Ends within warmup + duration + a few bounded seconds.
pub async fn run_fanout(cfg: &FanoutConfig) -> anyhow::Result<FanoutReport> {
    cfg.validate()?;
    let pub_addrs = targets(cfg.publisher_hosts(), cfg.allow_remote).await?;
    let sub_addrs = targets(cfg.subscriber_hosts(), cfg.allow_remote).await?;
    let counters = Arc::new(RunCounters::new(cfg.subscribers));
    let (stop_subs, subs_stop) = stop_signal();
    let (stop_pubs, pubs_stop) = stop_signal();
    let (stop_rss, rss_stop) = stop_signal();
    let rss_task = (!cfg.broker_pids.is_empty())
        .then(|| tokio::spawn(rss::max_rss_until(cfg.broker_pids.clone(), rss_stop)));

    let conns = connect_all(cfg, &sub_addrs, true).await?;
    let mut subscribers = JoinSet::new();
    let mask = cfg.sample_every.saturating_sub(1);
    for (index, conn) in conns.into_iter().enumerate() {
        let task = run_subscriber(conn, index, counters.clone(), subs_stop.clone(), mask);
        subscribers.spawn(task);
    }
    let mut publishers = spawn_publishers(cfg, &pub_addrs, &counters, &pubs_stop).await?;

    tokio::time::sleep(cfg.warmup).await;
    let window = measure(cfg, &counters).await;
    stop_and_join(&stop_pubs, &mut publishers).await;
    let drained = drain(&counters, cfg.drain_quiet).await;
    let totals = counters.snapshot();
    stop_subs.fire();
    let mut samples = Vec::new();
    while let Some(joined) = subscribers.join_next().await {
        if let Ok(outcome) = joined {
            samples.extend(outcome.latency_ns);
        }
    }
    stop_rss.fire();
    let rss_kib = match rss_task {
        Some(task) => task.await.ok().flatten(),
        None => None,
    };
    let mut report = build_report(cfg, &counters, &window, &totals, samples, rss_kib);
    report.drain_secs = drained.as_secs_f64();
    Ok(report)
}

/// Resolves `hosts` (loopback policy applied) and pairs each with its address: the
/// endpoint names the TLS server and the WebSocket authority, the address is connected to.
async fn targets(
    hosts: Vec<Endpoint>,
    allow_remote: bool,
) -> anyhow::Result<Vec<(Endpoint, SocketAddr)>> {
    let addrs = endpoint::resolve_all(&hosts, allow_remote).await?;
    Ok(hosts.into_iter().zip(addrs).collect())
}

/// Connects the publishers, then starts them all at once.
async fn spawn_publishers(
    cfg: &FanoutConfig,
    addrs: &[(Endpoint, SocketAddr)],
    counters: &Arc<RunCounters>,
    stop: &Stop,
) -> anyhow::Result<JoinSet<()>> {
    let mut publishers = JoinSet::new();
    let conns = connect_all(cfg, addrs, false).await?;
    let t0 = Instant::now();
    for (index, conn) in conns.into_iter().enumerate() {
        let spec = PublisherSpec {
            topic: cfg.topic.replace("%i", &index.to_string()),
            qos: cfg.qos,
            size: cfg.size,
            inflight: cfg.inflight,
            pacer: cfg
                .rate
                .map(|rate| pacer_for(t0, rate, cfg.publishers, index)),
        };
        let name = format!("publisher {index}");
        publishers.spawn(run_publisher(
            conn,
            spec,
            counters.clone(),
            stop.clone(),
            name,
        ));
    }
    Ok(publishers)
}

/// Opens the subscribers (`subscribe`: each also subscribes to the filter) or the
/// publishers in parallel, connection `i` to `addrs[i % len]`; returns them in index order.
async fn connect_all(
    cfg: &FanoutConfig,
    addrs: &[(Endpoint, SocketAddr)],
    subscribe: bool,
) -> anyhow::Result<Vec<MqttConn>> {
    let (n, role) = if subscribe {
        (cfg.subscribers, "sub")
    } else {
        (cfg.publishers, "pub")
    };
    let pid = std::process::id();
    let mut set = JoinSet::new();
    for index in 0..n {
        let (endpoint, addr) = addrs
            .get(index % addrs.len().max(1))
            .cloned()
            .context("no broker address")?;
        let (version, timeout, qos) = (cfg.version, cfg.connect_timeout, cfg.qos);
        let filter = subscribe.then(|| cfg.filter.replace("%i", &index.to_string()));
        let transport = cfg.transport.clone();
        set.spawn(async move {
            let id = format!("lt-{pid}-{role}-{index}");
            let mut conn =
                MqttConn::connect(&transport, &endpoint, addr, version, &id, timeout).await?;
            if let Some(filter) = filter {
                conn.subscribe(&filter, qos, timeout)
                    .await
                    .with_context(|| id.clone())?;
            }
            anyhow::Ok((index, conn))
        });
    }
    collect_in_order(set, n).await
}

async fn collect_in_order(
    mut set: JoinSet<anyhow::Result<(usize, MqttConn)>>,
    n: usize,
) -> anyhow::Result<Vec<MqttConn>> {
    let mut slots: Vec<Option<MqttConn>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (index, conn) = joined.context("connect task failed")??;
        if let Some(slot) = slots.get_mut(index) {
            *slot = Some(conn);
        }
    }
    slots
        .into_iter()
        .map(|c| c.context("connection missing"))
        .collect()
}

/// The counters and CPU readings at both edges of the measurement window.
struct Window {
    /// Counters when the window opened.
    start: Snapshot,
    /// Counters when it closed.
    end: Snapshot,
    /// Observed length, seconds.
    secs: f64,
    /// Broker CPU, percent of a core.
    broker_cpu: Option<f64>,
    /// Load generator CPU, percent of a core.
    own_cpu: Option<f64>,
}

async fn measure(cfg: &FanoutConfig, counters: &RunCounters) -> Window {
    let broker0 = cpu::cpu_ticks_sum(&cfg.broker_pids);
    let own0 = cpu::cpu_ticks(None);
    counters
        .measuring
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let start = counters.snapshot();
    let opened = Instant::now();
    tokio::time::sleep(cfg.duration).await;
    let end = counters.snapshot();
    let secs = opened.elapsed().as_secs_f64();
    counters
        .measuring
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let broker1 = cpu::cpu_ticks_sum(&cfg.broker_pids);
    Window {
        start,
        end,
        secs,
        broker_cpu: cpu::percent(broker0, broker1, secs),
        own_cpu: cpu::percent(own0, cpu::cpu_ticks(None), secs),
    }
}

async fn stop_and_join(trigger: &StopTrigger, set: &mut JoinSet<()>) {
    trigger.fire();
    while set.join_next().await.is_some() {}
}

/// Waits until every subscriber has every message, or deliveries stop moving for `quiet`
/// (bounded by [`DRAIN_MAX`]), so totals count what the broker still had queued when the
/// publishers stopped. Returns how long deliveries went on after the publishers stopped.
async fn drain(counters: &RunCounters, quiet: Duration) -> Duration {
    let started = Instant::now();
    let deadline = started + DRAIN_MAX;
    let snapshot = counters.snapshot();
    let full = snapshot
        .published
        .saturating_mul(snapshot.delivered.len() as u64);
    let mut last = snapshot.delivered_total();
    let mut since = Instant::now();
    while last < full && Instant::now() < deadline && since.elapsed() < quiet {
        tokio::time::sleep(DRAIN_POLL).await;
        let now = counters.snapshot().delivered_total();
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    since.saturating_duration_since(started)
}

fn build_report(
    cfg: &FanoutConfig,
    counters: &RunCounters,
    w: &Window,
    totals: &Snapshot,
    samples: Vec<u64>,
    rss_kib: Option<u64>,
) -> FanoutReport {
    let rate = |a: u64, b: u64| {
        if w.secs > 0.0 {
            b.saturating_sub(a) as f64 / w.secs
        } else {
            0.0
        }
    };
    let per_sub: Vec<f64> = w
        .start
        .delivered
        .iter()
        .zip(&w.end.delivered)
        .map(|(&a, &b)| rate(a, b))
        .collect();
    FanoutReport {
        broker: cfg.broker_name.clone(),
        scenario: cfg.scenario.clone(),
        mqtt_version: cfg.version.level(),
        qos: cfg.qos,
        publishers: cfg.publishers,
        subscribers: cfg.subscribers,
        size: cfg.size,
        inflight: cfg.inflight,
        offered_per_sec: cfg.rate,
        pub_endpoints: cfg
            .publisher_hosts()
            .iter()
            .map(|e| e.to_string())
            .collect(),
        sub_endpoints: cfg
            .subscriber_hosts()
            .iter()
            .map(|e| e.to_string())
            .collect(),
        runtime_threads: tokio::runtime::Handle::current().metrics().num_workers(),
        window_secs: w.secs,
        published_per_sec: rate(w.start.published, w.end.published),
        acked_per_sec: rate(w.start.acked, w.end.acked),
        delivered_per_sec: rate(w.start.delivered_total(), w.end.delivered_total()),
        delivered_per_sec_min_subscriber: per_sub.iter().copied().fold(f64::INFINITY, f64::min),
        delivered_per_sec_max_subscriber: per_sub.iter().copied().fold(0.0, f64::max),
        published_total: totals.published,
        delivered_total: totals.delivered_total(),
        delivered_ratio: match totals.published.saturating_mul(cfg.subscribers as u64) {
            0 => 0.0,
            full => totals.delivered_total() as f64 / full as f64,
        },
        drain_secs: 0.0,
        foreign_total: counters.foreign.load(std::sync::atomic::Ordering::Relaxed),
        latency: LatencySummary::from_samples(samples),
        broker_rss_max_mib: rss_kib.map(|kib| kib as f64 / 1024.0),
        broker_cpu_percent: w.broker_cpu,
        loadtest_cpu_percent: w.own_cpu,
        errors: counters.errors(),
        error_messages: counters.error_messages(),
    }
}
