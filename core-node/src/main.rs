//! `core-node`: runs one member of the Raft core group, or generates cluster certificates.
//! Thin: parses flags, builds a [`CoreConfig`], starts [`CoreNode`] and its HTTP, waits for
//! a signal. A start-up failure is one `error: <what> (<flag> / <variable>): <cause>` line
//! on stderr and exit code 1 (a backtrace only with `RUST_BACKTRACE`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::builder::BoolishValueParser;
use clap::{Parser, Subcommand};
use core_node::http::HttpConfig;
use core_node::http::auth::{ApiKey, SecretArg};
use core_node::node::{CoreConfig, CoreError, CoreNode, RaftTimings, batcher::GroupCommit};
use meshmq_shared::config::{LogConfig, LogFormat};
use meshmq_shared::quic::certs::{self, CertPaths};
use meshmq_shared::quic::tls::{self, Identity};
use meshmq_shared::startup;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "meshmq core node: a voter of the Raft group holding the cluster tables"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Writes a dev CA and a certificate/key per node name into DIR (reusing DIR's CA).
    GenCerts {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Node names, comma separated (cores are `core-<id>`; replicants any name).
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Raft node id (>= 1).
    #[arg(long, env = "MESHMQ_CORE__NODE_ID", default_value_t = 1)]
    node_id: u64,
    /// Core QUIC bind address.
    #[arg(long, env = "MESHMQ_CORE__BIND", default_value = "127.0.0.1:4370")]
    core_bind: SocketAddr,
    /// Address other nodes dial (default: the bind address).
    #[arg(long, env = "MESHMQ_CORE__ADVERTISE")]
    advertise: Option<String>,
    /// Admin HTTP bind address (/metrics, /health, /api/v5/cluster). Off loopback it needs
    /// --api-key(-file) or --http-tls.
    #[arg(
        long,
        env = "MESHMQ_CORE__HTTP_BIND",
        default_value = "127.0.0.1:18084"
    )]
    http_bind: SocketAddr,
    /// Data directory (redb store).
    #[arg(long, env = "MESHMQ_CORE__DATA_DIR", default_value = "data/core")]
    data_dir: PathBuf,
    /// Voters of a new group, `id=addr,id=addr,...`; default: this node alone.
    #[arg(long, env = "MESHMQ_CORE__INITIAL_MEMBERS", value_delimiter = ',')]
    initial_members: Vec<String>,
    /// Directory with `ca.pem` and `core-<id>.pem`/`.key` (from `gen-certs`); default
    /// `<data-dir>/certs`, generated on first start (single-node development only).
    #[arg(long, env = "MESHMQ_CORE__CERTS_DIR")]
    certs_dir: Option<PathBuf>,
    /// Key the cluster API (and /metrics with --metrics-auth) accepts as `Authorization:
    /// Bearer <key>`: printable ASCII, at least 16 characters. A flag shows in `ps`: prefer
    /// the variable or --api-key-file.
    #[arg(
        long,
        env = "MESHMQ_CORE__API_KEY",
        hide_env_values = true,
        conflicts_with = "api_key_file"
    )]
    api_key: Option<SecretArg>,
    /// File holding the API key (surrounding whitespace trimmed).
    #[arg(long, env = "MESHMQ_CORE__API_KEY_FILE")]
    api_key_file: Option<PathBuf>,
    /// Ask for a credential on /metrics too (by default it is open to scrapers).
    #[arg(long, env = "MESHMQ_CORE__METRICS_AUTH", value_parser = BoolishValueParser::new())]
    metrics_auth: bool,
    /// Serve the admin HTTP over TLS with this node's certificate; a client certificate from
    /// the cluster CA is then accepted instead of the API key.
    #[arg(long, env = "MESHMQ_CORE__HTTP_TLS", value_parser = BoolishValueParser::new())]
    http_tls: bool,
    /// Build a Raft snapshot every this many log entries (>= 1); the log before it is then
    /// purged, except the last --keep-after-snapshot entries.
    #[arg(
        long,
        env = "MESHMQ_CORE__SNAPSHOT_EVERY",
        default_value_t = RaftTimings::default().snapshot_every
    )]
    snapshot_every: u64,
    /// Log entries kept behind the last snapshot, so that a follower a little behind needs
    /// no snapshot.
    #[arg(
        long,
        env = "MESHMQ_CORE__KEEP_AFTER_SNAPSHOT",
        default_value_t = RaftTimings::default().keep_after_snapshot
    )]
    keep_after_snapshot: u64,
    /// Log line format: `text` or `json` (one object per line).
    #[arg(long, env = "MESHMQ_LOG__FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Level of meshmq's own log lines (trace, debug, info, warn, error, off); `RUST_LOG`,
    /// when set, replaces it and --log-directives.
    #[arg(long, env = "MESHMQ_LOG__LEVEL", default_value = "info")]
    log_level: String,
    /// Per-module log levels in `RUST_LOG` syntax (`core_node::raft=debug,openraft=info`).
    #[arg(long, env = "MESHMQ_LOG__DIRECTIVES", default_value = "")]
    log_directives: String,
}

fn parse_members(raw: &[String]) -> anyhow::Result<Vec<(u64, String)>> {
    raw.iter()
        .filter(|s| !s.is_empty())
        .map(|m| {
            let (id, addr) = m
                .split_once('=')
                .with_context(|| format!("initial member {m:?} is not id=addr"))?;
            let id: u64 = id.parse().with_context(|| format!("node id in {m:?}"))?;
            if id == 0 {
                bail!("node ids start at 1 ({m:?})");
            }
            Ok((id, addr.to_owned()))
        })
        .collect()
}

/// What names each flag in an error: the flag and its environment variable.
const CERTS_DIR: &str = "--certs-dir / MESHMQ_CORE__CERTS_DIR";
const CORE_BIND: &str = "--core-bind / MESHMQ_CORE__BIND";
const DATA_DIR: &str = "--data-dir / MESHMQ_CORE__DATA_DIR";
const HTTP_BIND: &str = "--http-bind / MESHMQ_CORE__HTTP_BIND";
const API_KEY: &str = "--api-key / MESHMQ_CORE__API_KEY";
const API_KEY_FILE: &str = "--api-key-file / MESHMQ_CORE__API_KEY_FILE";
const HTTP_TLS: &str = "--http-tls / MESHMQ_CORE__HTTP_TLS";

/// The admin HTTP settings from the flags: the key (checked, never echoed), TLS from this
/// node's certificates, and the refusal of an exposed listener without credentials.
fn http_config(a: &RunArgs, certs: &CertPaths) -> anyhow::Result<HttpConfig> {
    let api_key = match (&a.api_key, &a.api_key_file) {
        (Some(key), _) => Some(
            ApiKey::new(&key.0).map_err(|e| anyhow::anyhow!("invalid API key ({API_KEY}): {e}"))?,
        ),
        (None, Some(file)) => {
            Some(ApiKey::from_file(file).map_err(|e| {
                anyhow::anyhow!("cannot use the API key file ({API_KEY_FILE}): {e}")
            })?)
        }
        (None, None) => None,
    };
    let tls = if a.http_tls {
        let config = Identity::load(certs)
            .and_then(|id| tls::https_server_crypto(&id))
            .map_err(|e| {
                anyhow::anyhow!("cannot set up the admin HTTPS ({HTTP_TLS}, {CERTS_DIR}): {e}")
            })?;
        Some(Arc::new(config))
    } else {
        None
    };
    let cfg = HttpConfig {
        bind: a.http_bind,
        api_key,
        metrics_auth: a.metrics_auth,
        tls,
    };
    cfg.check_exposure().map_err(anyhow::Error::msg)?;
    Ok(cfg)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.run) {
        return startup::report_failure(&*e, &e);
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => startup::report_failure(&*e, &e),
    }
}

/// Installs the logger from the `--log-*` flags (`RUST_LOG` wins over level and
/// directives), naming this core on every line.
fn init_logging(a: &RunArgs) -> anyhow::Result<()> {
    let config = LogConfig {
        format: if a.log_format == "json" {
            LogFormat::Json
        } else {
            LogFormat::Text
        },
        level: a.log_level.clone(),
        directives: a.log_directives.clone(),
    };
    let rust_log = std::env::var("RUST_LOG").ok();
    core_node::logging::init(&config, &format!("core-{}", a.node_id), rust_log.as_deref())
        .map_err(|e| anyhow::anyhow!("cannot set up logging (--log-level / MESHMQ_LOG__LEVEL, --log-directives / MESHMQ_LOG__DIRECTIVES, RUST_LOG): {e}"))
}

/// A core start-up failure as one line naming the flag behind it.
fn start_failed(e: CoreError) -> anyhow::Error {
    match e {
        CoreError::Store { dir, source } => anyhow::anyhow!(
            "cannot open the store in {} ({DATA_DIR}): {source}",
            dir.display()
        ),
        CoreError::Certificates(why) => {
            anyhow::anyhow!("cannot load the core's certificates ({CERTS_DIR}): {why}")
        }
        CoreError::Bind { addr, error } => {
            anyhow::anyhow!("cannot bind the core endpoint {addr} ({CORE_BIND}): {error}")
        }
        other => anyhow::Error::new(other).context("cannot start the core"),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::GenCerts { out, nodes }) = cli.command {
        certs::generate(&out, &nodes)
            .with_context(|| format!("writing certificates to {}", out.display()))?;
        println!(
            "certificates for {} written to {}",
            nodes.join(", "),
            out.display()
        );
        return Ok(());
    }
    let a = cli.run;
    if a.node_id == 0 {
        bail!("invalid --node-id / MESHMQ_CORE__NODE_ID: must be >= 1");
    }
    if !(1..=1 << 40).contains(&a.snapshot_every) {
        bail!("invalid --snapshot-every / MESHMQ_CORE__SNAPSHOT_EVERY: must be between 1 and 2^40");
    }
    if a.keep_after_snapshot > 1 << 40 {
        bail!(
            "invalid --keep-after-snapshot / MESHMQ_CORE__KEEP_AFTER_SNAPSHOT: must be at most 2^40"
        );
    }
    let initial_members = parse_members(&a.initial_members)?;
    let name = format!("core-{}", a.node_id);
    let certs_dir = a
        .certs_dir
        .clone()
        .unwrap_or_else(|| a.data_dir.join("certs"));
    let certs = certs::ensure_dev(&certs_dir, &name).with_context(|| {
        format!(
            "cannot prepare the certificates of {name} in {} ({CERTS_DIR})",
            certs_dir.display()
        )
    })?;
    let http_cfg = http_config(&a, &certs)?;
    let cfg = CoreConfig {
        node_id: a.node_id,
        core_bind: a.core_bind,
        advertise: a.advertise,
        data_dir: a.data_dir,
        initial_members,
        certs,
        timings: RaftTimings {
            snapshot_every: a.snapshot_every,
            keep_after_snapshot: a.keep_after_snapshot,
            ..RaftTimings::default()
        },
        group_commit: GroupCommit::default(),
        follow: core_node::node::follow::FollowLimits::default(),
    };
    let _ = core_node::prometheus::prometheus_handle();
    let core = CoreNode::start(cfg).await.map_err(start_failed)?;
    let http = core_node::http::serve(core.clone(), http_cfg)
        .await
        .with_context(|| {
            format!(
                "cannot bind the HTTP listener {} ({HTTP_BIND})",
                a.http_bind
            )
        })?;
    println!(
        "{}",
        serde_json::json!({"node_id": core.id, "core": core.addr, "http": http.to_string()})
    );
    shutdown_signal().await;
    core.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
