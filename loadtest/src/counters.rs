//! What the benchmark tasks share while a run lasts: the clock that stamps payloads, the
//! message counters the coordinator snapshots at the edges of the measurement window, the
//! error tally, and the stop signal.
//!
//! Tasks only add to counters (relaxed atomics, once per batch or per read, never per
//! message when avoidable); they never read each other's state or decide when a window
//! starts. This module must never block or allocate on the hot path.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::watch;

/// Error messages kept for the report; later ones are only counted.
const MAX_ERROR_MESSAGES: usize = 16;

/// Counters and the clock shared by every publisher and subscriber of one run.
#[derive(Debug)]
pub struct RunCounters {
    /// Origin of payload timestamps; publishers and subscribers live in one process.
    base: Instant,
    /// Random tag stamped in every payload of this run; deliveries without it are foreign.
    pub run_tag: u64,
    /// PUBLISH packets received that another run sent (a broker still draining it).
    pub foreign: AtomicU64,
    /// PUBLISH packets written to the socket by all publishers.
    pub published: AtomicU64,
    /// PUBACKs received by QoS 1 publishers.
    pub acked: AtomicU64,
    /// PUBLISH packets received, one counter per subscriber.
    pub delivered: Box<[AtomicU64]>,
    /// True while inside the measurement window: subscribers keep latency samples only then.
    pub measuring: AtomicBool,
    /// Connections that failed after setup (closed, protocol error, unknown ack).
    errors: AtomicU64,
    /// The first few error messages, for the report.
    messages: Mutex<Vec<String>>,
}

/// The counters at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Total PUBLISH packets written.
    pub published: u64,
    /// Total PUBACKs received.
    pub acked: u64,
    /// PUBLISH packets received, per subscriber.
    pub delivered: Vec<u64>,
}

impl Snapshot {
    /// Deliveries summed over subscribers.
    pub fn delivered_total(&self) -> u64 {
        self.delivered.iter().sum()
    }
}

impl RunCounters {
    /// Fresh counters for `subscribers` subscribers; the clock starts now.
    pub fn new(subscribers: usize) -> RunCounters {
        RunCounters {
            base: Instant::now(),
            run_tag: random_tag(),
            foreign: AtomicU64::new(0),
            published: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            delivered: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
            measuring: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            messages: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the run started: the timestamp carried in payloads.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one failed connection and keeps its message if there is room.
    pub fn record_error(&self, who: &str, err: &anyhow::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut messages) = self.messages.lock()
            && messages.len() < MAX_ERROR_MESSAGES
        {
            messages.push(format!("{who}: {err:#}"));
        }
    }

    /// Failed connections so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The kept error messages.
    pub fn error_messages(&self) -> Vec<String> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            published: self.published.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            delivered: self
                .delivered
                .iter()
                .map(|d| d.load(Ordering::Relaxed))
                .collect(),
        }
    }

    /// Whether the measurement window is open.
    pub fn is_measuring(&self) -> bool {
        self.measuring.load(Ordering::Relaxed)
    }
}

/// A random `u64` from the standard library's per-process hasher seed (no `rand` needed).
fn random_tag() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// The sending side of a stop signal; dropping it stops every [`Stop`] too.
#[derive(Debug)]
pub struct StopTrigger(watch::Sender<bool>);

/// The receiving side of a stop signal, cloned into each task.
#[derive(Debug, Clone)]
pub struct Stop(watch::Receiver<bool>);

/// A new stop signal, not yet fired.
pub fn stop_signal() -> (StopTrigger, Stop) {
    let (tx, rx) = watch::channel(false);
    (StopTrigger(tx), Stop(rx))
}

impl StopTrigger {
    /// Fires the signal.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Stop {
    /// Whether the signal has fired (or its trigger is gone); cheap, for loop heads.
    pub fn is_set(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once the signal fires or its trigger is dropped.
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }
}
