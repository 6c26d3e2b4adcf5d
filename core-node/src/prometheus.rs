//! The process-wide Prometheus recorder and the descriptions of every meshmq metric, used by
//! core and replicant nodes alike (a standalone broker runs both in one process).
//!
//! Owns installing the recorder exactly once per process (several brokers in one test
//! process share it), the histogram buckets, the periodic upkeep that drains histogram
//! samples, and the `# HELP` text. Metric names come from [`meshmq_shared::metrics`]; this
//! module must never invent a name of its own.

mod help;

use std::sync::OnceLock;
use std::time::Duration;

use meshmq_shared::metrics as m;
use metrics::{describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::warn;

use help::{COUNTER_HELP, GAUGE_HELP, HISTOGRAM_HELP};

/// How often histogram samples are drained into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The `/metrics` body: the process figures read afresh (see [`crate::process_metrics`]),
/// then everything the recorder holds.
pub fn render() -> String {
    crate::process_metrics::refresh();
    prometheus_handle().render()
}

/// The handle of the process-wide Prometheus recorder, installing it (and describing every
/// metric) on first use. Never panics: if another recorder was installed first, a detached
/// recorder is returned and `/metrics` will only show what reaches it (a warning is logged).
pub fn prometheus_handle() -> PrometheusHandle {
    HANDLE.get_or_init(install).clone()
}

fn install() -> PrometheusHandle {
    // Every `_seconds` histogram (table transactions, Raft commits) shares one bucket set.
    let matcher = Matcher::Suffix("_seconds".to_string());
    let counts = m::COUNT_HISTOGRAMS
        .iter()
        .map(|n| Matcher::Full((*n).to_string()))
        .try_fold(PrometheusBuilder::new(), |b, matcher| {
            b.set_buckets_for_metric(matcher, m::COUNT_BUCKETS)
        });
    // A full name wins over the suffix (the exporter tries `Full` matchers first).
    let latency = Matcher::Full(m::DELIVERY_LATENCY_SECONDS.to_string());
    let builder = match counts
        .and_then(|b| b.set_buckets_for_metric(matcher, m::TABLE_TRANSACTION_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(latency, m::DELIVERY_LATENCY_BUCKETS))
    {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "histogram buckets rejected; using summaries");
            PrometheusBuilder::new()
        }
    };
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    match metrics::set_global_recorder(recorder) {
        Ok(()) => describe_all(),
        Err(e) => {
            warn!(error = %e, "a metrics recorder was already installed; /metrics is detached")
        }
    }
    spawn_upkeep(handle.clone());
    handle
}

/// Drains histogram samples periodically on a small dedicated thread (the recorder outlives
/// any one Tokio runtime, e.g. in tests).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("meshmq-metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the metrics upkeep thread; histograms drain on scrape only");
    }
}

/// Registers `# HELP` text for every metric in [`meshmq_shared::metrics`] with the installed
/// recorder. Called once by [`prometheus_handle`]; calling it again is harmless.
pub fn describe_all() {
    for &(name, help) in COUNTER_HELP {
        describe_counter!(name, help);
    }
    for &(name, help) in GAUGE_HELP {
        describe_gauge!(name, help);
    }
    for &(name, help) in HISTOGRAM_HELP {
        describe_histogram!(name, metrics::Unit::Seconds, help);
    }
    crate::process_metrics::describe();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(help: &[(&'static str, &str)]) -> Vec<&'static str> {
        let mut v: Vec<_> = help.iter().map(|(n, _)| *n).collect();
        v.sort_unstable();
        v
    }

    fn sorted(names: &[&'static str]) -> Vec<&'static str> {
        let mut v = names.to_vec();
        v.sort_unstable();
        v
    }

    #[test]
    fn every_metric_is_described_exactly_once() {
        assert_eq!(names(COUNTER_HELP), sorted(m::COUNTERS));
        assert_eq!(names(GAUGE_HELP), sorted(m::GAUGES));
        assert_eq!(names(HISTOGRAM_HELP), sorted(m::HISTOGRAMS));
    }
}
