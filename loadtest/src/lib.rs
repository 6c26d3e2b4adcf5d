//! The meshmq load generator as a library, so tests can drive a benchmark in-process.
//!
//! Today it holds the fan-out benchmark: a lean hand-rolled MQTT client (`wire`, `client`),
//! the broker endpoints it spreads connections over (`endpoint`), the publisher rate limit
//! (`pace`), the publisher and subscriber hot loops, the run's settings (`config`) and coordinator (`fanout`), the
//! report and the side-by-side summary, and `/proc` sampling of the broker (`rss`, `cpu`).
//! Later subcommands (conn/pub/sub, workers) add modules beside these. Nothing here starts
//! a runtime: `main.rs` chooses it.

pub mod cli;
pub mod client;
pub mod config;
pub mod counters;
pub mod cpu;
pub mod endpoint;
pub mod fanout;
pub mod pace;
pub mod publisher;
pub mod report;
pub mod rss;
pub mod subscriber;
pub mod summary;
pub mod wire;

pub use fanout::{FanoutConfig, run_fanout};
pub use report::{FanoutReport, LatencySummary};
