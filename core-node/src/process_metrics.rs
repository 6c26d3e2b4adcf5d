//! The process figures every node exports (`process_resident_memory_bytes`,
//! `process_cpu_seconds_total`, `process_open_fds` ...), under the names the Prometheus client
//! libraries use so that stock dashboards and alerts work unchanged.
//!
//! Owns reading them from the OS (through `metrics-process`: `/proc/self` on Linux) when
//! `/metrics` is scraped, at most once per [`MIN_INTERVAL`] however often it is scraped, and
//! their `# HELP` text. Names come from [`meshmq_shared::metrics`]. A figure the OS does not
//! give is left out of the output, never invented.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use meshmq_shared::metrics as m;
use metrics::describe_gauge;

/// Scrapes closer together than this reuse the figures of the previous one.
const MIN_INTERVAL: Duration = Duration::from_millis(500);

static LAST_READ: Mutex<Option<Instant>> = Mutex::new(None);

/// `# HELP` text of every process metric (all gauges, see [`m::PROCESS_CPU_SECONDS_TOTAL`]).
pub(crate) const HELP: &[(&str, &str)] = &[
    (
        m::PROCESS_CPU_SECONDS_TOTAL,
        "Total user and system CPU time spent, in seconds.",
    ),
    (
        m::PROCESS_RESIDENT_MEMORY_BYTES,
        "Resident memory size in bytes.",
    ),
    (
        m::PROCESS_VIRTUAL_MEMORY_BYTES,
        "Virtual memory size in bytes.",
    ),
    (m::PROCESS_OPEN_FDS, "Number of open file descriptors."),
    (
        m::PROCESS_MAX_FDS,
        "Maximum number of open file descriptors (soft limit; 0: unlimited).",
    ),
    (
        m::PROCESS_START_TIME_SECONDS,
        "Start time of the process since the Unix epoch, in seconds.",
    ),
    (m::PROCESS_THREADS, "Number of OS threads in the process."),
];

/// Registers the `# HELP` text of the process metrics with the installed recorder.
pub(crate) fn describe() {
    for &(name, help) in HELP {
        describe_gauge!(name, help);
    }
}

/// Reads the process figures into the recorder, unless the last read is under
/// [`MIN_INTERVAL`] old. Bounded work: a few small `/proc` files and one directory listing
/// (open descriptors, at most `process_max_fds`).
pub fn refresh() {
    {
        let mut last = LAST_READ.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < MIN_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
    }
    let p = metrics_process::collector::collect();
    let figures = [
        (m::PROCESS_CPU_SECONDS_TOTAL, p.cpu_seconds_total),
        (
            m::PROCESS_RESIDENT_MEMORY_BYTES,
            as_f64(p.resident_memory_bytes),
        ),
        (
            m::PROCESS_VIRTUAL_MEMORY_BYTES,
            as_f64(p.virtual_memory_bytes),
        ),
        (m::PROCESS_OPEN_FDS, as_f64(p.open_fds)),
        (m::PROCESS_MAX_FDS, as_f64(p.max_fds)),
        (m::PROCESS_START_TIME_SECONDS, as_f64(p.start_time_seconds)),
        (m::PROCESS_THREADS, as_f64(p.threads)),
    ];
    for (name, value) in figures {
        if let Some(v) = value {
            metrics::gauge!(name).set(v);
        }
    }
}

fn as_f64(v: Option<u64>) -> Option<f64> {
    v.map(|v| v as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_process_metric_is_described_and_read() {
        let mut described: Vec<_> = HELP.iter().map(|(n, _)| *n).collect();
        described.sort_unstable();
        let mut names = m::PROCESS.to_vec();
        names.sort_unstable();
        assert_eq!(described, names);

        let handle = crate::prometheus::prometheus_handle();
        refresh();
        let text = handle.render();
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no value for {name} in:\n{text}"))
        };
        for name in m::PROCESS {
            assert!(value(name) >= 0.0, "{name}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name} HELP");
        }
        assert!(value(m::PROCESS_RESIDENT_MEMORY_BYTES) > 1_000_000.0);
        assert!(value(m::PROCESS_OPEN_FDS) >= 3.0);
        assert!(value(m::PROCESS_START_TIME_SECONDS) > 1_600_000_000.0);
    }
}
