//! The sampled publish-to-deliver latency (`meshmq_message_delivery_latency_seconds`): which
//! accepted client PUBLISHes are measured, the mark a sampled message carries, and the
//! observation when a copy of it has been written to a subscriber's connection.
//!
//! One in `metrics.latency_sample_every` accepted PUBLISHes is sampled (a process-wide
//! count, so the rate holds however the publishes are spread over connections); the
//! message then carries a [`Sampled`] mark. A delivery on this node is measured on the
//! monotonic clock (`path="local"`). A message forwarded to another replicant carries the
//! mark as wall-clock microseconds (`PeerMessage.sampled_at_us`): an `Instant` means nothing
//! on another host, so the receiver turns the wall-clock age back into a local `Instant`
//! and its deliveries are labelled `path="remote"`; they include the peer hop and any clock
//! skew between the two nodes (NTP keeps that to milliseconds; a negative age counts as 0).
//!
//! It must stay cheap on the message path: an unsampled message costs one relaxed atomic
//! increment at accept time (none with sampling off) and a branch per delivery; it never
//! allocates and never records a label that is not a static string.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meshmq_shared::metrics as m;

/// Accepted PUBLISHes counted for sampling, process-wide.
static ACCEPTED: AtomicU64 = AtomicU64::new(0);

/// The mark of a sampled message: when it was accepted, and whether that was on another
/// node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampled {
    /// When the publishing node accepted it, on this node's monotonic clock.
    pub at: Instant,
    /// It came from another replicant (its `at` was derived from a wall-clock time).
    pub remote: bool,
}

/// The mark for a PUBLISH accepted at `now` if it is the one in `every` to sample (0: never,
/// 1: always).
pub fn sample(every: u32, now: Instant) -> Option<Sampled> {
    let pick = match every {
        0 => false,
        1 => true,
        n => ACCEPTED
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(u64::from(n)),
    };
    pick.then_some(Sampled {
        at: now,
        remote: false,
    })
}

/// The mark as the peer wire carries it: wall-clock microseconds since the Unix epoch.
pub fn to_wire(s: &Sampled) -> Option<u64> {
    let wall = SystemTime::now().checked_sub(s.at.elapsed())?;
    let us = wall.duration_since(UNIX_EPOCH).ok()?.as_micros();
    u64::try_from(us).ok()
}

/// The mark of a message that arrived from a peer with `sampled_at_us`, as of `now`.
pub fn from_wire(sampled_at_us: u64, now: Instant) -> Sampled {
    // A clock behind the sender's gives a negative age, an absurd time none: 0.
    let age = UNIX_EPOCH
        .checked_add(Duration::from_micros(sampled_at_us))
        .and_then(|sent| SystemTime::now().duration_since(sent).ok())
        .unwrap_or_default();
    Sampled {
        at: now.checked_sub(age).unwrap_or(now),
        remote: true,
    }
}

/// Records one delivery of a sampled message, written at `now`.
pub fn observe(s: &Sampled, now: Instant) {
    let secs = now.saturating_duration_since(s.at).as_secs_f64();
    // Literal labels: the macro builds a static key, nothing is allocated.
    if s.remote {
        metrics::histogram!(m::DELIVERY_LATENCY_SECONDS, "path" => "remote").record(secs);
    } else {
        metrics::histogram!(m::DELIVERY_LATENCY_SECONDS, "path" => "local").record(secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_zero_never_and_one_always() {
        let now = Instant::now();
        assert!((0..10).all(|_| sample(0, now).is_none()));
        assert!((0..10).all(|_| sample(1, now).is_some()));
    }

    #[test]
    fn one_in_n_is_sampled() {
        let now = Instant::now();
        // Other tests may count concurrently: over 4 × 1000 picks, about 1000 (±1 per
        // concurrent increment, and no other test samples with n > 1).
        let picked = (0..4000).filter(|_| sample(4, now).is_some()).count();
        assert!((990..=1010).contains(&picked), "{picked}");
    }

    #[test]
    fn the_wire_form_keeps_the_age() {
        let now = Instant::now();
        let s = Sampled {
            at: now.checked_sub(Duration::from_millis(250)).unwrap_or(now),
            remote: false,
        };
        let back = from_wire(to_wire(&s).unwrap_or_default(), Instant::now());
        assert!(back.remote);
        let age = Instant::now().saturating_duration_since(back.at);
        assert!(
            age >= Duration::from_millis(249) && age < Duration::from_secs(2),
            "{age:?}"
        );
        // A time in the future (clock skew) is an age of 0, not a panic.
        assert_eq!(from_wire(u64::MAX / 2, now).at, now);
        assert_eq!(from_wire(u64::MAX, now).at, now);
    }
}
