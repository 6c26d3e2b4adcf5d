//! [`LogGate`]: at most one log line per period for a warning that a client can cause over
//! and over (an HTTP authentication or authorization service that is down answers every
//! CONNECT and every PUBLISH with a failure). The lines in between are counted, and the
//! next line says how many were left out; the metrics count every one.
//!
//! Owns only the timing; it never logs itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One gate per kind of warning.
#[derive(Debug)]
pub struct LogGate {
    /// When the gate was made: times are kept as milliseconds since then.
    origin: Instant,
    /// The period in milliseconds.
    period_ms: u64,
    /// When the last line was let through (ms since `origin`, plus one; 0: never).
    last_ms: AtomicU64,
    /// Lines held back since then.
    held: AtomicU64,
}

impl LogGate {
    /// A gate letting one line through per `period`.
    pub fn new(period: Duration) -> Self {
        LogGate {
            origin: Instant::now(),
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            last_ms: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(n)`: log now, and say `n` lines were left out since the last one; `None`: hold
    /// this one back (counted).
    pub fn pass(&self) -> Option<u64> {
        let now = u64::try_from(self.origin.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last_ms.load(Ordering::Acquire);
        let due = last == 0 || now.saturating_sub(last) >= self.period_ms;
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::AcqRel));
        }
        self.held.fetch_add(1, Ordering::AcqRel);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_and_the_count_of_the_rest() {
        let g = LogGate::new(Duration::from_secs(3600));
        assert_eq!(g.pass(), Some(0), "the first line goes through");
        assert_eq!((g.pass(), g.pass(), g.pass()), (None, None, None));
        let open = LogGate::new(Duration::ZERO);
        assert_eq!((open.pass(), open.pass()), (Some(0), Some(0)));
        // Past the period, the next line carries the count.
        let g = LogGate::new(Duration::from_millis(1));
        assert_eq!(g.pass(), Some(0));
        g.held.store(5, Ordering::Release);
        g.last_ms.store(1, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(5);
        let got = loop {
            if let Some(n) = g.pass() {
                break n;
            }
            assert!(Instant::now() < deadline, "the gate never opened again");
        };
        assert!(got >= 5, "{got}");
    }
}
