//! [`run`]: CPU-heavy work that must not take the CPU from Raft (building, encoding, cutting
//! and decoding snapshots of millions of rows) on a thread of its own at a lower scheduling
//! priority (nice +10), awaited without blocking the async runtime.
//!
//! On a machine whose CPUs are all busy, a snapshot build at the same priority as the
//! runtime's workers delayed Raft heartbeats past their timeout and the cores held elections
//! (docs/capacity.md). At nice +10 the kernel gives the runtime's threads about nine times
//! the CPU share of the build when both want it; on an idle machine the build runs at full
//! speed. It owns nothing else: the work itself is the caller's.

/// How much lower than the process the background thread runs (Linux keeps a nice value
/// per thread, so only that thread is lowered).
pub const NICE: i32 = 10;

/// Why background work gave no result.
#[derive(Debug, thiserror::Error)]
pub enum BackgroundError {
    /// The thread could not be started.
    #[error("cannot start a background thread: {0}")]
    Spawn(std::io::Error),
    /// The work panicked.
    #[error("background work panicked")]
    Panicked,
}

/// Runs `f` on a new thread named `name`, lowered by [`NICE`] where the platform allows (a
/// failure to lower it leaves it as it was, only less polite), and returns its result.
pub async fn run<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BackgroundError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(f());
        })
        .map_err(BackgroundError::Spawn)?;
    rx.await.map_err(|_| BackgroundError::Panicked)
}

/// Lowers the calling thread's priority by [`NICE`].
fn lower_priority() {
    #[cfg(unix)]
    if let Err(e) = rustix::process::nice(NICE) {
        tracing::debug!(error = %e, "could not lower a background thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn background_work_runs_below_the_callers_priority() {
        let mine = rustix::process::getpriority_process(None).expect("own priority");
        let theirs = run("nice-test", || rustix::process::getpriority_process(None))
            .await
            .expect("ran")
            .expect("its priority");
        assert_eq!(theirs, (mine + NICE).min(19));
        let again = rustix::process::getpriority_process(None).expect("own priority");
        assert_eq!(again, mine, "only the background thread was lowered");
    }

    #[tokio::test]
    async fn a_panic_is_an_error_not_a_crash() {
        let r: Result<(), _> = run("panic-test", || panic!("boom")).await;
        assert!(matches!(r, Err(BackgroundError::Panicked)));
    }
}
