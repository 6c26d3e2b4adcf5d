//! `ctl trace ...`: online traces of the node behind `--api`, over `/api/v5/trace`:
//!
//! ```text
//! replicant-node ctl trace start NAME (--clientid C | --topic T | --ip-address A)
//!     [--duration SECS] [--payload-encode text|hex|hidden]
//! replicant-node ctl trace stop|delete|download NAME
//! replicant-node ctl trace list
//! ```
//!
//! Owns these commands' flags; the calls go through [`super::call`].

use anyhow::bail;
use clap::{Args, Subcommand};

use super::{To, call, encode, expect_ok};

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
#[group(skip)]
#[command(group = clap::ArgGroup::new("what").required(true).multiple(false).args(["clientid", "topic", "ip_address"]))]
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

/// `ctl trace ...`: one call to the trace API.
pub(super) async fn run(to: To<'_>, t: Trace) -> anyhow::Result<String> {
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
        Trace::Stop { name } => ("PUT", format!("{base}/{}/stop", encode(&name)), Vec::new()),
        Trace::Delete { name } => ("DELETE", format!("{base}/{}", encode(&name)), Vec::new()),
        Trace::List => ("GET", base.to_owned(), Vec::new()),
        Trace::Download { name } => (
            "GET",
            format!("{base}/{}/download", encode(&name)),
            Vec::new(),
        ),
    };
    expect_ok(call(to, method, &path, body).await?)
}
