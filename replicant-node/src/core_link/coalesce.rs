//! Coalescing of concurrent transactions: callers of [`CoreLink::transact`] queue their ops;
//! one flusher task sends everything queued as ONE `Transact` request (one QUIC stream, one
//! log entry), waits for it, hands each caller its own slice of the per-op results, and
//! goes on with what queued meanwhile. A lone caller pays one round trip as before; under
//! a connect storm thousands of registry claims share a few requests instead of each
//! paying its own stream, frame and reply.
//!
//! Semantics kept: each caller's ops are contiguous and in order inside the entry, so they
//! still apply atomically and in order; results are per op. An error of the combined request
//! (unavailable, ...) is every caller's error, exactly as if each had sent its ops alone at
//! that moment. Never more than [`MAX_OPS_PER_ENTRY`] ops nor [`MAX_ENTRY_BYTES`] bytes of
//! ops per request (a caller over either never gets here: `transact` refuses it).
//!
//! An unknown outcome (`Timeout`: the core died or the reply was lost after the request
//! left) is split per caller: callers whose ops may be applied twice (see `resend`) are
//! queued again at the front and sent with the next request, until their deadline; the
//! others get the `Timeout`. So a SUBSCRIBE's writes survive the death of the core they
//! were sent to, and a registry claim is never applied twice.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use core_node::api::{Committed, MAX_ENTRY_BYTES, MAX_OPS_PER_ENTRY, TransactError};
use meshmq_proto::tables::Op;
use meshmq_shared::metrics as m;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::Shared;

/// One queued caller.
struct Waiter {
    ops: Vec<Op>,
    /// Encoded bytes of `ops` (`core_node::api::batch_bytes`).
    bytes: usize,
    done: oneshot::Sender<Result<Committed, TransactError>>,
    /// Its ops may be sent again after an unknown outcome (`resend::resend_safe`).
    resend_safe: bool,
    /// Past this, an unknown outcome is reported instead of resent.
    deadline: Instant,
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
    /// Queues `ops` (`bytes`: their encoded bytes); starts a flusher if none runs. The
    /// receiver yields this caller's result.
    pub(super) fn submit(
        shared: &Arc<Shared>,
        ops: Vec<Op>,
        bytes: usize,
    ) -> oneshot::Receiver<Result<Committed, TransactError>> {
        let (done, rx) = oneshot::channel();
        let waiter = Waiter {
            bytes,
            resend_safe: super::resend::resend_safe(&ops),
            deadline: Instant::now() + shared.transact_deadline,
            ops,
            done,
        };
        let start = {
            let mut st = shared.coalescer.state.lock();
            st.queue.push_back(waiter);
            !std::mem::replace(&mut st.flushing, true)
        };
        if start {
            tokio::spawn(flush(shared.clone()));
        }
        rx
    }
}

/// Clears the queue's `flushing` flag if the flusher ends without doing so (a panic), so
/// that the next caller starts a new one instead of waiting forever. The normal end clears
/// it under the lock that saw the queue empty (no caller can slip in between).
struct Flushing(Arc<Shared>);

impl Drop for Flushing {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.coalescer.state.lock().flushing = false;
        }
    }
}

/// Pause before sending again what an unknown outcome sent back to the queue.
const RESEND_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// Sends queued ops until the queue is empty.
async fn flush(shared: Arc<Shared>) {
    let _flushing = Flushing(shared.clone());
    // When the last request carried several callers (a storm), the next one leaves no
    // sooner than `transact_linger` after it: more callers share each entry, and the fixed
    // cost of an entry (a request, a log append with its fsync, a follow frame) is paid
    // fewer times. Nothing waits after a request of one caller (an idle node answers at
    // once), nor when a round trip takes longer than the linger (remote cores).
    let mut last: Option<(Instant, usize)> = None;
    loop {
        if let Some((sent, callers)) = last
            && callers >= 2
            && !shared.transact_linger.is_zero()
            && queued_fits_one_entry(&shared)
        {
            tokio::time::sleep_until((sent + shared.transact_linger).into()).await;
        }
        let batch = {
            let mut st = shared.coalescer.state.lock();
            let mut batch = Vec::new();
            let mut n = 0;
            let mut bytes = 0;
            while let Some(w) = st.queue.front() {
                if !batch.is_empty()
                    && (n + w.ops.len() > MAX_OPS_PER_ENTRY || bytes + w.bytes > MAX_ENTRY_BYTES)
                {
                    break;
                }
                n += w.ops.len();
                bytes += w.bytes;
                batch.extend(st.queue.pop_front());
            }
            if batch.is_empty() {
                st.flushing = false;
                return;
            }
            batch
        };
        let deadline = batch
            .iter()
            .map(|w| w.deadline)
            .min()
            .unwrap_or_else(Instant::now);
        last = Some((Instant::now(), batch.len()));
        let sizes: Vec<usize> = batch.iter().map(|w| w.ops.len()).collect();
        let mut ops = Vec::with_capacity(sizes.iter().sum());
        let mut senders = Vec::with_capacity(batch.len());
        for mut w in batch {
            // Only what may be resent is kept (cloned) for a resend.
            if w.resend_safe {
                ops.extend(w.ops.iter().cloned());
            } else {
                ops.append(&mut w.ops);
            }
            senders.push(w);
        }
        match shared.transact_until(ops, deadline).await {
            Ok(committed) => {
                let mut results = committed.results.into_iter();
                for (w, n) in senders.into_iter().zip(sizes) {
                    let part = Committed {
                        index: committed.index,
                        results: results.by_ref().take(n).collect(),
                    };
                    let _ = w.done.send(Ok(part));
                }
            }
            Err(TransactError::Timeout) => {
                if resend_or_fail(&shared, senders) {
                    tokio::time::sleep(RESEND_PAUSE).await;
                }
            }
            Err(e) => {
                for w in senders {
                    let _ = w.done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Whether what waits in the queue still fits one entry (in ops and bytes): only then is
/// lingering worth it (a full entry's worth goes at once).
fn queued_fits_one_entry(shared: &Shared) -> bool {
    let st = shared.coalescer.state.lock();
    let ops: usize = st.queue.iter().map(|w| w.ops.len()).sum();
    let bytes: usize = st.queue.iter().map(|w| w.bytes).sum();
    ops < MAX_OPS_PER_ENTRY && bytes < MAX_ENTRY_BYTES
}

/// After an unknown outcome: callers whose ops may be applied twice go back to the front of
/// the queue (in their order) while their deadline allows and they still wait; the others
/// get the `Timeout`. True when something was queued again.
fn resend_or_fail(shared: &Shared, waiters: Vec<Waiter>) -> bool {
    let now = Instant::now();
    let mut again = Vec::new();
    for w in waiters {
        if w.done.is_closed() {
            continue; // nobody waits for it any more: never send it again
        }
        if w.resend_safe && now < w.deadline {
            again.push(w);
        } else {
            let _ = w.done.send(Err(TransactError::Timeout));
        }
    }
    if again.is_empty() {
        return false;
    }
    metrics::counter!(m::REPLICA_TRANSACT_RESENT_TOTAL).increment(again.len() as u64);
    tracing::info!(
        callers = again.len(),
        "transaction outcome unknown; sending it again"
    );
    let mut st = shared.coalescer.state.lock();
    for w in again.into_iter().rev() {
        st.queue.push_front(w);
    }
    true
}
