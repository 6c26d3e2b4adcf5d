//! `--broker-pid` of the client subcommands (`storm`, `conn`, ...): the broker's CPU time
//! and resident memory over a whole run, read from `/proc` by the process that prints the
//! report (alone, or the parent of `--workers`), so a storm can say what its handshakes cost
//! the broker.
//!
//! It owns only the sampling; it never fails a run: processes that cannot be read give
//! `None` figures.

use serde::{Deserialize, Serialize};

use crate::counters::{StopTrigger, stop_signal};
use crate::{cpu, rss};

/// What the broker used during a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BrokerUsage {
    /// The processes sampled (summed).
    pub pids: Vec<u32>,
    /// CPU seconds (user + system) used during the run.
    pub cpu_secs: Option<f64>,
    /// Resident memory when the run started, KiB.
    pub rss_before_kib: Option<u64>,
    /// Largest resident memory seen during the run (sampled once a second), KiB.
    pub rss_peak_kib: Option<u64>,
    /// Resident memory when the run ended, KiB.
    pub rss_after_kib: Option<u64>,
}

impl BrokerUsage {
    /// Peak minus start, KiB (what the run's connections cost at most).
    pub fn rss_delta_kib(&self) -> Option<i64> {
        Some(self.rss_peak_kib? as i64 - self.rss_before_kib? as i64)
    }

    /// One line for the text report.
    pub fn to_line(&self) -> String {
        let kib = |v: Option<u64>| v.map_or("n/a".to_owned(), |v| v.to_string());
        format!(
            "broker    pid {}: CPU {} s; RSS {} KiB before, peak {} (delta {}), {} after",
            self.pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            self.cpu_secs
                .map_or("n/a".to_owned(), |s| format!("{s:.2}")),
            kib(self.rss_before_kib),
            kib(self.rss_peak_kib),
            self.rss_delta_kib()
                .map_or("n/a".to_owned(), |d| format!("{d:+}")),
            kib(self.rss_after_kib),
        )
    }
}

/// A sampling in progress (see [`Sampler::start`]).
#[derive(Debug)]
pub struct Sampler {
    usage: BrokerUsage,
    cpu0: Option<u64>,
    stop: StopTrigger,
    peak: tokio::task::JoinHandle<Option<u64>>,
}

impl Sampler {
    /// Reads the broker now and samples its RSS every second until [`Sampler::finish`];
    /// `None` without pids. Needs a tokio runtime.
    pub fn start(pids: &[u32]) -> Option<Sampler> {
        if pids.is_empty() {
            return None;
        }
        let (stop, stopped) = stop_signal();
        Some(Sampler {
            usage: BrokerUsage {
                pids: pids.to_vec(),
                rss_before_kib: rss::vmrss_sum_kib(pids),
                ..BrokerUsage::default()
            },
            cpu0: cpu::cpu_ticks_sum(pids),
            stop,
            peak: tokio::spawn(rss::max_rss_until(pids.to_vec(), stopped)),
        })
    }

    /// Ends the sampling and returns the figures.
    pub async fn finish(self) -> BrokerUsage {
        let mut usage = self.usage;
        let cpu1 = cpu::cpu_ticks_sum(&usage.pids);
        usage.rss_after_kib = rss::vmrss_sum_kib(&usage.pids);
        self.stop.fire();
        usage.rss_peak_kib = self.peak.await.ok().flatten();
        usage.cpu_secs = match (self.cpu0, cpu1) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / cpu::TICKS_PER_SEC),
            _ => None,
        };
        usage
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[tokio::test]
    async fn samples_a_live_process_and_tolerates_a_gone_one() {
        let me = std::process::id();
        let s = Sampler::start(&[me]).unwrap();
        let burn = std::time::Instant::now();
        while burn.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(burn.elapsed());
        }
        let u = s.finish().await;
        assert!(u.cpu_secs.is_some() && u.rss_before_kib.is_some());
        assert!(u.rss_peak_kib.unwrap() > 0 && u.rss_after_kib.is_some());
        assert!(u.to_line().contains("broker    pid"), "{}", u.to_line());
        assert!(Sampler::start(&[]).is_none());
        let gone = Sampler::start(&[u32::MAX]).unwrap().finish().await;
        assert_eq!((gone.cpu_secs, gone.rss_peak_kib), (None, None));
        assert_eq!(gone.rss_delta_kib(), None);
    }
}
