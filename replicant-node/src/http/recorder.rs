//! The process-wide Prometheus recorder lives in `core_node::prometheus` (shared by the
//! embedded core and the replicant); this module only names it for the HTTP handlers.

pub use core_node::prometheus::{describe_all, prometheus_handle};
