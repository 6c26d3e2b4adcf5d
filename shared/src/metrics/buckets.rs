//! Histogram bucket bounds, re-exported by [`crate::metrics`]; the recorder
//! (`core_node::prometheus`) sets them. Values only: never records anything.

use super::{CORE_GROUP_COMMIT_OPS, CORE_GROUP_COMMIT_TRANSACTIONS};

/// Histograms counted in ops or transactions rather than seconds.
pub const COUNT_HISTOGRAMS: &[&str] = &[CORE_GROUP_COMMIT_OPS, CORE_GROUP_COMMIT_TRANSACTIONS];

/// Bucket upper bounds for [`COUNT_HISTOGRAMS`].
pub const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0,
];

/// Bucket upper bounds, in seconds, for [`TABLE_TRANSACTION_SECONDS`](super::TABLE_TRANSACTION_SECONDS): from an in-process
/// apply (tens of µs) to a slow Raft round trip.
pub const TABLE_TRANSACTION_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// Bucket upper bounds, in seconds, for [`DELIVERY_LATENCY_SECONDS`](super::DELIVERY_LATENCY_SECONDS): from a local hand-off
/// (tens of µs) to a message that waited in an offline session's queue.
pub const DELIVERY_LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
