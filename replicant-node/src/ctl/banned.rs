//! `ctl banned ...` (`emqx ctl banned`), over `/api/v5/banned`:
//!
//! ```text
//! replicant-node ctl banned list [--page P] [--limit L]
//! replicant-node ctl banned add (--clientid C | --username U | --peerhost ADDR[/BITS])
//!     [--duration SECS] [--reason TEXT]
//! replicant-node ctl banned del AS WHO
//! ```
//!
//! A `--peerhost` with a `/` is a network (`peerhost_net`). Without `--duration` the ban
//! never ends. Owns these commands' flags; the calls go through [`super::call`].

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::json;

use super::clients::Paging;
use super::{To, call, encode, expect_ok, get, send_json, with_query};

/// `ctl banned ...`
#[derive(Debug, Clone, Subcommand)]
pub enum Banned {
    /// A page of the bans in force.
    List {
        /// The page (from 1).
        #[command(flatten)]
        paging: Paging,
    },
    /// Ban a client id, a user name or an address (or network).
    Add(BannedAdd),
    /// Lift a ban: `AS` is clientid, username, peerhost or peerhost_net.
    Del {
        /// What kind of ban: clientid, username, peerhost or peerhost_net.
        #[arg(value_name = "AS")]
        kind: String,
        /// What is banned.
        who: String,
    },
}

/// `ctl banned add`
#[derive(Debug, Clone, Args)]
#[group(skip)]
#[command(group = clap::ArgGroup::new("who").required(true).multiple(false).args(["clientid", "username", "peerhost"]))]
pub struct BannedAdd {
    /// Ban this client id.
    #[arg(long)]
    pub clientid: Option<String>,
    /// Ban this user name.
    #[arg(long)]
    pub username: Option<String>,
    /// Ban this address, or a network as `ADDR/BITS`.
    #[arg(long, value_name = "ADDR[/BITS]")]
    pub peerhost: Option<String>,
    /// Seconds the ban lasts (default: for ever).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
    /// Why (kept with the ban).
    #[arg(long)]
    pub reason: Option<String>,
}

/// Runs `ctl banned ...`.
pub(super) async fn run(to: To<'_>, b: Banned) -> anyhow::Result<String> {
    match b {
        Banned::List { paging } => get(to, &with_query("/api/v5/banned", &paging.pairs())).await,
        Banned::Add(a) => {
            let (kind, who) = match (a.clientid, a.username, a.peerhost) {
                (Some(c), _, _) => ("clientid", c),
                (_, Some(u), _) => ("username", u),
                (_, _, Some(p)) if p.contains('/') => ("peerhost_net", p),
                (_, _, Some(p)) => ("peerhost", p),
                _ => bail!("give --clientid, --username or --peerhost"),
            };
            let mut body = json!({"as": kind, "who": who, "by": "ctl"});
            if let Some(secs) = a.duration {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                body["until"] = now.saturating_add(secs).into();
            }
            if let Some(r) = a.reason {
                body["reason"] = r.into();
            }
            send_json(to, "POST", "/api/v5/banned", &body).await
        }
        Banned::Del { kind, who } => {
            let path = format!("/api/v5/banned/{}/{}", encode(&kind), encode(&who));
            expect_ok(call(to, "DELETE", &path, Vec::new()).await?)
        }
    }
}
