//! `loadtest retained-replay`: a subscriber to `#` joins a broker that holds many retained
//! messages while publishers run at a fixed rate. How long does the replay take, does every
//! retained message arrive exactly once, and what does it do to the publishers' latency and
//! to the broker's memory?
//!
//! Phases:
//! 1. `--loaders` connections store `--retained` retained QoS 1 messages of `--size` bytes
//!    on `retained/{i}` (pipelined; every PUBACK awaited).
//! 2. `--publishers` connections publish marked messages to `live/{p}` at `--rate` msg/s
//!    in total (QoS `--qos`); one subscriber on `live/#` times each (publish → receive) and,
//!    at QoS 1, each publisher times its PUBACKs.
//! 3. After `--before` s, the replay subscriber subscribes to `--filter` at `--sub-qos` and
//!    counts the retained deliveries (acking QoS 1) until all arrived, none came for
//!    `--idle` s, or `--max-replay` s passed.
//! 4. `--after` s more of live traffic; then everything stops.
//!
//! Latencies are grouped by send time: *before* (from 1 s after the publishers started to
//! the SUBSCRIBE), *during* (SUBSCRIBE to the last retained delivery), *after*. The broker's
//! RSS (`--broker-pid`) is sampled every 100 ms.
//!
//! It owns the phases and the report; the clients are in `retained_clients`. Every phase is
//! bounded in time, and it refuses a broker that is not on this machine.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::client::MqttConn;
use crate::counters::stop_signal;
use crate::endpoint::Endpoint;
use crate::hist::{Hist, Percentiles};
use crate::retained_clients::{self as clients, Pace, wall_ns};
use crate::wire::MqttVersion;

/// Topic prefix of the retained messages.
const RETAINED: &str = "retained/";
/// How often the broker's RSS is sampled.
const RSS_EVERY: Duration = Duration::from_millis(100);
/// Publishing before latencies count as *before*.
const SETTLE: Duration = Duration::from_secs(1);

/// Flags of `loadtest retained-replay`.
#[derive(Debug, Clone, Args)]
pub struct RetainedReplayArgs {
    /// Broker host; loopback only.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker MQTT port.
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// MQTT protocol level: 4 (3.1.1) or 5.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(4..=5))]
    pub mqtt_version: u8,
    /// Retained messages stored before the run (`retained/{i}`).
    #[arg(long, default_value_t = 100_000)]
    pub retained: usize,
    /// Payload bytes of every message (at least 32).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Connections that store the retained messages.
    #[arg(long, default_value_t = 10)]
    pub loaders: usize,
    /// Publishers running throughout (`live/{p}`).
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// PUBLISHes per second over all publishers.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// QoS of the publishers and of their subscriber (0 or 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// The publishers' messages are retained too (each one a table write on the broker).
    #[arg(long)]
    pub live_retain: bool,
    /// Filter of the replay subscriber.
    #[arg(long, default_value = "#")]
    pub filter: String,
    /// QoS of the replay subscriber (0 or 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub sub_qos: u8,
    /// Seconds of live traffic before the replay subscriber joins.
    #[arg(long, default_value_t = 5.0)]
    pub before: f64,
    /// Seconds of live traffic after the replay ended.
    #[arg(long, default_value_t = 3.0)]
    pub after: f64,
    /// The replay is over when no retained message came for this many seconds.
    #[arg(long, default_value_t = 5.0)]
    pub idle: f64,
    /// The longest the replay is waited for, seconds.
    #[arg(long, default_value_t = 300.0)]
    pub max_replay: f64,
    /// Deadline of every other network wait, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Broker process id(s), comma-separated: their summed RSS is sampled.
    #[arg(long, value_delimiter = ',')]
    pub broker_pid: Vec<u32>,
    /// Label of the broker under test, carried into the report.
    #[arg(long, default_value = "meshmq")]
    pub broker_name: String,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The latency percentiles of one window (µs).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Windows {
    /// Sent before the SUBSCRIBE.
    pub before: Percentiles,
    /// Sent during the replay.
    pub during: Percentiles,
    /// Sent after it.
    pub after: Percentiles,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayReport {
    /// Label of the broker.
    pub broker: String,
    /// The replay subscriber's filter and QoS, the publishers' QoS and total rate.
    pub filter: String,
    /// QoS of the replay subscriber.
    pub sub_qos: u8,
    /// QoS of the publishers.
    pub qos: u8,
    /// PUBLISHes per second offered by the publishers.
    pub rate: f64,
    /// The publishers' messages were retained.
    #[serde(default)]
    pub live_retain: bool,
    /// Retained messages stored, and their payload size.
    pub retained: usize,
    /// Payload bytes.
    pub size: usize,
    /// Seconds the load took.
    pub load_secs: f64,
    /// Seconds from the SUBSCRIBE to the last retained delivery.
    pub replay_secs: f64,
    /// SUBSCRIBE → SUBACK, ms.
    pub suback_ms: Option<f64>,
    /// SUBSCRIBE → first retained delivery, ms.
    pub first_ms: Option<f64>,
    /// Retained deliveries (duplicates included) and distinct topics among them.
    pub received: u64,
    /// Distinct retained topics received.
    pub distinct: u64,
    /// Retained deliveries per second over the replay.
    pub replay_rate: f64,
    /// Publish → receive latency of the publishers' messages, by window.
    pub delivery: Windows,
    /// PUBLISH → PUBACK round trip of the publishers (QoS 1), by window.
    pub puback: Windows,
    /// Broker RSS, MiB: last sample before the SUBSCRIBE, largest during the replay, last.
    pub rss_before_mib: Option<f64>,
    /// Largest RSS sample during the replay (up to one sampling period after it, so a short
    /// replay has one).
    pub rss_during_max_mib: Option<f64>,
    /// Last RSS sample.
    pub rss_end_mib: Option<f64>,
    /// Errors of the live clients (a run with errors is not comparable).
    pub errors: Vec<String>,
}

fn secs(value: f64, flag: &str) -> anyhow::Result<Duration> {
    ensure!(value >= 0.0, "--{flag} must not be negative");
    Duration::try_from_secs_f64(value).with_context(|| format!("--{flag} {value}"))
}

/// Runs the benchmark (see the module doc).
pub async fn run(args: &RetainedReplayArgs) -> anyhow::Result<ReplayReport> {
    let version = MqttVersion::from_level(args.mqtt_version).context("--mqtt-version")?;
    ensure!(
        args.size >= crate::wire::MARK_LEN,
        "--size must be at least 32"
    );
    ensure!(
        args.rate > 0.0 && args.publishers > 0 && args.loaders > 0,
        "nothing to run"
    );
    let timeout = secs(args.timeout, "timeout")?;
    let addr = Endpoint::new(&args.host, args.port).resolve(false).await?;
    let run_tag = crate::args::random_tag();

    let started = Instant::now();
    let mut loaders = JoinSet::new();
    for k in 0..args.loaders {
        let indices = (k..args.retained).step_by(args.loaders);
        let (id, size) = (format!("loadtest_load_{k}"), args.size);
        loaders.spawn(async move {
            clients::load(addr, version, &id, RETAINED, indices, size, timeout).await
        });
    }
    let mut stored = 0;
    while let Some(r) = loaders.join_next().await {
        stored += r
            .context("loader task")?
            .context("loading retained messages")?;
    }
    ensure!(
        stored as usize == args.retained,
        "stored {stored} of {}",
        args.retained
    );
    let load_secs = started.elapsed().as_secs_f64();

    let (stop_live, live_stop) = stop_signal();
    let mut live = MqttConn::connect_tcp(addr, version, "loadtest_live_sub", timeout).await?;
    live.subscribe("live/#", args.qos, timeout).await?;
    let timer = tokio::spawn(clients::time_deliveries(live, run_tag, live_stop.clone()));
    let rss = tokio::spawn(clients::sample_rss(
        args.broker_pid.clone(),
        RSS_EVERY,
        live_stop.clone(),
    ));
    let period = Duration::from_secs_f64(args.publishers as f64 / args.rate);
    let mut publishers = JoinSet::new();
    for p in 0..args.publishers {
        let conn =
            MqttConn::connect_tcp(addr, version, &format!("loadtest_pub_{p}"), timeout).await?;
        let pace = Pace {
            topic: format!("live/{p}"),
            qos: args.qos,
            size: args.size,
            period,
            index: p as u32,
            run: run_tag,
            timeout,
            retain: args.live_retain,
        };
        publishers.spawn(clients::publish_paced(conn, pace, live_stop.clone()));
    }
    let live_from = wall_ns() + SETTLE.as_nanos() as u64;
    tokio::time::sleep(secs(args.before, "before")?).await;

    let replayed = clients::replay(
        addr,
        version,
        &args.filter,
        args.sub_qos,
        RETAINED,
        args.retained,
        secs(args.idle, "idle")?,
        secs(args.max_replay, "max-replay")?,
    )
    .await?;
    tokio::time::sleep(secs(args.after, "after")?).await;
    stop_live.fire();

    let mut errors = Vec::new();
    let mut acks = Vec::new();
    while let Some(r) = publishers.join_next().await {
        match r.context("publisher task")? {
            Ok(p) => acks.extend(p.acks),
            Err(e) => errors.push(format!("publisher: {e:#}")),
        }
    }
    let deliveries = timer.await.context("timer task")?.unwrap_or_else(|e| {
        errors.push(format!("live subscriber: {e:#}"));
        Vec::new()
    });
    let rss = rss.await.context("rss task")?;
    let edges = (live_from, replayed.subscribed_ns, replayed.last_ns);
    let replay_secs = replayed.last_ns.saturating_sub(replayed.subscribed_ns) as f64 / 1e9;
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(ReplayReport {
        broker: args.broker_name.clone(),
        filter: args.filter.clone(),
        sub_qos: args.sub_qos,
        qos: args.qos,
        rate: args.rate,
        live_retain: args.live_retain,
        retained: args.retained,
        size: args.size,
        load_secs,
        replay_secs,
        suback_ms: replayed.suback_after.map(|d| d.as_secs_f64() * 1e3),
        first_ms: replayed.first_after.map(|d| d.as_secs_f64() * 1e3),
        received: replayed.received,
        distinct: replayed.distinct,
        replay_rate: if replay_secs > 0.0 {
            replayed.received as f64 / replay_secs
        } else {
            0.0
        },
        delivery: windows(&deliveries, edges),
        puback: windows(&acks, edges),
        rss_before_mib: rss
            .iter()
            .rev()
            .find(|(t, _)| *t < edges.1)
            .map(|(_, k)| mib(*k)),
        rss_during_max_mib: rss
            .iter()
            .filter(|(t, _)| (edges.1..=edges.2 + RSS_EVERY.as_nanos() as u64).contains(t))
            .map(|(_, k)| *k)
            .max()
            .map(mib),
        rss_end_mib: rss.last().map(|(_, k)| mib(*k)),
        errors,
    })
}

/// Percentiles (µs) of `(sent_ns, latency_ns)` samples grouped by send time: from `from`
/// to the SUBSCRIBE, from the SUBSCRIBE to the last retained delivery, after it.
pub fn windows(samples: &[(u64, u64)], (from, join, end): (u64, u64, u64)) -> Windows {
    let (mut before, mut during, mut after) = (Hist::new(), Hist::new(), Hist::new());
    for &(sent, latency) in samples {
        let h = match sent {
            s if s < from => continue,
            s if s < join => &mut before,
            s if s <= end => &mut during,
            _ => &mut after,
        };
        h.record(latency / 1000);
    }
    Windows {
        before: before.percentiles(),
        during: during.percentiles(),
        after: after.percentiles(),
    }
}

impl ReplayReport {
    /// The report as the benchmark script prints it.
    pub fn to_text(&self) -> String {
        let opt =
            |v: Option<f64>, unit: &str| v.map_or("-".to_owned(), |v| format!("{v:.1} {unit}"));
        let live = if self.live_retain { "retained " } else { "" };
        let mut s = format!(
            "{}: '{}' subscriber QoS {} joins {} retained x {} B; {} msg/s of {live}QoS {} publishers\n",
            self.broker, self.filter, self.sub_qos, self.retained, self.size, self.rate, self.qos
        );
        s += &format!(
            "load     {} retained stored in {:.2} s ({:.0}/s)\n",
            self.retained,
            self.load_secs,
            self.retained as f64 / self.load_secs.max(1e-9)
        );
        s += &format!(
            "replay   {} received ({} distinct, {} duplicates) of {} in {:.3} s = {:.0} msg/s; SUBACK after {}, first after {}\n",
            self.received,
            self.distinct,
            self.received - self.distinct,
            self.retained,
            self.replay_secs,
            self.replay_rate,
            opt(self.suback_ms, "ms"),
            opt(self.first_ms, "ms"),
        );
        s += "latency us         window   samples      p50      p99      max\n";
        for (name, w) in [
            ("publish->receive", &self.delivery),
            ("publish->puback", &self.puback),
        ] {
            for (window, p) in [
                ("before", &w.before),
                ("during", &w.during),
                ("after", &w.after),
            ] {
                s += &format!(
                    "{name:<18} {window:<6} {:>9} {:>8} {:>8} {:>8}\n",
                    p.count, p.p50, p.p99, p.max
                );
            }
        }
        s += &format!(
            "broker RSS: {} before the SUBSCRIBE, {} max during the replay, {} at the end\n",
            opt(self.rss_before_mib, "MiB"),
            opt(self.rss_during_max_mib, "MiB"),
            opt(self.rss_end_mib, "MiB"),
        );
        for e in &self.errors {
            s += &format!("error: {e}\n");
        }
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn samples_fall_in_the_window_of_their_send_time() {
        let samples = [
            (5, 1_000),
            (10, 2_000),
            (19, 3_000),
            (20, 4_000),
            (30, 9_000),
            (31, 7_000),
        ];
        let w = windows(&samples, (10, 20, 30));
        assert_eq!((w.before.count, w.during.count, w.after.count), (2, 2, 1));
        assert_eq!((w.before.p50, w.during.max, w.after.max), (2, 9, 7));
    }
}
