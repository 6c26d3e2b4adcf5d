//! `ctl publish ...` and `ctl retained ...` (`emqx ctl` has no publish; EMQX's API does),
//! over `/api/v5/publish` and `/api/v5/mqtt/retainer/...`:
//!
//! ```text
//! replicant-node ctl publish TOPIC PAYLOAD [--qos Q] [--retain]
//! replicant-node ctl retained list [--topic FILTER] [--page P] [--limit L]
//! replicant-node ctl retained show TOPIC
//! replicant-node ctl retained delete TOPIC
//! ```
//!
//! Owns these commands' flags; the calls go through [`super::call`]. Topics in paths are
//! percent-encoded (`a/b` is sent as `a%2Fb`).

use clap::{Args, Subcommand};
use serde_json::json;

use super::clients::Paging;
use super::{To, call, encode, expect_ok, get, send_json, with_query};

/// `ctl publish`
#[derive(Debug, Clone, Args)]
pub struct Publish {
    /// The topic (no wildcards).
    pub topic: String,
    /// The payload, as text.
    pub payload: String,
    /// QoS, 0 to 2 (default 0).
    #[arg(long, default_value_t = 0)]
    pub qos: u8,
    /// Store it as the topic's retained message.
    #[arg(long)]
    pub retain: bool,
}

/// `ctl retained ...`
#[derive(Debug, Clone, Subcommand)]
pub enum Retained {
    /// A page of the retained messages, sorted by topic.
    List {
        /// Only topics matching this filter (wildcards allowed).
        #[arg(long)]
        topic: Option<String>,
        /// The page (from 1).
        #[command(flatten)]
        paging: Paging,
    },
    /// One retained message, with its payload (base64).
    Show {
        /// The topic.
        topic: String,
    },
    /// Delete a topic's retained message.
    Delete {
        /// The topic.
        topic: String,
    },
}

/// Runs `ctl publish`: 200 `{"id"}` when a subscriber got it, 202 when none did (both
/// printed; a 202 is not an error).
pub(super) async fn publish(to: To<'_>, p: Publish) -> anyhow::Result<String> {
    let body = json!({"topic": p.topic, "payload": p.payload, "qos": p.qos, "retain": p.retain});
    send_json(to, "POST", "/api/v5/publish", &body).await
}

/// Runs `ctl retained ...`.
pub(super) async fn run_retained(to: To<'_>, r: Retained) -> anyhow::Result<String> {
    let one = |topic: &str| format!("/api/v5/mqtt/retainer/message/{}", encode(topic));
    match r {
        Retained::List { topic, paging } => {
            let mut pairs = vec![("topic", topic)];
            pairs.extend(paging.pairs());
            get(to, &with_query("/api/v5/mqtt/retainer/messages", &pairs)).await
        }
        Retained::Show { topic } => get(to, &one(&topic)).await,
        Retained::Delete { topic } => {
            expect_ok(call(to, "DELETE", &one(&topic), Vec::new()).await?)
        }
    }
}
