//! Broker memory: the resident set size (`VmRSS` in `/proc/PID/status`), sampled once a
//! second while a run lasts, of which the report keeps the maximum. A cluster is several
//! processes: each sample is their sum.
//!
//! It owns only the reading of `/proc`. It must never fail a run: a process that cannot be
//! read (gone, not Linux) yields no sample rather than an error.

use std::time::Duration;

use crate::counters::Stop;

/// How often the sampler reads `/proc/PID/status`.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// `VmRSS` in KiB from the text of a `/proc/PID/status` file.
pub fn parse_vmrss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The current `VmRSS` of `pid` in KiB, `None` if it cannot be read.
pub fn vmrss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vmrss_kib(&status)
}

/// The summed `VmRSS` of `pids` in KiB; `None` if any of them cannot be read (a partial
/// sum would understate the peak).
pub fn vmrss_sum_kib(pids: &[u32]) -> Option<u64> {
    pids.iter()
        .map(|&pid| vmrss_kib(pid))
        .sum::<Option<u64>>()
        .filter(|_| !pids.is_empty())
}

/// Samples `pids` (summed) now and every [`SAMPLE_EVERY`] until `stop`; returns the largest
/// total `VmRSS` seen in KiB, `None` if no sample could be read.
pub async fn max_rss_until(pids: Vec<u32>, stop: Stop) -> Option<u64> {
    let mut max = None;
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    let stopped = stop.wait();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            _ = tick.tick() => {
                if let Some(kib) = vmrss_sum_kib(&pids) {
                    max = max.max(Some(kib));
                }
            }
        }
    }
    if let Some(kib) = vmrss_sum_kib(&pids) {
        max = max.max(Some(kib));
    }
    max
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn parses_vmrss_line() {
        let status = "Name:\tmosquitto\nVmPeak:\t  9000 kB\nVmRSS:\t    6144 kB\nThreads:\t1\n";
        assert_eq!(parse_vmrss_kib(status), Some(6144));
        assert_eq!(parse_vmrss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn reads_own_rss() {
        assert!(vmrss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }

    #[test]
    fn sums_several_processes() {
        let me = std::process::id();
        let one = vmrss_sum_kib(&[me]).unwrap();
        let two = vmrss_sum_kib(&[me, me]).unwrap();
        assert!(two >= one && two > 0);
        assert_eq!(vmrss_sum_kib(&[]), None);
        assert_eq!(vmrss_sum_kib(&[me, u32::MAX]), None);
    }
}
