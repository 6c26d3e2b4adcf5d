//! `[metrics]`: what the node measures beyond its counters and gauges (today: the sampled
//! publish-to-deliver latency histogram). Owns the settings only; recording happens in the
//! replicant (`replicant_node::delivery_latency`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Metrics settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Sample one in this many accepted client PUBLISHes for
    /// `meshmq_message_delivery_latency_seconds` (the time from the PUBLISH being accepted to
    /// its copy being written to a subscriber's connection); 0 turns the sampling off, 1
    /// measures every message.
    pub latency_sample_every: u32,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            latency_sample_every: 64,
        }
    }
}
