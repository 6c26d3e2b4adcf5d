//! Group commit on the leader: while an entry is being committed, transactions that arrive
//! within [`GroupCommit::window`] (or until [`GroupCommit::max_ops`] ops) share the next Raft
//! entry; when nothing is in flight a transaction goes at once (no latency added when
//! idle). A connect storm of 100 000 CONNECTs is so a few hundred entries. Entries are submitted in arrival order
//! (`client_write_ff`) and their replies awaited off the batching task, so the next batch
//! forms while the previous one is being committed.
//!
//! A group is also closed before it would pass [`MAX_ENTRY_BYTES`] (or [`MAX_OPS_PER_ENTRY`]);
//! the caller that would have passed it opens the next group.
//!
//! Never applies anything itself (the state machine does) and never splits one caller's ops
//! across entries: a caller's batch commits whole or not at all, and one over either bound is
//! refused (`Rejected`, naming the bound).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use meshmq_proto::tables::{Batch, Op, OpResult};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::api::{self, Committed, MAX_ENTRY_BYTES, MAX_OPS_PER_ENTRY, TransactError};
use crate::raft::types::{EntryData, Raft};
use meshmq_shared::metrics as m;

/// How transactions are grouped into entries.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommit {
    /// How long the first transaction of a group waits for others.
    pub window: Duration,
    /// A group is closed as soon as it holds this many ops.
    pub max_ops: usize,
    /// How long to wait for an entry to commit before answering `Timeout`.
    pub commit_timeout: Duration,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(1),
            max_ops: 1_000,
            commit_timeout: Duration::from_secs(10),
        }
    }
}

/// What a waiting caller gets back.
pub type Reply = oneshot::Sender<Result<Committed, TransactError>>;

struct Pending {
    ops: Vec<Op>,
    /// Encoded bytes of `ops` in a `Batch`.
    bytes: usize,
    reply: Reply,
}

/// The handle callers submit to; the task stops when every handle is dropped.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Pending>,
}

impl Batcher {
    /// Starts the batching task for `raft`.
    pub fn start(raft: Raft, cfg: GroupCommit) -> Self {
        let (tx, rx) = mpsc::channel(16_384);
        tokio::spawn(run(raft, cfg, rx));
        Self { tx }
    }

    /// Submits `ops` and waits for the entry that carries them to commit.
    pub async fn submit(&self, ops: Vec<Op>) -> Result<Committed, TransactError> {
        let bytes = api::check_entry(&ops).inspect_err(|e| {
            let reason = if ops.len() > MAX_OPS_PER_ENTRY {
                "entry_ops"
            } else {
                "entry_bytes"
            };
            metrics::counter!(m::CORE_TRANSACT_REFUSED_TOTAL, "reason" => reason).increment(1);
            tracing::warn!(ops = ops.len(), error = %e, "transaction refused");
        })?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { ops, bytes, reply })
            .await
            .map_err(|_| TransactError::Unavailable("core is shutting down".into()))?;
        rx.await
            .map_err(|_| TransactError::Unavailable("core is shutting down".into()))?
    }
}

async fn run(raft: Raft, cfg: GroupCommit, mut rx: mpsc::Receiver<Pending>) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        let mut ops = group[0].ops.len();
        let mut bytes = group[0].bytes;
        // Nothing being committed: go at once (no added latency when idle). Otherwise
        // gather for up to `window` — the entries in flight keep Raft busy meanwhile.
        let deadline = if in_flight.load(Ordering::Acquire) == 0 {
            Instant::now()
        } else {
            Instant::now() + cfg.window
        };
        while ops < cfg.max_ops && bytes < MAX_ENTRY_BYTES {
            let next = match rx.try_recv() {
                Ok(p) => Some(p),
                Err(_) if Instant::now() >= deadline => None,
                Err(_) => tokio::time::timeout_at(deadline, rx.recv())
                    .await
                    .ok()
                    .flatten(),
            };
            let Some(p) = next else { break };
            if ops + p.ops.len() > MAX_OPS_PER_ENTRY || bytes + p.bytes > MAX_ENTRY_BYTES {
                // Would overflow one entry: commit it on its own right after this group.
                submit_group(&raft, cfg, std::mem::take(&mut group), &in_flight).await;
                ops = 0;
                bytes = 0;
            }
            ops += p.ops.len();
            bytes += p.bytes;
            group.push(p);
        }
        submit_group(&raft, cfg, group, &in_flight).await;
    }
}

/// Sends one entry to Raft (in order) and spawns the wait for its commit.
async fn submit_group(
    raft: &Raft,
    cfg: GroupCommit,
    group: Vec<Pending>,
    in_flight: &Arc<AtomicUsize>,
) {
    if group.is_empty() {
        return;
    }
    let counts: Vec<usize> = group.iter().map(|p| p.ops.len()).collect();
    let mut replies = Vec::with_capacity(group.len());
    let mut all = Vec::with_capacity(counts.iter().sum());
    for p in group {
        all.extend(p.ops);
        replies.push(p.reply);
    }
    metrics::histogram!(m::CORE_GROUP_COMMIT_OPS).record(all.len() as f64);
    metrics::histogram!(m::CORE_GROUP_COMMIT_TRANSACTIONS).record(replies.len() as f64);
    let data = EntryData {
        batch: Batch { ops: all }.encode_to_vec(),
    };
    let started = Instant::now();
    let rx = match raft.client_write_ff(data).await {
        Ok(rx) => rx,
        Err(e) => {
            let err = TransactError::Unavailable(format!("raft stopped: {e}"));
            for r in replies {
                let _ = r.send(Err(err.clone()));
            }
            return;
        }
    };
    let timeout = cfg.commit_timeout;
    in_flight.fetch_add(1, Ordering::AcqRel);
    let in_flight = Arc::clone(in_flight);
    tokio::spawn(async move {
        let outcome = match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(TransactError::Timeout),
            Ok(Err(_)) => Err(TransactError::Unavailable(
                "raft dropped the request".into(),
            )),
            Ok(Ok(Err(e))) => Err(write_error(e)),
            Ok(Ok(Ok(resp))) => decode_results(resp.log_id.index, &resp.data.results),
        };
        in_flight.fetch_sub(1, Ordering::AcqRel);
        metrics::histogram!(m::CORE_TRANSACT_SECONDS).record(started.elapsed().as_secs_f64());
        split(outcome, &counts, replies);
    });
}

fn write_error(e: crate::raft::types::ClientWriteError) -> TransactError {
    match e {
        crate::raft::types::ClientWriteError::ForwardToLeader(f) => TransactError::NotLeader {
            leader: f.leader_node.map(|n| n.addr),
        },
        other => TransactError::Unavailable(other.to_string()),
    }
}

fn decode_results(index: u64, raw: &[Vec<u8>]) -> Result<Committed, TransactError> {
    let results = raw
        .iter()
        .map(|r| OpResult::decode(r.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransactError::Unavailable(format!("undecodable op result: {e}")))?;
    Ok(Committed { index, results })
}

/// Hands each caller its slice of the entry's results.
fn split(outcome: Result<Committed, TransactError>, counts: &[usize], replies: Vec<Reply>) {
    match outcome {
        Err(e) => {
            for r in replies {
                let _ = r.send(Err(e.clone()));
            }
        }
        Ok(c) if c.results.len() != counts.iter().sum::<usize>() => {
            let e = TransactError::Unavailable(format!(
                "entry {} returned {} results for {} ops",
                c.index,
                c.results.len(),
                counts.iter().sum::<usize>()
            ));
            for r in replies {
                let _ = r.send(Err(e.clone()));
            }
        }
        Ok(c) => {
            let mut results = c.results.into_iter();
            for (n, r) in counts.iter().zip(replies) {
                let mine: Vec<OpResult> = results.by_ref().take(*n).collect();
                let _ = r.send(Ok(Committed {
                    index: c.index,
                    results: mine,
                }));
            }
        }
    }
}
