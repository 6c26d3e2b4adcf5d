//! `replicant-node ctl ...`: the operator's shell wrapper of the HTTP API of a running node
//! (as `emqx ctl rebalance ...`):
//!
//! ```text
//! replicant-node ctl [--api 127.0.0.1:18083] rebalance start --evacuation [--node N]
//!     [--wait-health-check S] [--conn-evict-rate N] [--sess-evict-rate N]
//!     [--redirect-to HOST:PORT] [--wait-takeover S] [--migrate-to N1,N2]
//! replicant-node ctl rebalance stop [--node N]
//! replicant-node ctl rebalance start [--node COORDINATOR] [--nodes N1,N2,N3]
//!     [--abs-conn-threshold 1000] [--rel-conn-threshold 1.1] [--abs-sess-threshold 1000]
//!     [--rel-sess-threshold 1.1] [rates and waits as above]
//! replicant-node ctl rebalance stop --rebalance [--node COORDINATOR]
//! replicant-node ctl rebalance node-status | global-status | availability
//! replicant-node ctl trace start NAME (--clientid C | --topic T | --ip-address A)
//!     [--duration SECS] [--payload-encode text|hex|hidden]
//! replicant-node ctl trace stop|delete|download NAME
//! replicant-node ctl trace list
//! replicant-node ctl data export [--file F]
//! replicant-node ctl data import F
//! ```
//!
//! Prints the JSON answer; exits non-zero on an error answer (the message is printed).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::evacuation::api::StartRequest;
use crate::evacuation::rebalance::RebalanceRequest;

/// `ctl`: talk to a running node's HTTP API.
#[derive(Debug, Clone, Args)]
pub struct Ctl {
    /// The node's HTTP address (`listeners.http_bind`).
    #[arg(long, default_value = "127.0.0.1:18083", value_name = "ADDR")]
    pub api: SocketAddr,
    /// The node's `listeners.api_key`, if it has one (sent as a Bearer token).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// What `ctl` does.
#[derive(Debug, Clone, Subcommand)]
pub enum CtlCommand {
    /// Evacuation (and, later, rebalance) of replicants.
    #[command(subcommand)]
    Rebalance(Rebalance),
    /// Online traces (`/api/v5/trace`) of the node behind `--api`.
    #[command(subcommand)]
    Trace(Trace),
    /// Backup of the cluster's data (`/api/v5/data/export` and `/import`).
    #[command(subcommand)]
    Data(Data),
}

/// `ctl data ...`
#[derive(Debug, Clone, Subcommand)]
pub enum Data {
    /// Export users, rules, bans, retained messages and settings (to stdout, or a file).
    Export {
        /// Write the document to this file instead of printing it.
        #[arg(long, value_name = "F")]
        file: Option<std::path::PathBuf>,
    },
    /// Import a document made by `data export` (upsert).
    Import {
        /// The document.
        file: std::path::PathBuf,
    },
}

/// `ctl trace ...`
#[derive(Debug, Clone, Subcommand)]
pub enum Trace {
    /// Start recording a client id, a topic filter or a peer address now.
    Start(TraceStart),
    /// Stop a trace (its file is kept).
    Stop {
        /// The trace's name.
        name: String,
    },
    /// Delete a trace and its file.
    Delete {
        /// The trace's name.
        name: String,
    },
    /// Every trace with its status and file size.
    List,
    /// Print the trace's file.
    Download {
        /// The trace's name.
        name: String,
    },
}

/// `ctl trace start`
#[derive(Debug, Clone, Args)]
#[group(id = "what", required = true, multiple = false, args = ["clientid", "topic", "ip_address"])]
pub struct TraceStart {
    /// The trace's name (letters, digits, `-`, `_`).
    pub name: String,
    /// Trace this client id.
    #[arg(long)]
    pub clientid: Option<String>,
    /// Trace this topic filter.
    #[arg(long)]
    pub topic: Option<String>,
    /// Trace clients from this address.
    #[arg(long)]
    pub ip_address: Option<String>,
    /// Seconds to record (default 600).
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub duration: u64,
    /// How payloads are written: text, hex or hidden (default).
    #[arg(long, value_name = "HOW")]
    pub payload_encode: Option<String>,
}

/// `ctl rebalance ...`
#[derive(Debug, Clone, Subcommand)]
pub enum Rebalance {
    /// Start an evacuation of a node (`--evacuation`), or a rebalance coordinated by it.
    Start(StartArgs),
    /// Stop the evacuation of a node (or, with `--rebalance`, the rebalance it coordinates).
    Stop {
        /// The node (default: the node behind `--api`).
        #[arg(long)]
        node: Option<String>,
        /// Stop the rebalance coordinated by the node instead.
        #[arg(long)]
        rebalance: bool,
    },
    /// This node's evacuation status.
    NodeStatus,
    /// Every node's evacuation status.
    GlobalStatus,
    /// The availability check (200, or 503 while evacuated).
    Availability,
}

/// `ctl rebalance start`
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Evacuate the node; without it, rebalance the cluster with the node coordinating.
    #[arg(long)]
    pub evacuation: bool,
    /// The node to evacuate, or the coordinator (default: the node behind `--api`).
    #[arg(long)]
    pub node: Option<String>,
    /// Rebalance: the replicants to balance (default: every running replicant).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "NODE,...",
        conflicts_with = "evacuation"
    )]
    pub nodes: Vec<String>,
    /// Rebalance: absolute connection threshold (default 1000).
    #[arg(long, value_name = "N", conflicts_with = "evacuation")]
    pub abs_conn_threshold: Option<u64>,
    /// Rebalance: relative connection threshold (default 1.1, > 1).
    #[arg(long, value_name = "X", conflicts_with = "evacuation")]
    pub rel_conn_threshold: Option<f64>,
    /// Rebalance: absolute session threshold (default 1000).
    #[arg(long, value_name = "N", conflicts_with = "evacuation")]
    pub abs_sess_threshold: Option<u64>,
    /// Rebalance: relative session threshold (default 1.1, > 1).
    #[arg(long, value_name = "X", conflicts_with = "evacuation")]
    pub rel_sess_threshold: Option<f64>,
    /// Seconds between the health check turning 503 and refusing CONNECTs (default 60).
    #[arg(long, value_name = "SECS")]
    pub wait_health_check: Option<u32>,
    /// Connections closed per second (default 500).
    #[arg(long, value_name = "N")]
    pub conn_evict_rate: Option<u32>,
    /// Disconnected sessions migrated per second (default 500).
    #[arg(long, value_name = "N")]
    pub sess_evict_rate: Option<u32>,
    /// Evacuation: MQTT 5 Server Reference sent to refused and evicted clients.
    #[arg(long, value_name = "HOST:PORT", requires = "evacuation")]
    pub redirect_to: Option<String>,
    /// Seconds to wait for evicted clients to take their sessions elsewhere (default 60).
    #[arg(long, value_name = "SECS")]
    pub wait_takeover: Option<u32>,
    /// Evacuation: nodes receiving the remaining sessions (default: every other running
    /// replicant).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "NODE,...",
        requires = "evacuation"
    )]
    pub migrate_to: Vec<String>,
}

/// Bound of one API call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of a data export or import (a large document takes a while).
const DATA_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs the command; the answer's JSON on success.
pub async fn run(ctl: Ctl) -> anyhow::Result<String> {
    let base = "/api/v5/load_rebalance";
    let to = (ctl.api, ctl.api_key.as_deref());
    match ctl.command {
        CtlCommand::Rebalance(Rebalance::Start(a)) if !a.evacuation => {
            let node = node_or_self(to, a.node).await?;
            let req = RebalanceRequest {
                nodes: Some(a.nodes).filter(|n| !n.is_empty()),
                conn_evict_rate: a.conn_evict_rate,
                sess_evict_rate: a.sess_evict_rate,
                wait_health_check: a.wait_health_check,
                wait_takeover: a.wait_takeover,
                abs_conn_threshold: a.abs_conn_threshold,
                rel_conn_threshold: a.rel_conn_threshold,
                abs_sess_threshold: a.abs_sess_threshold,
                rel_sess_threshold: a.rel_sess_threshold,
            };
            let body = serde_json::to_vec(&req)?;
            let path = format!("{base}/{node}/start");
            expect_ok(call(to, "POST", &path, body).await?)
        }
        CtlCommand::Rebalance(Rebalance::Start(a)) => {
            let node = node_or_self(to, a.node).await?;
            let req = StartRequest {
                wait_health_check: a.wait_health_check,
                conn_evict_rate: a.conn_evict_rate,
                sess_evict_rate: a.sess_evict_rate,
                redirect_to: a.redirect_to,
                wait_takeover: a.wait_takeover,
                migrate_to: Some(a.migrate_to).filter(|m| !m.is_empty()),
            };
            let body = serde_json::to_vec(&req)?;
            let path = format!("{base}/{node}/evacuation/start");
            expect_ok(call(to, "POST", &path, body).await?)
        }
        CtlCommand::Rebalance(Rebalance::Stop { node, rebalance }) => {
            let node = node_or_self(to, node).await?;
            let path = if rebalance {
                format!("{base}/{node}/stop")
            } else {
                format!("{base}/{node}/evacuation/stop")
            };
            expect_ok(call(to, "POST", &path, Vec::new()).await?)
        }
        CtlCommand::Rebalance(Rebalance::NodeStatus) => {
            expect_ok(call(to, "GET", &format!("{base}/status"), Vec::new()).await?)
        }
        CtlCommand::Rebalance(Rebalance::GlobalStatus) => {
            let path = format!("{base}/global_status");
            expect_ok(call(to, "GET", &path, Vec::new()).await?)
        }
        CtlCommand::Trace(t) => run_trace(to, t).await,
        CtlCommand::Data(d) => run_data(to, d).await,
        CtlCommand::Rebalance(Rebalance::Availability) => {
            let path = format!("{base}/availability_check");
            let (status, body) = call(to, "GET", &path, Vec::new()).await?;
            Ok(format!("{status} {body}"))
        }
    }
}

/// `ctl trace ...`: one call to the trace API.
async fn run_trace(to: (SocketAddr, Option<&str>), t: Trace) -> anyhow::Result<String> {
    let base = "/api/v5/trace";
    let (method, path, body) = match t {
        Trace::Start(a) => {
            let (kind, value) = match (a.clientid, a.topic, a.ip_address) {
                (Some(c), _, _) => ("clientid", c),
                (_, Some(t), _) => ("topic", t),
                (_, _, Some(ip)) => ("ip_address", ip),
                _ => bail!("give --clientid, --topic or --ip-address"),
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut req = serde_json::json!({
                "name": a.name, "type": kind, kind: value,
                "end_at": now.saturating_add(a.duration),
            });
            if let Some(enc) = a.payload_encode {
                req["payload_encode"] = enc.into();
            }
            ("POST", base.to_owned(), serde_json::to_vec(&req)?)
        }
        Trace::Stop { name } => ("PUT", format!("{base}/{name}/stop"), Vec::new()),
        Trace::Delete { name } => ("DELETE", format!("{base}/{name}"), Vec::new()),
        Trace::List => ("GET", base.to_owned(), Vec::new()),
        Trace::Download { name } => ("GET", format!("{base}/{name}/download"), Vec::new()),
    };
    expect_ok(call(to, method, &path, body).await?)
}

/// `ctl data ...`: the export (printed or written to a file) or an import.
async fn run_data(to: (SocketAddr, Option<&str>), d: Data) -> anyhow::Result<String> {
    match d {
        Data::Export { file } => {
            let path = "/api/v5/data/export";
            let body = expect_ok(call_within(to, "GET", path, Vec::new(), DATA_TIMEOUT).await?)?;
            let Some(file) = file else { return Ok(body) };
            std::fs::write(&file, body.as_bytes())
                .with_context(|| format!("writing {}", file.display()))?;
            Ok(format!(
                "exported {} bytes to {}",
                body.len(),
                file.display()
            ))
        }
        Data::Import { file } => {
            let doc =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let path = "/api/v5/data/import";
            expect_ok(call_within(to, "POST", path, doc, DATA_TIMEOUT).await?)
        }
    }
}

fn expect_ok((status, body): (u16, String)) -> anyhow::Result<String> {
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        bail!("HTTP {status}: {body}")
    }
}

/// `node`, or the name of the node behind `api` (`GET /api/v5/status`).
async fn node_or_self(
    to: (SocketAddr, Option<&str>),
    node: Option<String>,
) -> anyhow::Result<String> {
    if let Some(n) = node {
        return Ok(n);
    }
    let body = expect_ok(call(to, "GET", "/api/v5/status", Vec::new()).await?)?;
    let v: serde_json::Value = serde_json::from_str(&body).context("status answer")?;
    v["node"]
        .as_str()
        .map(str::to_owned)
        .context("no node name in /api/v5/status")
}

/// One HTTP/1.1 request to `api`; the status and the body.
async fn call(
    to: (SocketAddr, Option<&str>),
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<(u16, String)> {
    call_within(to, method, path, body, CALL_TIMEOUT).await
}

/// [`call`] with its own deadline.
async fn call_within(
    (api, key): (SocketAddr, Option<&str>),
    method: &str,
    path: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    tokio::time::timeout(timeout, async {
        let stream = tokio::net::TcpStream::connect(api)
            .await
            .with_context(|| format!("connecting to {api}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", api.to_string())
            .header("content-type", "application/json");
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        let resp = sender.send_request(req).await.context("HTTP request")?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    })
    .await
    .with_context(|| format!("no answer from {api} in {timeout:?}"))?
}
