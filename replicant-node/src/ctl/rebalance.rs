//! `ctl rebalance ...`: evacuation and rebalance of replicants, over
//! `/api/v5/load_rebalance` (as `emqx ctl rebalance ...`):
//!
//! ```text
//! replicant-node ctl rebalance start --evacuation [--node N] [--wait-health-check S]
//!     [--conn-evict-rate N] [--sess-evict-rate N] [--redirect-to HOST:PORT]
//!     [--wait-takeover S] [--migrate-to N1,N2] [--wait-done SECS]
//! replicant-node ctl rebalance stop [--node N]
//! replicant-node ctl rebalance start [--node COORDINATOR] [--nodes N1,N2,N3]
//!     [--abs-conn-threshold 1000] [--rel-conn-threshold 1.1] [--abs-sess-threshold 1000]
//!     [--rel-sess-threshold 1.1] [rates and waits as above]
//! replicant-node ctl rebalance stop --rebalance [--node COORDINATOR]
//! replicant-node ctl rebalance node-status | global-status | availability
//! ```
//!
//! With `--wait-done SECS` the evacuation start is idempotent (a node already evacuating is
//! not an error) and the command returns only once the node reports `prohibiting` (every
//! connection and session moved) in `global_status`, or fails with one line after SECS.
//!
//! Owns these commands' flags; the calls go through [`super::call`].

use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};
use tokio::time::Instant;

use super::{CALL_TIMEOUT, MAX_ANSWER, To, call, call_within, expect_ok, node_or_self};
use crate::evacuation::api::StartRequest;
use crate::evacuation::rebalance::RebalanceRequest;

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
    /// Evacuation: wait until the node is done (`prohibiting`: every connection and session
    /// moved), at most SECS; exit 1 if not done by then. Starting an evacuation of a node
    /// that already evacuates is then not an error (the wait covers it).
    #[arg(long, value_name = "SECS", requires = "evacuation")]
    pub wait_done: Option<u64>,
}

/// How often `--wait-done` asks for the evacuation's state.
const WAIT_DONE_POLL: Duration = Duration::from_millis(500);

/// Runs `ctl rebalance ...`; the answer's JSON.
pub(super) async fn run(to: To<'_>, r: Rebalance) -> anyhow::Result<String> {
    let base = "/api/v5/load_rebalance";
    match r {
        Rebalance::Start(a) if !a.evacuation => {
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
        Rebalance::Start(a) => {
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
            let answer = call(to, "POST", &path, body).await?;
            let Some(secs) = a.wait_done else {
                return expect_ok(answer);
            };
            // 409: already being evacuated (a lifecycle hook, then a preStop): wait for it.
            if answer.0 != 409 {
                expect_ok(answer)?;
            }
            wait_done(to, &node, Duration::from_secs(secs)).await
        }
        Rebalance::Stop { node, rebalance } => {
            let node = node_or_self(to, node).await?;
            let path = if rebalance {
                format!("{base}/{node}/stop")
            } else {
                format!("{base}/{node}/evacuation/stop")
            };
            expect_ok(call(to, "POST", &path, Vec::new()).await?)
        }
        Rebalance::NodeStatus => {
            expect_ok(call(to, "GET", &format!("{base}/status"), Vec::new()).await?)
        }
        Rebalance::GlobalStatus => {
            let path = format!("{base}/global_status");
            expect_ok(call(to, "GET", &path, Vec::new()).await?)
        }
        Rebalance::Availability => {
            let path = format!("{base}/availability_check");
            let (status, body) = call(to, "GET", &path, Vec::new()).await?;
            Ok(format!("{status} {body}"))
        }
    }
}

/// Polls `global_status` until `node`'s evacuation is `prohibiting`, at most `bound`; the
/// answer is `{"node": N, "state": "prohibiting"}`. A failed poll is retried until the bound
/// (the node may be busy); the error says what was seen last.
async fn wait_done(to: To<'_>, node: &str, bound: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + bound;
    let path = "/api/v5/load_rebalance/global_status";
    let mut last = String::from("no answer yet");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "the evacuation of {node} was not done within {} s (last seen: {last})",
                bound.as_secs()
            );
        }
        let call = ("GET", path, Vec::new());
        match call_within(to, call, left.min(CALL_TIMEOUT), MAX_ANSWER).await {
            Ok((200, body)) => match evacuation_state(&body, node) {
                Some(state) if state == "prohibiting" => {
                    return Ok(serde_json::json!({"node": node, "state": state}).to_string());
                }
                Some(state) => last = format!("state {state}"),
                None => last = format!("{node} is not being evacuated"),
            },
            Ok((status, body)) => last = format!("HTTP {status}: {}", one_line(&body)),
            Err(e) => last = one_line(&format!("{e:#}")),
        }
        tokio::time::sleep(WAIT_DONE_POLL.min(deadline.saturating_duration_since(Instant::now())))
            .await;
    }
}

/// The `state` of `node`'s entry in a `global_status` answer's `evacuations`.
fn evacuation_state(body: &str, node: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["evacuations"]
        .as_array()?
        .iter()
        .find(|e| e["node"] == node)?["state"]
        .as_str()
        .map(str::to_owned)
}

/// `text` on one line, at most 200 characters.
fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_state_of_one_node() {
        let body = r#"{"evacuations": [{"node": "r1", "state": "evicting_conns"},
                       {"node": "r2", "state": "prohibiting"}], "rebalances": []}"#;
        assert_eq!(evacuation_state(body, "r2").as_deref(), Some("prohibiting"));
        assert_eq!(
            evacuation_state(body, "r1").as_deref(),
            Some("evicting_conns")
        );
        assert_eq!(evacuation_state(body, "r3"), None);
        assert_eq!(evacuation_state("not json", "r1"), None);
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }
}
