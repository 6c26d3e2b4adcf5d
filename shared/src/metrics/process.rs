//! The process metrics' names (the Prometheus client libraries' standard names, no
//! `meshmq_` prefix), re-exported by [`crate::metrics`]. Names only: reading them from the
//! OS happens in `core_node::process_metrics`.

/// Process figures every node exports under the Prometheus client libraries' standard names
/// (no `meshmq_` prefix), read from the OS when `/metrics` is scraped. Gauges, no labels;
/// `process_cpu_seconds_total` (user + system CPU seconds) is a gauge only because the
/// recorder's counters hold whole numbers; `rate()` applies to it as to a counter.
pub const PROCESS_CPU_SECONDS_TOTAL: &str = "process_cpu_seconds_total";
/// Gauge: resident set size in bytes.
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "process_resident_memory_bytes";
/// Gauge: virtual memory size in bytes.
pub const PROCESS_VIRTUAL_MEMORY_BYTES: &str = "process_virtual_memory_bytes";
/// Gauge: open file descriptors.
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
/// Gauge: the soft limit on open file descriptors (0: unlimited).
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
/// Gauge: process start time, seconds since the Unix epoch.
pub const PROCESS_START_TIME_SECONDS: &str = "process_start_time_seconds";
/// Gauge: OS threads of the process.
pub const PROCESS_THREADS: &str = "process_threads";
/// Every process metric name.
pub const PROCESS: &[&str] = &[
    PROCESS_CPU_SECONDS_TOTAL,
    PROCESS_RESIDENT_MEMORY_BYTES,
    PROCESS_VIRTUAL_MEMORY_BYTES,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    PROCESS_START_TIME_SECONDS,
    PROCESS_THREADS,
];
