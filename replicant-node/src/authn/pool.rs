//! The bounded pool that runs slow password hashes (bcrypt, PBKDF2, Argon2) off the async
//! runtime: at most half the machine's cores hash at once (at least one), so a connect
//! storm with expensive hashes queues here instead of stalling message delivery; and at
//! most [`MAX_WAITING`] checks wait, beyond which a CONNECT is refused as busy rather than
//! held (each waiting check holds a connection).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

/// Most checks waiting for a hashing slot.
pub const MAX_WAITING: usize = 10_000;

/// See the module doc.
pub struct HashPool {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl HashPool {
    /// A pool with half the available cores (at least one).
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        HashPool {
            slots: Arc::new(Semaphore::new((cores / 2).max(1))),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Runs `f` on a blocking thread once a slot is free. `None` when [`MAX_WAITING`]
    /// checks already wait, or the hashing thread failed.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let permit = {
            // Counted while waiting, and uncounted however the wait ends: also when the
            // connection's task is dropped meanwhile (the client went away).
            let waiting = Waiting::enter(&self.waiting)?;
            let permit = self.slots.clone().acquire_owned().await;
            drop(waiting);
            permit.ok()?
        };
        tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            out
        })
        .await
        .ok()
    }
}

/// One check waiting for a slot.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    /// Counts one more waiting check; `None` (nothing counted) when [`MAX_WAITING`] wait.
    fn enter(count: &'a AtomicUsize) -> Option<Self> {
        if count.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Waiting(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Default for HashPool {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_check_dropped_while_waiting_is_no_longer_counted() {
        let pool = HashPool {
            slots: Arc::new(Semaphore::new(1)),
            waiting: AtomicUsize::new(0),
        };
        let held = pool.slots.clone().acquire_owned().await.expect("slot");
        {
            let waiting = pool.run(|| 1);
            tokio::pin!(waiting);
            // Polled once: it waits for the held slot, counted.
            assert!(futures_poll_once(waiting.as_mut()).await.is_none());
            assert_eq!(pool.waiting.load(Ordering::Acquire), 1);
        } // dropped while waiting (the client went away)
        assert_eq!(pool.waiting.load(Ordering::Acquire), 0);
        drop(held);
        assert_eq!(pool.run(|| 2).await, Some(2));
    }

    #[tokio::test]
    async fn beyond_max_waiting_a_check_is_refused_at_once() {
        let pool = HashPool {
            slots: Arc::new(Semaphore::new(1)),
            waiting: AtomicUsize::new(MAX_WAITING),
        };
        assert_eq!(pool.run(|| 1).await, None);
        assert_eq!(pool.waiting.load(Ordering::Acquire), MAX_WAITING);
    }

    /// Polls `f` once: its output if it was ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
