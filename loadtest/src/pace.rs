//! Rate limiting for one publisher (`--rate`): message `k` is due at `start + k / rate`,
//! so a publisher that fell behind (socket full, QoS 1 window full) catches up with a
//! burst instead of losing the offered load, and one that is on time sends one or a few
//! messages per timer tick.
//!
//! Pure: the caller passes the time in and owns the timer. It must never sleep or read
//! the clock itself.

use std::time::{Duration, Instant};

/// The schedule of one rate-limited publisher.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// When message 0 is due (publishers get staggered starts, so they do not all fire in
    /// the same millisecond).
    start: Instant,
    /// Messages per second for this publisher.
    per_sec: f64,
    /// Messages sent so far.
    sent: u64,
}

impl Pacer {
    /// A schedule of `per_sec` messages per second (positive, finite) from `start`.
    pub fn new(start: Instant, per_sec: f64) -> Pacer {
        Pacer {
            start,
            per_sec,
            sent: 0,
        }
    }

    /// Messages due at `now` and not yet sent.
    pub fn due(&self, now: Instant) -> u64 {
        let Some(elapsed) = now.checked_duration_since(self.start) else {
            return 0;
        };
        // Message k is due once elapsed >= k / rate: floor(elapsed * rate) + 1 are due.
        let due = (elapsed.as_secs_f64() * self.per_sec).floor() as u64 + 1;
        due.saturating_sub(self.sent)
    }

    /// When the next unsent message is due.
    pub fn next_at(&self) -> Instant {
        let offset = Duration::try_from_secs_f64(self.sent as f64 / self.per_sec)
            .unwrap_or(Duration::MAX / 4);
        self.start + offset
    }

    /// Records `n` messages as sent.
    pub fn sent(&mut self, n: u64) {
        self.sent += n;
    }
}

/// Splits a total rate over `publishers`: each gets `total / publishers` per second, and
/// publisher `index` starts `index / total` seconds after `t0`, so together they send
/// evenly spaced messages.
pub fn pacer_for(t0: Instant, total_per_sec: f64, publishers: usize, index: usize) -> Pacer {
    let n = publishers.max(1) as f64;
    let phase = Duration::try_from_secs_f64(index as f64 / total_per_sec).unwrap_or_default();
    Pacer::new(t0 + phase, total_per_sec / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_follows_the_schedule_and_catches_up() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 100.0);
        assert_eq!(p.due(t0), 1, "message 0 is due at start");
        p.sent(1);
        assert_eq!(p.due(t0 + Duration::from_millis(5)), 0);
        assert_eq!(p.next_at(), t0 + Duration::from_millis(10));
        assert_eq!(p.due(t0 + Duration::from_millis(10)), 1);
        assert_eq!(p.due(t0 + Duration::from_millis(95)), 9, "late: a burst");
        p.sent(9);
        assert_eq!(p.due(t0 + Duration::from_millis(99)), 0);
        assert_eq!(p.next_at(), t0 + Duration::from_millis(100));
    }

    #[test]
    fn nothing_is_due_before_start() {
        let t0 = Instant::now();
        let p = Pacer::new(t0 + Duration::from_secs(1), 10.0);
        assert_eq!(p.due(t0), 0);
    }

    #[test]
    fn total_rate_is_split_and_staggered() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        let pacers: Vec<Pacer> = (0..4).map(|i| pacer_for(t0, 2000.0, 4, i)).collect();
        let total: u64 = pacers.iter().map(|p| p.due(later)).sum();
        assert!((1999..=2004).contains(&total), "{total}");
        assert_eq!(pacers[1].next_at(), t0 + Duration::from_micros(500));
        assert_eq!(pacers[3].next_at(), t0 + Duration::from_micros(1500));
    }
}
