//! Live connections lost per client, and where a client with a persistent session goes
//! when it loses one: the counts a rolling upgrade is judged by ("every client
//! disconnected at most once, no session lost"), the reconnect back-off, and the order of
//! the servers it tries next.
//!
//! A *disconnect* is a live connection (CONNACK accepted) that ended without the client
//! asking: a DISCONNECT from the broker (a Server Reference or not), a close, a reset, a
//! stalled write. A *session lost* is a reconnect of a client that keeps its session
//! (`-C false`, and `-x` > 0 on MQTT 5) whose CONNACK says Session Present = 0.
//!
//! Pure (no I/O, no clock); the client loop in `clients` does the waiting.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::session::Target;

/// Reconnect attempts after one lost connection before the client gives up.
pub const MAX_RETRIES: u32 = 10;
/// Lost connections after which a client gives up: a broker that accepts and drops (or
/// redirects) a client again and again must not make it loop for the whole run.
pub const MAX_LOSSES: u64 = 100;
/// First pause between reconnect attempts; doubled each time up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between reconnect attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The pause before reconnect attempt `retry` (1-based).
pub fn backoff(retry: u32) -> Duration {
    let shift = retry.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF)
}

/// Where to reconnect after losing the connection to `current` without a Server Reference:
/// every configured server, starting with the one after `current` (or at `own`, the
/// client's round-robin slot, when `current` is not one of them), wrapping around.
pub fn next_targets(all: &[Target], current: &Endpoint, own: usize) -> Vec<Target> {
    if all.is_empty() {
        return Vec::new();
    }
    let start = all
        .iter()
        .position(|t| &t.endpoint == current)
        .map_or(own % all.len(), |i| i + 1);
    (0..all.len())
        .map(|k| all[(start + k) % all.len()].clone())
        .collect()
}

/// Clients counted by how many live connections each lost: the three buckets of the report
/// and the totals. Mergeable across worker processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Clients that lost none, one, two or more.
    pub buckets: [u64; 3],
    /// Live connections lost, all clients.
    pub total: u64,
    /// Most lost by one client.
    pub max: u64,
}

impl Tally {
    /// Counts one client that lost `n` connections.
    pub fn record(&mut self, n: u64) {
        self.buckets[usize::try_from(n.min(2)).unwrap_or(2)] += 1;
        self.total += n;
        self.max = self.max.max(n);
    }

    /// The report's `clients_by_disconnects`: `{"0": n, "1": n, "2+": n}`.
    pub fn by_count(&self) -> BTreeMap<String, u64> {
        ["0", "1", "2+"]
            .iter()
            .zip(self.buckets)
            .map(|(k, v)| ((*k).to_owned(), v))
            .collect()
    }

    /// Back from the report's map (unknown keys are ignored).
    pub fn from_report(by_count: &BTreeMap<String, u64>, total: u64, max: u64) -> Tally {
        let get = |k: &str| by_count.get(k).copied().unwrap_or(0);
        Tally {
            buckets: [get("0"), get("1"), get("2+")],
            total,
            max,
        }
    }

    /// Adds another process's tally.
    pub fn merge(&mut self, other: &Tally) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }
}

/// The pause before reconnecting after the `lost`-th lost connection: none after the first
/// (an evacuation moves a client once and it should come back at once), then growing as
/// [`backoff`] does, so repeated losses cannot become a tight loop.
pub fn pause_after_loss(lost: u64) -> Duration {
    if lost <= 1 {
        return Duration::ZERO;
    }
    backoff(u32::try_from(lost - 1).unwrap_or(u32::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn tally_buckets_totals_and_merge() {
        let mut a = Tally::default();
        for n in [0, 1, 1, 0, 3] {
            a.record(n);
        }
        assert_eq!(a.buckets, [2, 2, 1]);
        assert_eq!((a.total, a.max), (5, 3));
        let mut b = Tally::default();
        b.record(2);
        b.record(0);
        a.merge(&b);
        assert_eq!(a.buckets, [3, 2, 2]);
        assert_eq!((a.total, a.max), (7, 3));
        let map = a.by_count();
        assert_eq!(map["0"], 3);
        assert_eq!(map["2+"], 2);
        assert_eq!(Tally::from_report(&map, 7, 3), a);
    }

    #[test]
    fn no_pause_after_the_first_loss_then_growing() {
        assert_eq!(pause_after_loss(0), Duration::ZERO);
        assert_eq!(pause_after_loss(1), Duration::ZERO);
        assert_eq!(pause_after_loss(2), Duration::from_millis(100));
        assert_eq!(pause_after_loss(3), Duration::from_millis(200));
        assert_eq!(pause_after_loss(MAX_LOSSES), MAX_BACKOFF);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(5), Duration::from_millis(1600));
        assert_eq!(backoff(6), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn next_targets_start_after_the_lost_server() {
        let ep = |p| Endpoint::new("127.0.0.1", p);
        let all: Vec<Target> = (1..=3)
            .map(|p| Target {
                endpoint: ep(p),
                addr: None,
            })
            .collect();
        let ports = |v: Vec<Target>| v.iter().map(|t| t.endpoint.port).collect::<Vec<_>>();
        assert_eq!(ports(next_targets(&all, &ep(2), 0)), [3, 1, 2]);
        assert_eq!(ports(next_targets(&all, &ep(3), 0)), [1, 2, 3]);
        // Moved to a server not in the list: start at the client's own slot.
        assert_eq!(ports(next_targets(&all, &ep(9), 1)), [2, 3, 1]);
        assert!(next_targets(&[], &ep(1), 0).is_empty());
    }
}
