//! The in-process holder of the cluster tables, used by the standalone broker until the
//! Raft group arrives: one log entry per [`EmbeddedCore::transact`] call, applied at once
//! under a write lock.
//!
//! It owns the [`Tables`] value, the log index and the lock around them, and exposes the
//! same shape the Raft holder will (`transact` is async and can fail with
//! [`TransactError::NotLeader`] or [`TransactError::Timeout`]) so that swapping the holder
//! changes no caller. It must never contain table logic (that is
//! [`Tables::apply`](meshmq_shared::tables::Tables::apply)), never hold its lock across an
//! `.await`, and never do I/O.

use std::sync::atomic::{AtomicU64, Ordering};

use meshmq_proto::tables::{Batch, Op};
use meshmq_shared::tables::Tables;
use parking_lot::RwLock;

pub use crate::api::{Committed, MAX_OPS_PER_ENTRY, TransactError};

/// The tables held in this process, with the index of the last applied entry.
pub struct EmbeddedCore {
    /// The tables; written only by `transact`, read by everyone.
    tables: RwLock<Tables>,
    /// Index of the last applied entry; written under the write lock, readable without it.
    applied: AtomicU64,
}

impl EmbeddedCore {
    /// Empty tables at index 0.
    pub fn new() -> Self {
        Self {
            tables: RwLock::new(Tables::new()),
            applied: AtomicU64::new(0),
        }
    }

    /// Applies the ops as one log entry (one index per call) and returns its index and one
    /// result per op. Concurrent calls are serialized: indexes are consecutive and the
    /// entry is visible to [`read`](Self::read) as soon as this returns. An empty `ops`
    /// makes no entry and returns the current index with no results.
    pub async fn transact(&self, ops: Vec<Op>) -> Result<Committed, TransactError> {
        if ops.len() > MAX_OPS_PER_ENTRY {
            return Err(TransactError::Rejected(format!(
                "{} ops in one entry, at most {MAX_OPS_PER_ENTRY}",
                ops.len()
            )));
        }
        let batch = Batch { ops };
        let mut tables = self.tables.write();
        let applied = self.applied.load(Ordering::Acquire);
        if batch.ops.is_empty() {
            return Ok(Committed {
                index: applied,
                results: Vec::new(),
            });
        }
        let index = applied + 1;
        let results = tables.apply_batch(index, &batch);
        self.applied.store(index, Ordering::Release);
        Ok(Committed { index, results })
    }

    /// Runs `f` on the tables under the read lock (keep it short: writers wait).
    pub fn read<R>(&self, f: impl FnOnce(&Tables) -> R) -> R {
        f(&self.tables.read())
    }

    /// Index of the last applied entry (0 before the first).
    pub fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }
}

impl Default for EmbeddedCore {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use std::sync::Arc;

    use meshmq_proto::tables::{NodeRole, NodeUp, RegistryClaim, RouteAdd, op::Kind};
    use meshmq_shared::tables::rejection;

    use super::*;

    fn op(kind: Kind) -> Op {
        Op { kind: Some(kind) }
    }

    fn node_up(node: &str) -> Op {
        op(Kind::NodeUp(NodeUp {
            node: node.into(),
            addr: "127.0.0.1:1883".into(),
            role: NodeRole::Replicant as i32,
            incarnation: 1,
        }))
    }

    fn claim(client: &str) -> Op {
        op(Kind::RegistryClaim(RegistryClaim {
            client_id: client.into(),
            node: "n1".into(),
            protocol_level: 5,
            ..Default::default()
        }))
    }

    #[tokio::test]
    async fn one_index_per_transaction_and_one_result_per_op() {
        let core = EmbeddedCore::new();
        let route = op(Kind::RouteAdd(RouteAdd {
            filter: "a/+".into(),
            node: "n1".into(),
        }));
        let first = core
            .transact(vec![route.clone(), node_up("n1"), route])
            .await
            .unwrap();
        assert_eq!(first.index, 1);
        assert_eq!(first.results.len(), 3);
        assert!(
            rejection(&first.results[0]).is_some(),
            "route before its node is rejected"
        );
        assert!(rejection(&first.results[2]).is_none());
        let second = core.transact(vec![claim("c")]).await.unwrap();
        assert_eq!(second.index, 2);
        assert_eq!(core.applied_index(), 2);
        let (generation, nodes) = core.read(|t| {
            let mut nodes = Vec::new();
            t.route_nodes_matching("a/b", |n| nodes.push(n.to_owned()));
            (t.registry("c").map(|r| r.generation), nodes)
        });
        assert_eq!((generation, nodes), (Some(1), vec!["n1".to_owned()]));
        assert_eq!(core.read(|t| t.applied_index()), 2);
    }

    #[tokio::test]
    async fn empty_and_oversized_transactions_make_no_entry() {
        let core = EmbeddedCore::new();
        let empty = core.transact(Vec::new()).await.unwrap();
        assert_eq!((empty.index, empty.results.len()), (0, 0));
        let too_many = vec![claim("c"); MAX_OPS_PER_ENTRY + 1];
        let err = core.transact(too_many).await.unwrap_err();
        assert!(matches!(err, TransactError::Rejected(_)), "{err}");
        assert_eq!(core.applied_index(), 0);
        assert_eq!(core.read(|t| t.registry_count()), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_claims_get_consecutive_indexes_and_generations() {
        let core = Arc::new(EmbeddedCore::new());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let core = Arc::clone(&core);
                tokio::spawn(async move { core.transact(vec![claim("same")]).await })
            })
            .collect();
        let mut indexes = Vec::new();
        let mut generations = Vec::new();
        for task in tasks {
            let committed = task.await.unwrap().unwrap();
            indexes.push(committed.index);
            match &committed.results[0].outcome {
                Some(meshmq_proto::tables::op_result::Outcome::Claimed(c)) => {
                    generations.push(c.generation)
                }
                other => panic!("expected a claim, got {other:?}"),
            }
        }
        indexes.sort_unstable();
        generations.sort_unstable();
        assert_eq!(indexes, (1..=16).collect::<Vec<u64>>());
        assert_eq!(
            generations,
            (1..=16).collect::<Vec<u64>>(),
            "commit order decides"
        );
        assert_eq!(
            core.read(|t| t.registry("same").map(|r| r.generation)),
            Some(16)
        );
    }
}
