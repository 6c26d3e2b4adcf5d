//! `replicant-node ctl ...`: the operator's shell wrapper of the HTTP API of a running node,
//! with `emqx ctl`'s command names where EMQX has the command (docs/ctl.md):
//!
//! ```text
//! replicant-node ctl [--api 127.0.0.1:18083] [--api-key KEY:SECRET | --api-key-file FILE] ...
//!   clients list [--node N] [--username U] [--like-clientid TEXT] [--page P] [--limit L]
//!   clients show|kick CLIENTID
//!   subscriptions list [--clientid C] [--topic T] [--page P] [--limit L]
//!   subscriptions add CLIENTID TOPIC [--qos Q]  |  subscriptions del CLIENTID TOPIC
//!   publish TOPIC PAYLOAD [--qos Q] [--retain]
//!   retained list [--topic FILTER] [--page P] [--limit L]  |  retained show|delete TOPIC
//!   banned list  |  banned add (--clientid|--username|--peerhost) VALUE [--duration S] [--reason R]
//!   banned del AS WHO
//!   config get [ROOT]  |  config set KEY VALUE
//!   stats|metrics [--aggregate] [--node N]
//!   data export [--file F]  |  data import F
//!   rebalance ...  |  trace ...   (see rebalance.rs, trace.rs)
//! ```
//!
//! Each command is one or two calls of the REST API (`/api/v5/...`); path segments and
//! query values are percent-encoded, so client ids and topics may hold `/`, `+`, `#` or
//! spaces. The API key (`--api-key`, `--api-key-file` or `MESHMQ_CTL_API_KEY`: an API key
//! `key:secret`, or the static `listeners.api_key`) is sent as a Bearer token and never
//! printed. Prints the answer (JSON, `ok` for an empty one); exits non-zero on an error
//! answer, printing the server's status and message.
//!
//! Owns the command line of `ctl` and the HTTP plumbing; every call has a timeout
//! ([`CALL_TIMEOUT`]) and every answer is bounded ([`MAX_ANSWER`]).

mod banned;
mod clients;
mod config;
pub mod data;
mod messages;
mod rebalance;
mod trace;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;

pub use banned::Banned;
pub use clients::{Clients, Subscriptions};
pub use config::{ConfigCmd, Figures};
pub use messages::{Publish, Retained};
pub use rebalance::{Rebalance, StartArgs};
pub use trace::{Trace, TraceStart};

/// `ctl`: talk to a running node's HTTP API.
#[derive(Clone, Args)]
pub struct Ctl {
    /// The node's HTTP address (`listeners.http_bind`).
    #[arg(long, default_value = "127.0.0.1:18083", value_name = "ADDR")]
    pub api: SocketAddr,
    /// The API key, `key:secret` (or the node's static `listeners.api_key`), sent as a
    /// Bearer token. A command line is visible in `ps`: prefer the environment or a file.
    #[arg(
        long,
        value_name = "KEY:SECRET",
        env = "MESHMQ_CTL_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// A file whose first line is the API key (`key:secret`), such as the standalone
    /// node's `<data_dir>/default_api_key.conf`; it wins over `--api-key` and the
    /// environment.
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

impl std::fmt::Debug for Ctl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctl")
            .field("api", &self.api)
            .field("api_key", &self.api_key.as_ref().map(|_| "******"))
            .field("api_key_file", &self.api_key_file)
            .field("command", &self.command)
            .finish()
    }
}

/// What `ctl` does.
#[derive(Debug, Clone, Subcommand)]
pub enum CtlCommand {
    /// Evacuation and rebalance of replicants (`/api/v5/load_rebalance`).
    #[command(subcommand)]
    Rebalance(Rebalance),
    /// Online traces (`/api/v5/trace`) of the node behind `--api`.
    #[command(subcommand)]
    Trace(Trace),
    /// MQTT clients of every replicant: list, show, kick.
    #[command(subcommand)]
    Clients(Clients),
    /// Subscriptions: list, add or remove on a client's behalf.
    #[command(subcommand)]
    Subscriptions(Subscriptions),
    /// Publish one message.
    Publish(Publish),
    /// Retained messages: list, show, delete.
    #[command(subcommand)]
    Retained(Retained),
    /// Bans: list, add, delete.
    #[command(subcommand)]
    Banned(Banned),
    /// The node's configuration: get, set a run-time key.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// EMQX's stats (connections, sessions, subscriptions, ...) of every replicant.
    Stats(Figures),
    /// EMQX's metrics (messages, packets, bytes, ...) of every replicant.
    Metrics(Figures),
    /// Backup of the cluster's data (`/api/v5/data/export` and `/import`).
    #[command(subcommand)]
    Data(data::Data),
}

/// Bound of one API call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read (a trace download is the largest one).
const MAX_ANSWER: usize = 64 * 1024 * 1024;
/// Longest API key file read.
const MAX_KEY_FILE: u64 = 4096;

/// Where calls go: the node's address and the key, if any.
#[derive(Clone, Copy)]
pub(crate) struct To<'a> {
    api: SocketAddr,
    key: Option<&'a str>,
}

/// Runs the command; what to print on success.
pub async fn run(ctl: Ctl) -> anyhow::Result<String> {
    let key = match (&ctl.api_key, &ctl.api_key_file) {
        (_, Some(file)) => Some(read_key_file(file)?),
        (Some(k), None) => Some(k.trim().to_owned()),
        (None, None) => None,
    };
    let to = To {
        api: ctl.api,
        key: key.as_deref().filter(|k| !k.is_empty()),
    };
    match ctl.command {
        CtlCommand::Rebalance(r) => rebalance::run(to, r).await,
        CtlCommand::Trace(t) => trace::run(to, t).await,
        CtlCommand::Clients(c) => clients::run_clients(to, c).await,
        CtlCommand::Subscriptions(s) => clients::run_subscriptions(to, s).await,
        CtlCommand::Publish(p) => messages::publish(to, p).await,
        CtlCommand::Retained(r) => messages::run_retained(to, r).await,
        CtlCommand::Banned(b) => banned::run(to, b).await,
        CtlCommand::Config(c) => config::run(to, c).await,
        CtlCommand::Stats(f) => config::figures(to, "stats", f).await,
        CtlCommand::Metrics(f) => config::figures(to, "metrics", f).await,
        CtlCommand::Data(d) => data::run(to, d).await,
    }
}

/// The first line of `file`, trimmed (the file's content is never printed).
fn read_key_file(file: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_KEY_FILE).read_to_string(&mut text))
        .with_context(|| format!("reading the API key file {}", file.display()))?;
    let key = text.lines().next().unwrap_or("").trim();
    if key.is_empty() {
        bail!("the API key file {} is empty", file.display());
    }
    Ok(key.to_owned())
}

/// A 2xx answer's body (`ok` when empty); an error naming the status and the server's
/// message otherwise.
pub(crate) fn expect_ok((status, body): (u16, String)) -> anyhow::Result<String> {
    if (200..300).contains(&status) {
        Ok(if body.is_empty() { "ok".into() } else { body })
    } else {
        bail!("HTTP {status}: {body}")
    }
}

/// `GET path`, expecting 2xx.
pub(crate) async fn get(to: To<'_>, path: &str) -> anyhow::Result<String> {
    expect_ok(call(to, "GET", path, Vec::new()).await?)
}

/// `method path` with `body` as JSON, expecting 2xx.
pub(crate) async fn send_json(
    to: To<'_>,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<String> {
    expect_ok(call(to, method, path, serde_json::to_vec(body)?).await?)
}

/// Percent-encodes a path segment or a query value (the API's own encoder).
pub(crate) use crate::api::nodes::encode;

/// `path` with the given query pairs (those that are `Some`), values percent-encoded.
pub(crate) fn with_query(path: &str, pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}

/// `node`, or the name of the node behind `api` (`GET /api/v5/status`).
pub(crate) async fn node_or_self(to: To<'_>, node: Option<String>) -> anyhow::Result<String> {
    if let Some(n) = node {
        return Ok(n);
    }
    let body = get(to, "/api/v5/status").await?;
    let v: serde_json::Value = serde_json::from_str(&body).context("status answer")?;
    v["node"]
        .as_str()
        .map(str::to_owned)
        .context("no node name in /api/v5/status")
}

/// One HTTP/1.1 request to the node; the status and the body.
pub(crate) async fn call(
    to: To<'_>,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<(u16, String)> {
    call_within(to, (method, path, body), CALL_TIMEOUT, MAX_ANSWER).await
}

/// [`call`] with its own deadline and answer bound.
pub(crate) async fn call_within(
    to: To<'_>,
    (method, path, body): (&str, &str, Vec<u8>),
    timeout: Duration,
    max_answer: usize,
) -> anyhow::Result<(u16, String)> {
    let api = to.api;
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
        if let Some(key) = to.key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        let resp = sender.send_request(req).await.context("HTTP request")?;
        let status = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), max_answer)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    })
    .await
    .with_context(|| format!("no answer from {api} in {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_queries_are_percent_encoded() {
        assert_eq!(encode("a b/+#"), "a%20b%2F%2B%23");
        let p = with_query(
            "/x",
            &[
                ("a", Some("1/2".into())),
                ("b", None),
                ("c", Some("é".into())),
            ],
        );
        assert_eq!(p, "/x?a=1%2F2&c=%C3%A9");
        assert_eq!(with_query("/x", &[("b", None)]), "/x");
    }

    #[test]
    fn the_key_is_not_in_debug_output() {
        let ctl = Ctl {
            api: "127.0.0.1:1".parse().expect("addr"),
            api_key: Some("id:very-secret".into()),
            api_key_file: None,
            command: CtlCommand::Stats(Figures::default()),
        };
        let text = format!("{ctl:?}");
        assert!(
            !text.contains("very-secret") && text.contains("******"),
            "{text}"
        );
    }
}
