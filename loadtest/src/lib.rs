//! The meshmq load generator as a library, so tests can drive a benchmark in-process.
//!
//! The fan-out benchmark: a lean hand-rolled MQTT client (`wire`, `client`), the broker
//! endpoints it spreads connections over (`endpoint`), the publisher rate limit (`pace`),
//! the publisher and subscriber hot loops, the run's settings (`config`) and coordinator
//! (`fanout`), the report and the side-by-side summary, and `/proc` sampling of the broker
//! (`rss`, `cpu`).
//!
//! The emqtt-bench-style tool (`conn`, `sub`, `pub`, `storm`, `scenario`): flags (`args`)
//! into a `plan`; transports (`transport`: TCP, TLS, WebSocket); MQTT sessions with Server
//! Reference redirects (`session`, `redirect`); the per-client loops (`clients`), the run
//! coordinators (`runner`, `storm`, `scenario`); counting (`live`, `figures`, `hist`,
//! `seqcheck`, `failure`); output (`progress`, `run_report`); worker processes
//! (`workers`); and the glue (`app`). Nothing here starts a runtime except `app::run`,
//! which `main.rs` calls.
//!
//! The retained-replay benchmark (`loadtest retained-replay`): its phases and report
//! (`retained_replay`) and its clients (`retained_clients`).

pub mod app;
pub mod args;
pub mod broker_usage;
pub mod cli;
pub mod client;
pub mod clients;
pub mod config;
pub mod counters;
pub mod cpu;
pub mod disconnects;
pub mod endpoint;
pub mod failure;
pub mod fanout;
pub mod figures;
pub mod hist;
pub mod live;
pub mod pace;
pub mod plan;
pub mod progress;
pub mod publisher;
pub mod redirect;
pub mod report;
pub mod retained_clients;
pub mod retained_replay;
pub mod rss;
pub mod run_report;
pub mod runner;
pub mod scenario;
pub mod seqcheck;
pub mod session;
pub mod storm;
pub mod subscriber;
pub mod summary;
pub mod transport;
pub mod wire;
pub mod workers;

pub use fanout::{FanoutConfig, run_fanout};
pub use report::{FanoutReport, LatencySummary};
