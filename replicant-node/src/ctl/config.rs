//! `ctl config ...` (`emqx ctl conf show|update`, with `get`/`set` names), over
//! `/api/v5/configs`, and `ctl stats` / `ctl metrics`, over `/api/v5/stats|metrics`:
//!
//! ```text
//! replicant-node ctl config get [ROOT]          # the whole configuration, or one section
//! replicant-node ctl config set KEY VALUE       # KEY dotted: mqtt.max_inflight
//! replicant-node ctl stats [--aggregate] [--node N]
//! replicant-node ctl metrics [--aggregate] [--node N]
//! ```
//!
//! `VALUE` is read as JSON when it parses (`64`, `true`, `"text"`, `[1,2]`), as text
//! otherwise (`1m`). Only run-time keys may be set (the node refuses the others, naming the
//! key); the change holds on every node. Owns these commands' flags; the calls go through
//! [`super::call`].

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use super::{To, encode, get, send_json, with_query};

/// `ctl config ...`
#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCmd {
    /// The node's effective configuration (secrets redacted), or one section of it.
    Get {
        /// A section: mqtt, flapping_detect, listeners, cluster, ...
        root: Option<String>,
    },
    /// Change a run-time key on every node (see docs/runtime-config.md).
    Set {
        /// The key, dotted: `mqtt.max_inflight`, `flapping_detect.ban_time`.
        key: String,
        /// The value: JSON (`64`, `true`) or text (`5m`).
        value: String,
    },
}

/// `ctl stats` / `ctl metrics`
#[derive(Debug, Clone, Default, Args)]
pub struct Figures {
    /// One object summed over the replicants instead of one per replicant.
    #[arg(long)]
    pub aggregate: bool,
    /// Only this replicant.
    #[arg(long)]
    pub node: Option<String>,
}

/// Runs `ctl config ...`.
pub(super) async fn run(to: To<'_>, c: ConfigCmd) -> anyhow::Result<String> {
    match c {
        ConfigCmd::Get { root: None } => get(to, "/api/v5/configs").await,
        ConfigCmd::Get { root: Some(r) } => {
            get(to, &format!("/api/v5/configs/{}", encode(&r))).await
        }
        ConfigCmd::Set { key, value } => {
            let (root, body) = set_body(&key, &value)?;
            let path = format!("/api/v5/configs/{}", encode(&root));
            send_json(to, "PUT", &path, &body).await
        }
    }
}

/// The section and the body of `PUT /api/v5/configs/{section}` setting `key` to `value`:
/// `mqtt.max_inflight 64` gives `mqtt` and `{"max_inflight": 64}`.
fn set_body(key: &str, value: &str) -> anyhow::Result<(String, Value)> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        bail!("the key is dotted, section first: mqtt.max_inflight");
    }
    let mut body = serde_json::from_str::<Value>(value).unwrap_or_else(|_| value.into());
    for part in parts[1..].iter().rev() {
        let mut m = Map::new();
        m.insert((*part).to_owned(), body);
        body = Value::Object(m);
    }
    Ok((parts[0].to_owned(), body))
}

/// Runs `ctl stats` or `ctl metrics` (`what`).
pub(super) async fn figures(to: To<'_>, what: &str, f: Figures) -> anyhow::Result<String> {
    let pairs = [
        ("aggregate", f.aggregate.then(|| "true".to_owned())),
        ("node", f.node),
    ];
    get(to, &with_query(&format!("/api/v5/{what}"), &pairs)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_reads_json_or_text_under_the_section() {
        let (root, body) = set_body("mqtt.max_inflight", "64").expect("ok");
        assert_eq!(
            (root.as_str(), body),
            ("mqtt", serde_json::json!({"max_inflight": 64}))
        );
        let (_, body) = set_body("flapping_detect.ban_time", "5m").expect("ok");
        assert_eq!(body, serde_json::json!({"ban_time": "5m"}));
        let (_, body) = set_body("a.b.c", "true").expect("ok");
        assert_eq!(body, serde_json::json!({"b": {"c": true}}));
        assert!(set_body("mqtt", "1").is_err());
        assert!(set_body("mqtt..x", "1").is_err());
    }
}
