//! The result of one fan-out run: rates over the measurement window, totals over the whole
//! run, latency percentiles, broker RSS/CPU and errors; printed for humans or as JSON.
//!
//! Pure: it turns counts and samples into figures and text. It must never touch a socket
//! or the clock.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Publish-to-receive latency over the samples kept in the measurement window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples behind the figures.
    pub samples: usize,
    /// Median, microseconds.
    pub p50_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
    /// Largest sample, microseconds.
    pub max_us: f64,
}

impl LatencySummary {
    /// Summarises nanosecond samples (sorted here); `None` when there are none.
    pub fn from_samples(mut samples_ns: Vec<u64>) -> Option<LatencySummary> {
        if samples_ns.is_empty() {
            return None;
        }
        samples_ns.sort_unstable();
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(LatencySummary {
            samples: samples_ns.len(),
            p50_us: us(percentile(&samples_ns, 50.0)),
            p99_us: us(percentile(&samples_ns, 99.0)),
            max_us: us(samples_ns[samples_ns.len() - 1]),
        })
    }
}

/// The nearest-rank percentile `p` (0..=100) of sorted, non-empty `sorted`.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Everything one `loadtest fanout` run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutReport {
    /// Label of the broker under test (from `--broker-name`), for comparisons.
    pub broker: Option<String>,
    /// Label of the scenario (from `--scenario`), for comparisons.
    pub scenario: Option<String>,
    /// MQTT protocol level used (4 or 5).
    pub mqtt_version: u8,
    /// QoS of publishes and subscriptions.
    pub qos: u8,
    /// Publisher connections.
    pub publishers: usize,
    /// Subscriber connections.
    pub subscribers: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// QoS 1 window per publisher.
    pub inflight: usize,
    /// The fixed total publish rate asked for (`--rate`), msg/s; `None` for a flood.
    #[serde(default)]
    pub offered_per_sec: Option<f64>,
    /// Where the publishers connected (`host:port`, round-robin by publisher index).
    #[serde(default)]
    pub pub_endpoints: Vec<String>,
    /// Where the subscribers connected (`host:port`, round-robin by subscriber index).
    #[serde(default)]
    pub sub_endpoints: Vec<String>,
    /// Tokio worker threads of the load generator (1 = current_thread runtime).
    pub runtime_threads: usize,
    /// Length of the measurement window actually observed, seconds.
    pub window_secs: f64,
    /// PUBLISHes written per second in the window, all publishers.
    pub published_per_sec: f64,
    /// PUBACKs received per second in the window (QoS 1).
    pub acked_per_sec: f64,
    /// PUBLISHes received per second in the window, summed over subscribers.
    pub delivered_per_sec: f64,
    /// The slowest subscriber's deliveries per second in the window.
    pub delivered_per_sec_min_subscriber: f64,
    /// The fastest subscriber's deliveries per second in the window.
    pub delivered_per_sec_max_subscriber: f64,
    /// PUBLISHes written over the whole run (warmup, window and stop).
    pub published_total: u64,
    /// PUBLISHes received over the whole run, after the drain, summed over subscribers.
    pub delivered_total: u64,
    /// `delivered_total / (published_total × subscribers)`: the share of the full fan-out
    /// that arrived, when every filter matches every topic (the default `bench/#` run);
    /// below 1 the broker dropped messages (or filters match fewer topics).
    pub delivered_ratio: f64,
    /// How long deliveries went on after the publishers stopped: the broker's backlog.
    pub drain_secs: f64,
    /// PUBLISHes received that this run did not send (an earlier run's leftovers).
    pub foreign_total: u64,
    /// Latency percentiles, if any sample was kept.
    pub latency: Option<LatencySummary>,
    /// Largest broker `VmRSS` seen, MiB (with `--broker-pid`).
    pub broker_rss_max_mib: Option<f64>,
    /// Broker CPU in the window, percent of one core (with `--broker-pid`).
    pub broker_cpu_percent: Option<f64>,
    /// Load generator CPU in the window, percent of one core.
    pub loadtest_cpu_percent: Option<f64>,
    /// Connections that failed after setup.
    pub errors: u64,
    /// The first error messages.
    pub error_messages: Vec<String>,
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}{unit}"))
}

impl FanoutReport {
    /// The human-readable report printed at the end of a run.
    pub fn to_text(&self) -> String {
        let mut s = self.heading();
        self.write_rates(&mut s);
        self.write_outcome(&mut s);
        s
    }

    /// The first line: what was run.
    fn heading(&self) -> String {
        let label = match (&self.broker, &self.scenario) {
            (Some(b), Some(sc)) => format!(" [{b} / {sc}]"),
            (Some(b), None) => format!(" [{b}]"),
            (None, Some(sc)) => format!(" [{sc}]"),
            (None, None) => String::new(),
        };
        let mut s = format!(
            "fanout{label}: {} pub -> {} sub, QoS {}, {} B, MQTT v{}, {} thread(s), window {:.2} s\n",
            self.publishers,
            self.subscribers,
            self.qos,
            self.size,
            self.mqtt_version,
            self.runtime_threads,
            self.window_secs
        );
        if self.pub_endpoints.len() + self.sub_endpoints.len() > 2
            || self.pub_endpoints != self.sub_endpoints
        {
            let _ = writeln!(
                s,
                "  publishers on     {}\n  subscribers on    {}",
                self.pub_endpoints.join(", "),
                self.sub_endpoints.join(", ")
            );
        }
        if let Some(rate) = self.offered_per_sec {
            let _ = writeln!(
                s,
                "  offered load      {rate:.0} publishes/s ({:.0} deliveries/s at full fan-out)",
                rate * self.subscribers as f64
            );
        }
        s
    }

    /// Rates and latency in the window.
    fn write_rates(&self, s: &mut String) {
        let _ = writeln!(s, "  delivered msg/s   {:>12.0}", self.delivered_per_sec);
        let _ = writeln!(
            s,
            "    per subscriber  {:>12.0} .. {:.0}",
            self.delivered_per_sec_min_subscriber, self.delivered_per_sec_max_subscriber
        );
        let _ = writeln!(s, "  published msg/s   {:>12.0}", self.published_per_sec);
        if self.qos > 0 {
            let _ = writeln!(s, "  acked msg/s       {:>12.0}", self.acked_per_sec);
        }
        match &self.latency {
            Some(l) => {
                let _ = writeln!(
                    s,
                    "  latency           p50 {:.0} us, p99 {:.0} us, max {:.0} us ({} samples)",
                    l.p50_us, l.p99_us, l.max_us, l.samples
                );
            }
            None => s.push_str("  latency           n/a (no samples)\n"),
        }
    }

    /// Resources, totals, drain and errors.
    fn write_outcome(&self, s: &mut String) {
        let rss = opt(self.broker_rss_max_mib, " MiB");
        let _ = writeln!(s, "  broker RSS max    {rss}");
        let _ = writeln!(
            s,
            "  CPU               broker {}, loadtest {}",
            opt(self.broker_cpu_percent, "%"),
            opt(self.loadtest_cpu_percent, "%")
        );
        let _ = writeln!(
            s,
            "  totals            published {}, delivered {} ({:.1}% of full fan-out), foreign {}",
            self.published_total,
            self.delivered_total,
            self.delivered_ratio * 100.0,
            self.foreign_total
        );
        let _ = writeln!(
            s,
            "  drain             deliveries went on {:.2} s after publishers stopped",
            self.drain_secs
        );
        let _ = writeln!(s, "  errors            {}", self.errors);
        for m in &self.error_messages {
            let _ = writeln!(s, "    {m}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn latency_summary_sorts_and_converts_to_us() {
        let l = LatencySummary::from_samples(vec![3_000, 1_000, 2_000]).unwrap();
        assert_eq!((l.samples, l.p50_us, l.max_us), (3, 2.0, 3.0));
        assert_eq!(LatencySummary::from_samples(Vec::new()), None);
    }
}
