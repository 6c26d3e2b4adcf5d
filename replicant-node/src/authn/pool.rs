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
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let permit = self.slots.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let permit = permit.ok()?;
        tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            out
        })
        .await
        .ok()
    }
}

impl Default for HashPool {
    fn default() -> Self {
        Self::new()
    }
}
