//! The `loadtest` command line: subcommands and their flags, and their translation into
//! library configs.
//!
//! It owns parsing and defaults only. It must never open a socket or start a runtime; that
//! is `main.rs` and `fanout`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::args::{ConnArgs, PubArgs, ScenarioArgs, StormArgs, SubArgs, TransportArgs};
use crate::endpoint;
use crate::fanout::FanoutConfig;
use crate::wire::MqttVersion;

/// meshmq load generator and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process; boxing buys nothing
pub enum Command {
    /// N publishers flood a topic pattern that N subscribers all subscribe to.
    Fanout(FanoutArgs),
    /// Prints a comparison table (medians per broker and scenario) from `--json` reports.
    Summarize(SummarizeArgs),
    /// Connects -c clients and holds them for --duration (emqtt-bench `conn`).
    Conn(ConnArgs),
    /// Subscribes -c clients to -t and counts, times and sequence-checks what arrives.
    Sub(SubArgs),
    /// Publishes marked messages (time, sequence number) from -c clients to -t.
    Pub(PubArgs),
    /// Connects -c clients, drops them all, reconnects; --cycles times.
    Storm(StormArgs),
    /// Runs a TOML file of conn/sub/pub/storm phases, in order or in parallel groups.
    Scenario(ScenarioArgs),
    /// A `#` subscriber joins a broker holding many retained messages while publishers run:
    /// replay time and completeness, publisher latency before and during it, broker RSS.
    RetainedReplay(crate::retained_replay::RetainedReplayArgs),
}

/// Flags of `loadtest fanout`.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Broker host; must be loopback (127.0.0.0/8, ::1, localhost) unless --allow-remote.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker MQTT port.
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// Publishers connect here instead, round-robin by index: `host:port,host:port`
    /// (each must be loopback unless --allow-remote).
    #[arg(long, value_name = "HOST:PORT,...")]
    pub pub_hosts: Option<String>,
    /// Subscribers connect here instead, round-robin by index: `host:port,host:port`
    /// (each must be loopback unless --allow-remote).
    #[arg(long, value_name = "HOST:PORT,...")]
    pub sub_hosts: Option<String>,
    /// Allow a broker that is not on this machine.
    #[arg(long)]
    pub allow_remote: bool,
    /// Publisher connections.
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// Subscriber connections.
    #[arg(long, default_value_t = 10)]
    pub subscribers: usize,
    /// Topic publisher i writes to (`%i` = publisher index).
    #[arg(long, default_value = "bench/%i")]
    pub topic: String,
    /// Filter subscriber i subscribes to (`%i` = subscriber index).
    #[arg(long, default_value = "bench/#")]
    pub filter: String,
    /// QoS of publishes and subscriptions (0 or 1).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// Payload bytes (at least 24: send timestamp, sequence number, run tag).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Publishing before the window opens, seconds.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// QoS 1: unacknowledged PUBLISHes allowed per publisher.
    #[arg(long, default_value_t = 32)]
    pub inflight: usize,
    /// Total PUBLISHes per second over all publishers (split evenly, staggered); without
    /// it publishers go as fast as the broker takes them. Deliveries are rate x subscribers.
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<f64>,
    /// Sample the latency of every Nth message of each publisher (a power of two); default
    /// 64, or 1 with --rate.
    #[arg(long, value_name = "N")]
    pub sample_every: Option<u64>,
    /// Broker process id(s), comma-separated, to report their peak RSS and CPU (summed).
    #[arg(long, value_delimiter = ',')]
    pub broker_pid: Vec<u32>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// MQTT protocol level: 4 (3.1.1) or 5.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(4..=5))]
    pub mqtt_version: u8,
    /// Tokio worker threads; 1 runs a current_thread runtime (leaves the most CPU to the
    /// broker on a shared box).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Label of the broker under test, carried into the report.
    #[arg(long)]
    pub broker_name: Option<String>,
    /// Label of the scenario, carried into the report.
    #[arg(long)]
    pub scenario: Option<String>,
    /// Seconds allowed for each connection set-up (TCP, TLS, WebSocket) with its CONNECT,
    /// and for each SUBSCRIBE.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// TLS (`--tls`, `--cafile`, `--sni`, ...) and WebSocket (`--ws`) for every client.
    #[command(flatten)]
    pub transport: TransportArgs,
}

/// Flags of `loadtest summarize`.
#[derive(Debug, Clone, Args)]
pub struct SummarizeArgs {
    /// Broker label the others are compared with (ratio column).
    #[arg(long, default_value = "mosquitto")]
    pub baseline: String,
    /// JSON reports written by `fanout --json`.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
}

fn secs(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("--{flag} {value} is not a duration"))
}

impl FanoutArgs {
    /// The library config for these flags (validated).
    pub fn to_config(&self) -> anyhow::Result<FanoutConfig> {
        let version =
            MqttVersion::from_level(self.mqtt_version).context("--mqtt-version must be 4 or 5")?;
        let hosts = |list: &Option<String>, flag: &str| match list {
            Some(text) => endpoint::parse_list(text).with_context(|| format!("--{flag}")),
            None => Ok(Vec::new()),
        };
        let default_every = if self.rate.is_some() { 1 } else { 64 };
        let cfg = FanoutConfig {
            host: self.host.clone(),
            port: self.port,
            pub_hosts: hosts(&self.pub_hosts, "pub-hosts")?,
            sub_hosts: hosts(&self.sub_hosts, "sub-hosts")?,
            allow_remote: self.allow_remote,
            publishers: self.publishers,
            subscribers: self.subscribers,
            topic: self.topic.clone(),
            filter: self.filter.clone(),
            qos: self.qos,
            size: self.size,
            inflight: self.inflight,
            rate: self.rate,
            sample_every: self.sample_every.unwrap_or(default_every),
            warmup: secs(self.warmup, "warmup")?,
            duration: secs(self.duration, "duration")?,
            version,
            broker_pids: self.broker_pid.clone(),
            connect_timeout: secs(self.connect_timeout, "connect-timeout")?,
            broker_name: self.broker_name.clone(),
            scenario: self.scenario.clone(),
            transport: self.transport.transport()?,
            ..FanoutConfig::new(self.host.clone(), self.port)
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied()))
    }

    #[test]
    fn fanout_flags_map_to_config() {
        let cli = parse(&[
            "fanout",
            "--port",
            "1999",
            "--qos",
            "1",
            "--mqtt-version",
            "5",
        ])
        .unwrap();
        let Command::Fanout(args) = cli.command else {
            panic!("not fanout")
        };
        let cfg = args.to_config().unwrap();
        assert_eq!((cfg.port, cfg.qos, cfg.version), (1999, 1, MqttVersion::V5));
        assert_eq!((cfg.publishers, cfg.subscribers, cfg.size), (10, 10, 100));
        assert_eq!(cfg.duration, Duration::from_secs(10));
    }

    #[test]
    fn refuses_remote_host_and_bad_values() {
        let Command::Fanout(args) = parse(&["fanout", "--host", "10.1.1.1"]).unwrap().command
        else {
            panic!("not fanout")
        };
        assert!(args.to_config().is_err());
        assert!(parse(&["fanout", "--qos", "2"]).is_err());
        assert!(parse(&["fanout", "--mqtt-version", "3"]).is_err());
    }

    fn config(args: &[&str]) -> anyhow::Result<FanoutConfig> {
        let all: Vec<&str> = std::iter::once("fanout")
            .chain(args.iter().copied())
            .collect();
        let Command::Fanout(args) = parse(&all)?.command else {
            panic!("not fanout")
        };
        args.to_config()
    }

    #[test]
    fn endpoint_lists_default_to_host_and_port() {
        let cfg = config(&["--port", "1999"]).unwrap();
        assert!(cfg.pub_hosts.is_empty() && cfg.sub_hosts.is_empty());
        assert_eq!(cfg.subscriber_hosts()[0].to_string(), "127.0.0.1:1999");
        assert!(cfg.broker_pids.is_empty());
        assert_eq!((cfg.rate, cfg.sample_every), (None, 64));
    }

    #[test]
    fn cross_node_flags_map_to_config() {
        let cfg = config(&[
            "--pub-hosts",
            "127.0.0.1:24201",
            "--sub-hosts",
            "127.0.0.1:24202,localhost:24203",
            "--rate",
            "2000",
            "--broker-pid",
            "11,12,13",
        ])
        .unwrap();
        let subs: Vec<String> = cfg.sub_hosts.iter().map(|e| e.to_string()).collect();
        assert_eq!(subs, ["127.0.0.1:24202", "localhost:24203"]);
        assert_eq!(cfg.publisher_hosts()[0].port, 24201);
        assert_eq!(cfg.rate, Some(2000.0));
        assert_eq!(
            cfg.sample_every, 1,
            "--rate samples every message by default"
        );
        assert_eq!(cfg.broker_pids, [11, 12, 13]);
        let cfg = config(&["--rate", "10", "--sample-every", "8"]).unwrap();
        assert_eq!(cfg.sample_every, 8);
    }

    #[test]
    fn cross_node_flags_are_checked() {
        for bad in [
            &["--sub-hosts", "127.0.0.1:1,10.0.0.1:2"][..],
            &["--pub-hosts", "example.com:1883"],
            &["--pub-hosts", "127.0.0.1"],
            &["--sub-hosts", ""],
            &["--rate", "0"],
            &["--sample-every", "3"],
        ] {
            assert!(config(bad).is_err(), "{bad:?}");
        }
        let remote = ["--sub-hosts", "10.0.0.1:2", "--allow-remote"];
        assert!(config(&remote).is_ok());
    }
}
