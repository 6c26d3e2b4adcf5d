//! `ctl clients ...` and `ctl subscriptions ...` (`emqx ctl clients|subscriptions`), over
//! `/api/v5/clients` and `/api/v5/subscriptions`:
//!
//! ```text
//! replicant-node ctl clients list [--node N] [--username U] [--like-clientid TEXT]
//!     [--page P] [--limit L]
//! replicant-node ctl clients show CLIENTID
//! replicant-node ctl clients kick CLIENTID
//! replicant-node ctl subscriptions list [--clientid C] [--topic T] [--page P] [--limit L]
//! replicant-node ctl subscriptions add CLIENTID TOPIC [--qos Q]
//! replicant-node ctl subscriptions del CLIENTID TOPIC
//! ```
//!
//! Owns these commands' flags; the calls go through [`super::call`].

use clap::{Args, Subcommand};
use serde_json::json;

use super::{To, call, encode, expect_ok, get, send_json, with_query};

/// `ctl clients ...`
#[derive(Debug, Clone, Subcommand)]
pub enum Clients {
    /// A page of the clients of every replicant (or of `--node`), sorted by client id.
    List(ClientsList),
    /// One client.
    Show {
        /// The client id.
        clientid: String,
    },
    /// Disconnect a client and discard its session.
    Kick {
        /// The client id.
        clientid: String,
    },
}

/// `ctl clients list`
#[derive(Debug, Clone, Default, Args)]
pub struct ClientsList {
    /// Only the clients of this replicant.
    #[arg(long)]
    pub node: Option<String>,
    /// Only clients with exactly this user name.
    #[arg(long)]
    pub username: Option<String>,
    /// Only client ids that contain this text.
    #[arg(long)]
    pub like_clientid: Option<String>,
    /// The page (from 1).
    #[command(flatten)]
    pub paging: Paging,
}

/// `--page` and `--limit` of a list.
#[derive(Debug, Clone, Default, Args)]
pub struct Paging {
    /// Page number, from 1 (default 1).
    #[arg(long, value_name = "P")]
    pub page: Option<u32>,
    /// Items per page, 1 to 10 000 (default 100).
    #[arg(long, value_name = "L")]
    pub limit: Option<u32>,
}

impl Paging {
    /// The query pairs.
    pub fn pairs(&self) -> [(&'static str, Option<String>); 2] {
        [
            ("page", self.page.map(|p| p.to_string())),
            ("limit", self.limit.map(|l| l.to_string())),
        ]
    }
}

/// `ctl subscriptions ...`
#[derive(Debug, Clone, Subcommand)]
pub enum Subscriptions {
    /// A page of the subscriptions of every client.
    List(SubscriptionsList),
    /// Subscribe a client (connected or waiting with its session) to a filter.
    Add {
        /// The client id.
        clientid: String,
        /// The topic filter.
        topic: String,
        /// Granted QoS, 0 to 2 (default 0).
        #[arg(long, default_value_t = 0)]
        qos: u8,
    },
    /// Unsubscribe a client from a filter.
    Del {
        /// The client id.
        clientid: String,
        /// The topic filter, exactly as subscribed.
        topic: String,
    },
}

/// `ctl subscriptions list`
#[derive(Debug, Clone, Default, Args)]
pub struct SubscriptionsList {
    /// Only this client's subscriptions.
    #[arg(long)]
    pub clientid: Option<String>,
    /// Only subscriptions to exactly this filter.
    #[arg(long)]
    pub topic: Option<String>,
    /// The page (from 1).
    #[command(flatten)]
    pub paging: Paging,
}

/// `/api/v5/clients/{clientid}` with the id percent-encoded.
fn client_path(clientid: &str) -> String {
    format!("/api/v5/clients/{}", encode(clientid))
}

/// Runs `ctl clients ...`.
pub(super) async fn run_clients(to: To<'_>, c: Clients) -> anyhow::Result<String> {
    match c {
        Clients::List(l) => {
            let mut pairs = vec![
                ("node", l.node),
                ("username", l.username),
                ("like_clientid", l.like_clientid),
            ];
            pairs.extend(l.paging.pairs());
            get(to, &with_query("/api/v5/clients", &pairs)).await
        }
        Clients::Show { clientid } => get(to, &client_path(&clientid)).await,
        Clients::Kick { clientid } => {
            expect_ok(call(to, "DELETE", &client_path(&clientid), Vec::new()).await?)
        }
    }
}

/// Runs `ctl subscriptions ...`.
pub(super) async fn run_subscriptions(to: To<'_>, s: Subscriptions) -> anyhow::Result<String> {
    match s {
        Subscriptions::List(l) => {
            let mut pairs = vec![("clientid", l.clientid), ("topic", l.topic)];
            pairs.extend(l.paging.pairs());
            get(to, &with_query("/api/v5/subscriptions", &pairs)).await
        }
        Subscriptions::Add {
            clientid,
            topic,
            qos,
        } => {
            let path = format!("{}/subscribe", client_path(&clientid));
            send_json(to, "POST", &path, &json!({"topic": topic, "qos": qos})).await
        }
        Subscriptions::Del { clientid, topic } => {
            let path = format!("{}/unsubscribe", client_path(&clientid));
            send_json(to, "POST", &path, &json!({"topic": topic})).await
        }
    }
}
