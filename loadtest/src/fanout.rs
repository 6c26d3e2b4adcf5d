//! The fan-out benchmark: N subscribers on one filter, then N publishers flooding, a warmup,
//! a measurement window whose edges snapshot the counters, a drain, and the report.
//!
//! It owns the run's phases and its time bounds: every phase has a deadline, so a run always
//! ends by itself. It must never talk to a non-loopback broker unless `allow_remote` is set,
//! and never does per-message work itself (that is `publisher` and `subscriber`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::task::JoinSet;

use crate::client::MqttConn;
use crate::counters::{RunCounters, Snapshot, Stop, StopTrigger, stop_signal};
use crate::publisher::{PublisherSpec, run_publisher};
use crate::report::{FanoutReport, LatencySummary};
use crate::subscriber::run_subscriber;
use crate::wire::{MqttVersion, STAMP_LEN};
use crate::{cpu, rss};

/// How often the drain looks at the delivery counters.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// The longest the drain waits for deliveries to stop after the publishers stopped.
const DRAIN_MAX: Duration = Duration::from_secs(5);

/// Everything a fan-out run needs.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// Broker host: a loopback address or `localhost` unless `allow_remote`.
    pub host: String,
    /// Broker MQTT port.
    pub port: u16,
    /// Allow a broker that is not on this machine.
    pub allow_remote: bool,
    /// Publisher connections.
    pub publishers: usize,
    /// Subscriber connections.
    pub subscribers: usize,
    /// Topic each publisher writes to; `%i` becomes the publisher index.
    pub topic: String,
    /// Filter each subscriber subscribes to; `%i` becomes the subscriber index.
    pub filter: String,
    /// QoS 0 or 1, for publishes and subscriptions alike.
    pub qos: u8,
    /// Payload bytes, at least [`STAMP_LEN`] (timestamp, sequence number, run tag).
    pub size: usize,
    /// QoS 1: unacknowledged PUBLISHes allowed per publisher.
    pub inflight: usize,
    /// Publishing before the window opens.
    pub warmup: Duration,
    /// Length of the measurement window.
    pub duration: Duration,
    /// MQTT protocol level.
    pub version: MqttVersion,
    /// Broker process to sample for RSS and CPU.
    pub broker_pid: Option<u32>,
    /// Deadline for each CONNECT/CONNACK and SUBSCRIBE/SUBACK.
    pub connect_timeout: Duration,
    /// The drain ends once deliveries have not moved for this long.
    pub drain_quiet: Duration,
    /// Labels copied into the report.
    pub broker_name: Option<String>,
    /// Scenario label copied into the report.
    pub scenario: Option<String>,
}

impl FanoutConfig {
    /// A config with the defaults of the command line for `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> FanoutConfig {
        FanoutConfig {
            host: host.into(),
            port,
            allow_remote: false,
            publishers: 10,
            subscribers: 10,
            topic: "bench/%i".to_owned(),
            filter: "bench/#".to_owned(),
            qos: 0,
            size: 100,
            inflight: 32,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            version: MqttVersion::V311,
            broker_pid: None,
            connect_timeout: Duration::from_secs(10),
            drain_quiet: Duration::from_millis(250),
            broker_name: None,
            scenario: None,
        }
    }

    /// Checks the settings that do not need the network.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.publishers > 0 && self.subscribers > 0,
            "need publishers and subscribers"
        );
        ensure!(self.qos <= 1, "--qos must be 0 or 1");
        ensure!(
            self.size >= STAMP_LEN,
            "--size must be at least {STAMP_LEN} bytes"
        );
        ensure!(self.inflight > 0, "--inflight must be at least 1");
        ensure!(!self.duration.is_zero(), "--duration must be positive");
        check_host(&self.host, self.allow_remote)
    }
}

/// Refuses hosts outside 127.0.0.0/8, ::1 and `localhost` unless `allow_remote`.
pub fn check_host(host: &str, allow_remote: bool) -> anyhow::Result<()> {
    if allow_remote || is_loopback_name(host) {
        return Ok(());
    }
    bail!("refusing non-loopback host {host:?}: benchmarks run locally (pass --allow-remote)")
}

fn is_loopback_name(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// Resolves the broker address, keeping only loopback answers unless `allow_remote`.
async fn resolve(cfg: &FanoutConfig) -> anyhow::Result<SocketAddr> {
    let bare = cfg.host.trim_start_matches('[').trim_end_matches(']');
    let addrs = tokio::net::lookup_host((bare, cfg.port))
        .await
        .with_context(|| format!("resolving {}", cfg.host))?;
    addrs
        .into_iter()
        .find(|a| cfg.allow_remote || a.ip().is_loopback())
        .with_context(|| format!("{} has no loopback address", cfg.host))
}

/// Runs the benchmark described by `cfg` and returns what it measured.
///
/// Fails only on setup (bad config, connect or subscribe refused); failures after setup
/// are counted in the report. Ends within warmup + duration + a few bounded seconds.
pub async fn run_fanout(cfg: &FanoutConfig) -> anyhow::Result<FanoutReport> {
    cfg.validate()?;
    let addr = resolve(cfg).await?;
    let counters = Arc::new(RunCounters::new(cfg.subscribers));
    let (stop_subs, subs_stop) = stop_signal();
    let (stop_pubs, pubs_stop) = stop_signal();
    let (stop_rss, rss_stop) = stop_signal();
    let rss_task = cfg
        .broker_pid
        .map(|pid| tokio::spawn(rss::max_rss_until(pid, rss_stop)));

    let conns = connect_subscribers(cfg, addr).await?;
    let mut subscribers = JoinSet::new();
    for (index, conn) in conns.into_iter().enumerate() {
        let task = run_subscriber(conn, index, counters.clone(), subs_stop.clone());
        subscribers.spawn(task);
    }
    let mut publishers = spawn_publishers(cfg, addr, &counters, &pubs_stop).await?;

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

/// Connects the publishers, then starts them all at once.
async fn spawn_publishers(
    cfg: &FanoutConfig,
    addr: SocketAddr,
    counters: &Arc<RunCounters>,
    stop: &Stop,
) -> anyhow::Result<JoinSet<()>> {
    let mut publishers = JoinSet::new();
    for (index, conn) in connect_publishers(cfg, addr).await?.into_iter().enumerate() {
        let spec = PublisherSpec {
            topic: cfg.topic.replace("%i", &index.to_string()),
            qos: cfg.qos,
            size: cfg.size,
            inflight: cfg.inflight,
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

async fn connect_subscribers(
    cfg: &FanoutConfig,
    addr: SocketAddr,
) -> anyhow::Result<Vec<MqttConn>> {
    let pid = std::process::id();
    let mut set = JoinSet::new();
    for index in 0..cfg.subscribers {
        let (version, timeout) = (cfg.version, cfg.connect_timeout);
        let filter = cfg.filter.replace("%i", &index.to_string());
        let qos = cfg.qos;
        set.spawn(async move {
            let id = format!("lt-{pid}-sub-{index}");
            let mut conn = MqttConn::connect(addr, version, &id, timeout).await?;
            conn.subscribe(&filter, qos, timeout)
                .await
                .with_context(|| id.clone())?;
            anyhow::Ok((index, conn))
        });
    }
    collect_in_order(set, cfg.subscribers).await
}

async fn connect_publishers(cfg: &FanoutConfig, addr: SocketAddr) -> anyhow::Result<Vec<MqttConn>> {
    let pid = std::process::id();
    let mut set = JoinSet::new();
    for index in 0..cfg.publishers {
        let (version, timeout) = (cfg.version, cfg.connect_timeout);
        set.spawn(async move {
            let id = format!("lt-{pid}-pub-{index}");
            anyhow::Ok((index, MqttConn::connect(addr, version, &id, timeout).await?))
        });
    }
    collect_in_order(set, cfg.publishers).await
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
    let broker0 = cfg.broker_pid.and_then(|pid| cpu::cpu_ticks(Some(pid)));
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
    let broker1 = cfg.broker_pid.and_then(|pid| cpu::cpu_ticks(Some(pid)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_policy() {
        for ok in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LocalHost",
        ] {
            assert!(check_host(ok, false).is_ok(), "{ok}");
        }
        for bad in ["10.0.0.1", "192.168.1.1", "example.com", "0.0.0.0", "::"] {
            assert!(check_host(bad, false).is_err(), "{bad}");
            assert!(check_host(bad, true).is_ok(), "{bad}");
        }
    }

    #[test]
    fn validate_rejects_bad_settings() {
        let ok = FanoutConfig::new("127.0.0.1", 1883);
        assert!(ok.validate().is_ok());
        assert!(
            FanoutConfig {
                qos: 2,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            FanoutConfig {
                size: 15,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            FanoutConfig {
                publishers: 0,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            FanoutConfig {
                host: "8.8.8.8".into(),
                ..ok
            }
            .validate()
            .is_err()
        );
    }
}
