//! `[trace]`: the bounds of online traces (EMQX's log trace): how large one node's file of a
//! trace may grow, how many traces the cluster keeps, and how long a finished trace is kept.
//! The traces themselves are defined through the API (`/api/v5/trace`); this module only
//! holds the settings and their check.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::parse_duration;

/// Bounds of online traces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TraceConfig {
    /// Largest file one node writes for one trace, in bytes; events past it are dropped
    /// and counted (`meshmq_trace_events_dropped_total{reason="file_full"}`).
    pub max_file_size: u64,
    /// Traces the cluster may hold (waiting, running or stopped); creating one more is
    /// refused (400) until one is deleted.
    pub max_traces: usize,
    /// How long a finished (stopped or past its end) trace and its files are kept before
    /// they are deleted (`"7d"`; 1 minute to 1 year).
    pub retention: String,
    /// Events queued per trace on a node for its file writer; past it, new events are
    /// dropped and counted (`reason="queue_full"`), never waited for.
    pub queue_len: usize,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            max_file_size: 50 * 1024 * 1024,
            max_traces: 30,
            retention: "7d".into(),
            queue_len: 4096,
        }
    }
}

impl TraceConfig {
    /// `retention`, parsed (validation refused an unreadable one: 7 days otherwise).
    pub fn retention(&self) -> Duration {
        parse_duration(&self.retention).unwrap_or(Duration::from_secs(7 * 86_400))
    }

    /// The key and the reason of the first invalid setting.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.max_file_size < 4096 {
            return Err(("trace.max_file_size", "must be at least 4096".into()));
        }
        if !(1..=1000).contains(&self.max_traces) {
            return Err(("trace.max_traces", "must be between 1 and 1000".into()));
        }
        if !(1..=1 << 20).contains(&self.queue_len) {
            return Err(("trace.queue_len", "must be between 1 and 1048576".into()));
        }
        match parse_duration(&self.retention) {
            Ok(d) if d >= Duration::from_secs(60) && d <= Duration::from_secs(366 * 86_400) => {
                Ok(())
            }
            Ok(_) => Err((
                "trace.retention",
                format!("{:?} must be between 1m and 366d", self.retention),
            )),
            Err(e) => Err(("trace.retention", e)),
        }
    }
}
