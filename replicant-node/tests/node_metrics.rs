//! The node's metrics, as `/metrics` shows them, counted exactly: per-listener connection
//! gauges through every close path, authentication and authorization outcomes (once per
//! decision), disconnect reasons, the sampled delivery latency histogram and the queued
//! messages gauge.
//!
//! The recorder is process-wide, so the tests of this binary take turns ([`SERIAL`]) and
//! compare counters before and after what they do: the deltas are exact. Every broker runs
//! in this process on 127.0.0.1 port 0; every wait has a deadline.

#[path = "node_metrics/clients.rs"]
mod clients;
#[path = "common/mod.rs"]
#[allow(unused_imports)] // not every helper's re-export is used here
mod common;
#[path = "node_metrics/messages.rs"]
mod messages;

use std::time::{Duration, Instant};

use meshmq_shared::config::{Config, ListenerConfig};
use replicant_node::{Broker, BrokerHandle};

use common::{WAIT, http_get, metric_sum, test_config};

/// The tests of this binary take turns: the recorder (and so every counter) is shared.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts a broker on [`test_config`] with `tweak` applied.
async fn start(tweak: impl FnOnce(&mut Config)) -> BrokerHandle {
    let mut config = test_config();
    tweak(&mut config);
    Broker::builder(config)
        .start()
        .await
        .expect("broker starts")
}

/// Adds the TCP listener `tcp:{name}` on 127.0.0.1:0 with `tweak` applied.
fn add_tcp(config: &mut Config, name: &str, tweak: impl FnOnce(&mut ListenerConfig)) {
    let mut l = ListenerConfig {
        bind: Some("127.0.0.1:0".parse().expect("addr")),
        ..ListenerConfig::default()
    };
    tweak(&mut l);
    config.listeners.tcp.insert(name.to_owned(), l);
}

/// The sum of `name`'s samples carrying `labels`, as `b`'s `/metrics` shows it (0 when it
/// has none).
async fn metric(b: &BrokerHandle, name: &str, labels: &[(&str, &str)]) -> f64 {
    let addr = b.http_addr().expect("http listener");
    let (status, text) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "/metrics answered {status}");
    metric_sum(&text, name, labels).unwrap_or(0.0)
}

/// Whether `/metrics` has a sample of `name` with `labels`.
async fn has_series(b: &BrokerHandle, name: &str, labels: &[(&str, &str)]) -> bool {
    let addr = b.http_addr().expect("http listener");
    let (_, text) = http_get(addr, "/metrics").await;
    metric_sum(&text, name, labels).is_some()
}

/// Waits until `name{labels}` is `want`; panics with what it was at the deadline.
async fn wait_metric(b: &BrokerHandle, name: &str, labels: &[(&str, &str)], want: f64) {
    let end = Instant::now() + WAIT;
    loop {
        let v = metric(b, name, labels).await;
        if v == want {
            return;
        }
        assert!(
            Instant::now() < end,
            "{name}{labels:?} = {v}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Counters read before an action, to compare with after.
struct Deltas<'a> {
    b: &'a BrokerHandle,
    name: &'static str,
    label: &'static str,
    before: Vec<(&'static str, f64)>,
}

impl<'a> Deltas<'a> {
    /// Reads `name{label=value}` for every value.
    async fn read(
        b: &'a BrokerHandle,
        name: &'static str,
        label: &'static str,
        values: &[&'static str],
    ) -> Deltas<'a> {
        let mut before = Vec::new();
        for v in values {
            before.push((*v, metric(b, name, &[(label, v)]).await));
        }
        Deltas {
            b,
            name,
            label,
            before,
        }
    }

    /// Waits until every value grew by exactly what `want` says (values not named: 0),
    /// then checks that it stays so for a moment (nothing counted twice, late).
    async fn expect(&self, want: &[(&str, f64)]) {
        let grown = |v: &str| want.iter().find(|(w, _)| *w == v).map_or(0.0, |(_, n)| *n);
        for (v, before) in &self.before {
            wait_metric(self.b, self.name, &[(self.label, v)], before + grown(v)).await;
        }
        tokio::time::sleep(common::QUIET).await;
        for (v, before) in &self.before {
            let now = metric(self.b, self.name, &[(self.label, v)]).await;
            assert_eq!(
                now - before,
                grown(v),
                "{}{{{}={v}}} grew by {} (counted twice?)",
                self.name,
                self.label,
                now - before
            );
        }
    }
}
