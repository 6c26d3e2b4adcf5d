//! The latency probe: single-op Transacts (a small retained message on one topic,
//! replaced each time, so the tables do not grow) at a fixed rate, one at a time, on
//! their own connection. The caller drains the samples at each phase boundary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meshmq_proto::tables::{Op, RetainedMessage, RetainedSet, op::Kind};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::link::Link;

/// Latencies of one phase.
#[derive(Debug, Default)]
pub struct Samples {
    /// Successful Transacts' latencies.
    pub ok: Vec<Duration>,
    /// Failed Transacts.
    pub failed: u64,
}

impl Samples {
    /// The `q` quantile (0..=1) in milliseconds; NaN without samples.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.ok.is_empty() {
            return f64::NAN;
        }
        let mut v = self.ok.clone();
        v.sort();
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v[i].as_secs_f64() * 1e3
    }

    /// `n=.. p50=.. p99=.. max=.. failed=..` for the report.
    pub fn line(&self) -> String {
        format!(
            "n={} p50={:.2} ms p99={:.2} ms max={:.2} ms failed={}",
            self.ok.len(),
            self.quantile_ms(0.5),
            self.quantile_ms(0.99),
            self.quantile_ms(1.0),
            self.failed
        )
    }
}

/// A running probe.
pub struct Probe {
    samples: Arc<Mutex<Samples>>,
    stop: CancellationToken,
}

impl Probe {
    /// Starts probing with `link` every `every`.
    pub fn start(link: Arc<Link>, every: Duration) -> Self {
        let samples = Arc::new(Mutex::new(Samples::default()));
        let stop = CancellationToken::new();
        let (s, st) = (samples.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = st.cancelled() => break,
                    _ = tick.tick() => {}
                }
                n += 1;
                let started = Instant::now();
                let r = link.transact(vec![probe_op(n)]).await;
                let mut g = s.lock();
                match r {
                    Ok(_) => g.ok.push(started.elapsed()),
                    Err(_) => g.failed += 1,
                }
            }
        });
        Self { samples, stop }
    }

    /// The samples since the last call.
    pub fn take(&self) -> Samples {
        std::mem::take(&mut *self.samples.lock())
    }

    /// Stops the probe.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

fn probe_op(n: u64) -> Op {
    Op {
        kind: Some(Kind::RetainedSet(RetainedSet {
            message: Some(RetainedMessage {
                topic: "bench/probe".into(),
                payload: n.to_be_bytes().to_vec().into(),
                qos: 1,
                published_at_ms: crate::fill::now_ms(),
                ..Default::default()
            }),
            max_messages: 0,
            max_bytes: 0,
        })),
    }
}
