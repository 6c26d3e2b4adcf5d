//! The flags of `conn`, `sub`, `pub`, `storm` and `scenario`, spelled like emqtt-bench
//! (`-h` hosts, `-p`, `-V`, `-c`, `-i`, `-t`, `-q`, `-s`, `-I`, `-L`, `-F`, `-k`, `-C`,
//! `-x`, `-u`/`-P`, ...), and their validation into a [`Plan`](crate::plan::Plan) for this process (the whole
//! run, or a worker's share of it).
//!
//! `-h` is the host list here, so these subcommands have `--help` only. Parsing and checks
//! only: it never opens a socket. Every run it accepts is bounded: a duration or a count
//! is required, and non-loopback hosts need `--allow-remote`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};
use clap::{ArgAction, Args};

use crate::endpoint::Endpoint;

/// Flags every client subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Broker hosts, comma-separated, round-robin per client: `host` (port from -p) or
    /// `host:port`. Loopback only unless --allow-remote.
    #[arg(
        short = 'h',
        long = "host",
        default_value = "localhost",
        value_name = "HOSTS"
    )]
    pub host: String,
    /// Broker port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    pub port: u16,
    /// MQTT version: 3 (3.1), 4 (3.1.1) or 5.
    #[arg(short = 'V', long = "mqtt-version", default_value_t = 5,
          value_parser = clap::value_parser!(u8).range(3..=5))]
    pub mqtt_version: u8,
    /// Clients.
    #[arg(short = 'c', long, default_value_t = 200)]
    pub count: usize,
    /// Milliseconds between two connects (0 = all at once); see --rate.
    #[arg(short = 'i', long, default_value_t = 10, value_name = "MS")]
    pub interval: u64,
    /// Connects per second (instead of -i).
    #[arg(long, value_name = "PER_SEC")]
    pub rate: Option<f64>,
    /// Keep-alive, seconds (clients ping at this period; 0 = off).
    #[arg(short = 'k', long, default_value_t = 300)]
    pub keepalive: u16,
    /// Clean start: `-C` / `-C true` (the default) or `-C false`.
    #[arg(short = 'C', long, default_value = "true", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set, value_name = "BOOL")]
    pub clean: bool,
    /// MQTT 5 Session Expiry Interval, seconds.
    #[arg(short = 'x', long, value_name = "SECS")]
    pub session_expiry: Option<u32>,
    /// Client id prefix: ids are `<prefix>_<command>_<index>`.
    #[arg(long, default_value = "loadtest")]
    pub prefix: String,
    /// User name.
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password.
    #[arg(short = 'P', long)]
    pub password: Option<String>,
    /// TLS, WebSocket and source addresses.
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Allow brokers (and redirects) that are not on this machine.
    #[arg(long)]
    pub allow_remote: bool,
    /// Do not follow MQTT 5 Server References (CONNACK/DISCONNECT 0x9C/0x9D).
    #[arg(long)]
    pub no_redirect: bool,
    /// Run this long, seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Deadline of every network wait, seconds (connect, SUBACK, a stalled write, the last
    /// acks; without --duration also the wait for a subscriber's next message).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub timeout: f64,
    /// Write every figure as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Broker process id(s), comma-separated: report their CPU time and RSS (before, peak,
    /// after; summed) over the run. Read by the process that prints the report.
    #[arg(long, value_name = "PID,...", value_delimiter = ',')]
    pub broker_pid: Vec<u32>,
    /// Worker processes sharing the clients (past the per-process open-file limit).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Tokio worker threads per process (1 = current_thread runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Internal: this process is worker K of --workers.
    #[arg(long, hide = true, value_name = "K")]
    pub worker_of: Option<usize>,
    /// Internal: the client indices START..END this worker runs.
    #[arg(long, hide = true, value_name = "START..END")]
    pub worker_range: Option<String>,
    /// Internal: the run tag a parent shares with its workers.
    #[arg(long, hide = true)]
    pub run_tag: Option<u64>,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// `loadtest conn`: connect and hold.
#[derive(Debug, Clone, Args)]
#[command(disable_help_flag = true)]
pub struct ConnArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
}

/// `loadtest sub`: subscribe and count.
#[derive(Debug, Clone, Args)]
#[command(disable_help_flag = true)]
pub struct SubArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    /// Topic filter (`%i` = client index, `%c` = client id).
    #[arg(short = 't', long)]
    pub topic: String,
    /// Subscription QoS.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Stop each subscriber after this many messages.
    #[arg(short = 'L', long)]
    pub limit: Option<u64>,
}

/// `loadtest pub`: publish marked messages.
#[derive(Debug, Clone, Args)]
#[command(disable_help_flag = true)]
pub struct PubArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    /// Topic (`%i` = client index, `%c` = client id).
    #[arg(short = 't', long)]
    pub topic: String,
    /// PUBLISH QoS.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload bytes (at least 32: the mark with time and sequence number).
    #[arg(short = 's', long, default_value_t = 256)]
    pub size: usize,
    /// Milliseconds between two messages of one publisher (0 = as fast as possible).
    #[arg(
        short = 'I',
        long = "interval-of-msg",
        alias = "interval_of_msg",
        default_value_t = 1000,
        value_name = "MS"
    )]
    pub interval_of_msg: u64,
    /// Messages per publisher.
    #[arg(short = 'L', long)]
    pub limit: Option<u64>,
    /// Unacknowledged QoS 1/2 messages per publisher.
    #[arg(short = 'F', long, default_value_t = 1)]
    pub inflight: usize,
}

/// `loadtest storm`: connect, drop, reconnect.
#[derive(Debug, Clone, Args)]
#[command(disable_help_flag = true)]
pub struct StormArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    /// Drop-and-reconnect cycles after the first connect.
    #[arg(long)]
    pub cycles: u32,
    /// Drops per second (default: all at once).
    #[arg(long, value_name = "PER_SEC")]
    pub drop_rate: Option<f64>,
    /// Seconds connected before each drop and before the final disconnect.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub hold: f64,
    /// Extra connect attempts per client and phase.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
}

/// `loadtest scenario FILE`.
#[derive(Debug, Clone, Args)]
pub struct ScenarioArgs {
    /// The TOML scenario.
    pub file: PathBuf,
    /// Write every phase's figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Worker processes; each runs its share of every phase.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Tokio worker threads per process.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Internal: this process is worker K of --workers.
    #[arg(long, hide = true, value_name = "K")]
    pub worker_of: Option<usize>,
    /// Internal: the run tag a parent shares with its workers.
    #[arg(long, hide = true)]
    pub run_tag: Option<u64>,
}

/// Where this process stands: alone, or worker `k` of `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seat {
    /// Worker number (0 alone).
    pub k: usize,
    /// Workers (1 alone).
    pub n: usize,
}

impl Seat {
    /// The only process.
    pub const ALONE: Seat = Seat { k: 0, n: 1 };
}

fn secs(value: f64, flag: &str) -> anyhow::Result<Duration> {
    ensure!(value > 0.0, "--{flag} must be positive");
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("--{flag} {value} is not a duration"))
}

/// Parses `-h`: comma-separated `host` or `host:port` items.
pub fn parse_hosts(text: &str, port: u16) -> anyhow::Result<Vec<Endpoint>> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim) {
        ensure!(!item.is_empty(), "-h {text:?}: empty host");
        let endpoint = match Endpoint::parse(item) {
            Ok(e) => e,
            Err(_) if !item.contains(':') || (item.starts_with('[') && item.ends_with(']')) => {
                Endpoint::new(item, port)
            }
            Err(e) => return Err(e),
        };
        out.push(endpoint);
    }
    Ok(out)
}

fn parse_range(text: &str) -> anyhow::Result<std::ops::Range<usize>> {
    let (a, b) = text
        .split_once("..")
        .with_context(|| format!("--worker-range {text:?} is not START..END"))?;
    Ok(a.parse()?..b.parse()?)
}

/// A random run tag (from the standard library's per-process hasher seed).
pub fn random_tag() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::Instant::now().elapsed().as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}

mod transport;
mod validate;

pub use transport::TransportArgs;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests;
