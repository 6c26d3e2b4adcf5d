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
//! `--wait-done SECS` makes an evacuation one command for scripts (rolling upgrade, a
//! Kubernetes preStop, a lifecycle hook): start it (a node already evacuating is fine),
//! then poll the node's state every [`POLL`] until it is `prohibiting` (every connection
//! and session moved), failing after SECS.
//!
//! Owns these commands' flags; the calls go through [`super::call`]. Never waits without
//! a deadline: each poll has the call timeout, the whole wait has SECS.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::{To, call, expect_ok, node_or_self};
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
    /// Evacuation: after starting it (or finding it under way), wait until the node has
    /// moved every connection and session (state `prohibiting`); fail after SECS.
    #[arg(long, value_name = "SECS", requires = "evacuation")]
    pub wait_done: Option<u64>,
}

/// Time between two looks at an evacuation's state (`--wait-done`).
const POLL: Duration = Duration::from_millis(250);
/// The state of an evacuation that has moved everything.
const DONE: &str = "prohibiting";

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
            match a.wait_done {
                None => expect_ok(answer),
                // 409: already under way (or done): wait for it all the same.
                Some(_) if answer.0 == 409 => wait_done(to, &node, a.wait_done).await,
                Some(_) => {
                    expect_ok(answer)?;
                    wait_done(to, &node, a.wait_done).await
                }
            }
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

/// Polls `node`'s evacuation until its state is `prohibiting`; the last status seen.
/// The node behind `--api` answers from its own status; another node from the cluster's
/// `global_status` (its row in the `nodes` table).
async fn wait_done(to: To<'_>, node: &str, secs: Option<u64>) -> anyhow::Result<String> {
    let secs = secs.unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let own = node_or_self(to, None).await? == node;
    // A poll that fails (the node busy evicting, a dropped connection) is retried until
    // the deadline; only a run of failures in a row ends the wait early.
    let mut failed = 0;
    loop {
        let state = match evacuation_state(to, node, own).await {
            Ok((state, body)) if state == DONE => return Ok(body),
            Ok((state, _)) => {
                failed = 0;
                state
            }
            Err(e) if failed + 1 >= MAX_FAILED_POLLS => return Err(e),
            Err(e) => {
                failed += 1;
                format!("unknown: {e:#}")
            }
        };
        if Instant::now() + POLL > deadline {
            bail!("evacuation of {node} not done after {secs} s (state: {state})");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Failed polls in a row that end `--wait-done` before its deadline.
const MAX_FAILED_POLLS: u32 = 5;

/// The evacuation state of `node` (`none` when it is not being evacuated) and the JSON
/// it came in.
async fn evacuation_state(to: To<'_>, node: &str, own: bool) -> anyhow::Result<(String, String)> {
    let base = "/api/v5/load_rebalance";
    if own {
        let body = super::get(to, &format!("{base}/status")).await?;
        let v: serde_json::Value = serde_json::from_str(&body).context("status answer")?;
        let state = v["state"].as_str().unwrap_or("none").to_owned();
        return Ok((state, body));
    }
    let body = super::get(to, &format!("{base}/global_status")).await?;
    let v: serde_json::Value = serde_json::from_str(&body).context("global_status answer")?;
    let row = v["evacuations"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["node"] == node));
    match row {
        Some(r) => Ok((
            r["state"].as_str().unwrap_or("none").to_owned(),
            r.to_string(),
        )),
        None => Ok(("none".to_owned(), body)),
    }
}
