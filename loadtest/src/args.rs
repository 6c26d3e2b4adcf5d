//! The flags of `conn`, `sub`, `pub`, `storm` and `scenario`, spelled like emqtt-bench
//! (`-h` hosts, `-p`, `-V`, `-c`, `-i`, `-t`, `-q`, `-s`, `-I`, `-L`, `-F`, `-k`, `-C`,
//! `-x`, `-u`/`-P`, ...), and their validation into a [`Plan`] for this process (the whole
//! run, or a worker's share of it).
//!
//! `-h` is the host list here, so these subcommands have `--help` only. Parsing and checks
//! only: it never opens a socket. Every run it accepts is bounded: a duration or a count
//! is required, and non-loopback hosts need `--allow-remote`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::{ArgAction, Args};

use crate::endpoint::{Endpoint, check_host};
use crate::plan::{Job, Plan, PubSpec, StormSpec, SubSpec, share};
use crate::session::ClientOpts;
use crate::transport::Transport;
use crate::transport::tls::{TlsClient, TlsFiles};
use crate::wire::{MARK_LEN, MqttVersion};

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
    /// Connect over TLS.
    #[arg(long)]
    pub tls: bool,
    /// CA certificates (PEM) to trust with --tls (default: the system bundle).
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// Client certificate (PEM) with --tls.
    #[arg(long, value_name = "FILE")]
    pub certfile: Option<PathBuf>,
    /// Client private key (PEM) with --tls.
    #[arg(long, value_name = "FILE")]
    pub keyfile: Option<PathBuf>,
    /// With --tls, accept any server certificate.
    #[arg(long)]
    pub insecure: bool,
    /// MQTT over WebSocket (wss with --tls).
    #[arg(long)]
    pub ws: bool,
    /// WebSocket path.
    #[arg(long, default_value = "/mqtt", value_name = "PATH")]
    pub ws_path: String,
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

impl CommonArgs {
    /// Where this process stands (`--worker-of`, `--workers`).
    pub fn seat(&self) -> anyhow::Result<Seat> {
        ensure!(self.workers >= 1, "--workers must be at least 1");
        match self.worker_of {
            Some(k) => {
                ensure!(
                    k < self.workers,
                    "--worker-of {k} with --workers {}",
                    self.workers
                );
                Ok(Seat { k, n: self.workers })
            }
            None => Ok(Seat::ALONE),
        }
    }

    /// The client options (TLS files are read here).
    pub fn client_opts(&self) -> anyhow::Result<ClientOpts> {
        let version = MqttVersion::from_level(self.mqtt_version).context("-V must be 3, 4 or 5")?;
        if !version.is_v5() {
            ensure!(
                self.session_expiry.is_none(),
                "-x (session expiry) needs -V 5"
            );
            ensure!(
                self.password.is_none() || self.username.is_some(),
                "-P needs -u before MQTT 5"
            );
        }
        let tls_flags = self.cafile.is_some()
            || self.certfile.is_some()
            || self.keyfile.is_some()
            || self.insecure;
        ensure!(
            self.tls || !tls_flags,
            "--cafile/--certfile/--keyfile/--insecure need --tls"
        );
        let tls = if self.tls {
            Some(TlsClient::new(&TlsFiles {
                cafile: self.cafile.clone(),
                certfile: self.certfile.clone(),
                keyfile: self.keyfile.clone(),
                insecure: self.insecure,
            })?)
        } else {
            None
        };
        ensure!(self.ws_path.starts_with('/'), "--ws-path must start with /");
        Ok(ClientOpts {
            version,
            keep_alive: self.keepalive,
            clean_start: self.clean,
            session_expiry: self.session_expiry,
            username: self.username.clone(),
            password: self.password.clone(),
            transport: Transport {
                tls,
                ws_path: self.ws.then(|| self.ws_path.clone()),
            },
            timeout: secs(self.timeout, "timeout")?,
            allow_remote: self.allow_remote,
            follow_redirects: !self.no_redirect,
        })
    }

    /// The plan of `job` for this process (its seat's share of the clients and rates).
    pub fn plan(&self, job: Job) -> anyhow::Result<Plan> {
        ensure!(self.count > 0, "-c must be at least 1");
        let seat = self.seat()?;
        ensure!(
            self.workers <= self.count || self.worker_of.is_some(),
            "--workers {} is more than -c {}",
            self.workers,
            self.count
        );
        let endpoints = parse_hosts(&self.host, self.port)?;
        for e in &endpoints {
            check_host(&e.host, self.allow_remote)?;
        }
        let opts = self.client_opts()?;
        if opts.version == MqttVersion::V31 {
            let longest = format!("{}_{}_{}", self.prefix, job.name(), self.count - 1);
            ensure!(
                longest.len() <= 23,
                "MQTT 3.1 client ids are at most 23 bytes ({longest:?}): shorten --prefix"
            );
        }
        let duration = self.duration.map(|d| secs(d, "duration")).transpose()?;
        let rate = match self.rate {
            Some(r) => {
                ensure!(r.is_finite() && r > 0.0, "--rate must be positive");
                Some(r)
            }
            None if self.interval == 0 => None,
            None => Some(1000.0 / self.interval as f64),
        };
        let clients = match (&self.worker_range, seat) {
            (Some(text), _) => parse_range(text)?,
            (None, seat) => share(self.count, seat.k, seat.n),
        };
        ensure!(
            clients.end <= self.count && clients.start <= clients.end,
            "--worker-range outside -c"
        );
        let job = match job {
            Job::Storm(mut spec) => {
                spec.drop_rate = spec.drop_rate.map(|r| r / seat.n as f64);
                Job::Storm(spec)
            }
            other => other,
        };
        Ok(Plan {
            job,
            endpoints,
            opts,
            clients,
            total_clients: self.count,
            connect_rate: rate.map(|r| r / seat.n as f64),
            prefix: self.prefix.clone(),
            duration,
            run_tag: self.run_tag.unwrap_or_else(random_tag),
        })
    }
}

impl ConnArgs {
    /// The plan of this `conn`.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        ensure!(
            self.common.duration.is_some(),
            "conn needs --duration (a run must end by itself)"
        );
        self.common.plan(Job::Conn)
    }
}

impl SubArgs {
    /// The plan of this `sub`.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        ensure!(
            self.common.duration.is_some() || self.limit.is_some(),
            "sub needs --duration or -L (a run must end by itself)"
        );
        ensure!(self.limit != Some(0), "-L must be at least 1");
        self.common.plan(Job::Sub(SubSpec {
            topic: self.topic.clone(),
            qos: self.qos,
            limit: self.limit,
        }))
    }
}

impl PubArgs {
    /// The plan of this `pub`.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        ensure!(
            self.common.duration.is_some() || self.limit.is_some(),
            "pub needs --duration or -L (a run must end by itself)"
        );
        ensure!(self.limit != Some(0), "-L must be at least 1");
        ensure!(
            self.size >= MARK_LEN,
            "-s must be at least {MARK_LEN} (the payload mark)"
        );
        ensure!(self.inflight >= 1, "-F must be at least 1");
        ensure!(
            !self.topic.contains(['#', '+']),
            "-t {:?}: a topic name has no wildcards",
            self.topic
        );
        self.common.plan(Job::Pub(PubSpec {
            topic: self.topic.clone(),
            qos: self.qos,
            size: self.size,
            interval: Duration::from_millis(self.interval_of_msg),
            limit: self.limit,
            inflight: self.inflight,
        }))
    }
}

impl StormArgs {
    /// The plan of this `storm`.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        if self.common.duration.is_some() {
            bail!("storm is bounded by --cycles; --duration does not apply");
        }
        if let Some(r) = self.drop_rate {
            ensure!(r.is_finite() && r > 0.0, "--drop-rate must be positive");
        }
        ensure!(
            self.hold >= 0.0 && self.hold.is_finite(),
            "--hold must be >= 0"
        );
        self.common.plan(Job::Storm(StormSpec {
            cycles: self.cycles,
            drop_rate: self.drop_rate,
            hold: Duration::from_secs_f64(self.hold),
            retries: self.retries,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied()))
            .map(|c| c.command)
    }

    fn plan(args: &[&str]) -> anyhow::Result<Plan> {
        match parse(args)? {
            Command::Conn(a) => a.plan(),
            Command::Sub(a) => a.plan(),
            Command::Pub(a) => a.plan(),
            Command::Storm(a) => a.plan(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn emqtt_bench_spelling() {
        let p = plan(&[
            "pub",
            "-h",
            "127.0.0.1,localhost:1999",
            "-p",
            "1884",
            "-V",
            "4",
            "-c",
            "7",
            "-i",
            "0",
            "-t",
            "t/%i",
            "-q",
            "2",
            "-s",
            "64",
            "-I",
            "5",
            "-L",
            "10",
            "-F",
            "4",
            "-k",
            "30",
            "-C",
            "false",
            "-u",
            "me",
            "-P",
            "pw",
            "--prefix",
            "x",
        ])
        .unwrap();
        let hosts: Vec<String> = p.endpoints.iter().map(|e| e.to_string()).collect();
        assert_eq!(hosts, ["127.0.0.1:1884", "localhost:1999"]);
        assert_eq!(p.opts.version, MqttVersion::V311);
        assert_eq!((p.clients.clone(), p.connect_rate), (0..7, None));
        assert!(!p.opts.clean_start);
        assert_eq!(p.opts.keep_alive, 30);
        assert_eq!(p.client_id(3), "x_pub_3");
        let Job::Pub(spec) = &p.job else { panic!() };
        assert_eq!(
            (spec.qos, spec.size, spec.limit, spec.inflight),
            (2, 64, Some(10), 4)
        );
        assert_eq!(spec.interval, Duration::from_millis(5));
        let p = plan(&["conn", "--duration", "1", "-c", "10", "--rate", "100", "-C"]).unwrap();
        assert!(p.opts.clean_start);
        assert_eq!(p.connect_rate, Some(100.0));
        let p = plan(&["sub", "-t", "a/#", "-L", "5", "-x", "60", "-i", "20"]).unwrap();
        assert_eq!(p.opts.session_expiry, Some(60));
        assert_eq!(p.connect_rate, Some(50.0));
    }

    #[test]
    fn unbounded_or_remote_runs_are_refused() {
        for bad in [
            &["conn", "-c", "1"][..],
            &["sub", "-t", "a"],
            &["pub", "-t", "a"],
            &["pub", "-t", "a/#", "-L", "1"],
            &["pub", "-t", "a", "-L", "1", "-s", "31"],
            &["conn", "--duration", "1", "-h", "10.0.0.1"],
            &["conn", "--duration", "1", "-h", "127.0.0.1,example.com"],
            &["conn", "--duration", "1", "-V", "4", "-x", "5"],
            &["conn", "--duration", "1", "--cafile", "/x"],
            &["conn", "--duration", "1", "-c", "2", "--workers", "3"],
            &["storm", "--cycles", "1", "--duration", "3"],
        ] {
            assert!(plan(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&["storm"]).is_err(), "--cycles is required");
        assert!(
            plan(&[
                "conn",
                "--duration",
                "1",
                "-h",
                "10.0.0.1",
                "--allow-remote"
            ])
            .is_ok()
        );
    }

    #[test]
    fn help_is_long_only_and_workers_split() {
        let e = parse(&["conn", "--help"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        let p = plan(&[
            "conn",
            "--duration",
            "1",
            "-c",
            "10",
            "--rate",
            "100",
            "--workers",
            "2",
            "--worker-of",
            "1",
        ])
        .unwrap();
        assert_eq!((p.clients.clone(), p.connect_rate), (5..10, Some(50.0)));
        let p = plan(&[
            "storm",
            "--cycles",
            "2",
            "-c",
            "10",
            "--drop-rate",
            "10",
            "--workers",
            "2",
            "--worker-of",
            "0",
            "--worker-range",
            "0..4",
        ])
        .unwrap();
        assert_eq!(p.clients, 0..4);
        let Job::Storm(spec) = p.job else { panic!() };
        assert_eq!(spec.drop_rate, Some(5.0));
    }
}
