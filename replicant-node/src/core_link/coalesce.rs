//! Coalescing of concurrent transactions: callers of [`CoreLink::transact`] queue their ops;
//! one flusher task sends everything queued as ONE `Transact` request (one QUIC stream, one
//! log entry), waits for it, hands each caller its own slice of the per-op results, and
//! goes on with what queued meanwhile. A lone caller pays one round trip as before; under
//! a connect storm thousands of registry claims share a few requests instead of each
//! paying its own stream, frame and reply.
//!
//! Semantics kept: each caller's ops are contiguous and in order inside the entry, so they
//! still apply atomically and in order; results are per op. An error of the combined request
//! (timeout, unavailable, ...) is every caller's error, exactly as if each had sent its ops
//! alone at that moment. Never more than [`MAX_OPS_PER_ENTRY`] ops per request.

use std::collections::VecDeque;
use std::sync::Arc;

use core_node::api::{Committed, MAX_OPS_PER_ENTRY, TransactError};
use meshmq_proto::tables::Op;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::Shared;

/// One queued caller.
struct Waiter {
    ops: Vec<Op>,
    done: oneshot::Sender<Result<Committed, TransactError>>,
}

/// The queue and whether a flusher runs.
#[derive(Default)]
pub(super) struct Coalescer {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Waiter>,
    flushing: bool,
}

impl Coalescer {
    /// Queues `ops`; starts a flusher if none runs. The receiver yields this caller's result.
    pub(super) fn submit(
        shared: &Arc<Shared>,
        ops: Vec<Op>,
    ) -> oneshot::Receiver<Result<Committed, TransactError>> {
        let (done, rx) = oneshot::channel();
        let start = {
            let mut st = shared.coalescer.state.lock();
            st.queue.push_back(Waiter { ops, done });
            !std::mem::replace(&mut st.flushing, true)
        };
        if start {
            tokio::spawn(flush(shared.clone()));
        }
        rx
    }
}

/// Sends queued ops until the queue is empty.
async fn flush(shared: Arc<Shared>) {
    loop {
        let batch = {
            let mut st = shared.coalescer.state.lock();
            let mut batch = Vec::new();
            let mut n = 0;
            while let Some(w) = st.queue.front() {
                if !batch.is_empty() && n + w.ops.len() > MAX_OPS_PER_ENTRY {
                    break;
                }
                n += w.ops.len();
                batch.extend(st.queue.pop_front());
            }
            if batch.is_empty() {
                st.flushing = false;
                return;
            }
            batch
        };
        let sizes: Vec<usize> = batch.iter().map(|w| w.ops.len()).collect();
        let mut ops = Vec::with_capacity(sizes.iter().sum());
        let mut senders = Vec::with_capacity(batch.len());
        for w in batch {
            ops.extend(w.ops);
            senders.push(w.done);
        }
        match shared.transact_one(ops).await {
            Ok(committed) => {
                let mut results = committed.results.into_iter();
                for (done, n) in senders.into_iter().zip(sizes) {
                    let part = Committed {
                        index: committed.index,
                        results: results.by_ref().take(n).collect(),
                    };
                    let _ = done.send(Ok(part));
                }
            }
            Err(e) => {
                for done in senders {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
    }
}
