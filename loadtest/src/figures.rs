//! Everything one run (or one scenario phase) counted, as one mergeable value
//! ([`Figures`]): what a worker process sends its parent, what the parent sums, and what
//! `--json` writes. Also the small [`Progress`] snapshot behind the live progress line.
//!
//! Pure. Merging must be exact: sums of counters, counts by reason added, histograms added
//! bucket by bucket, per-subscriber rows concatenated, storm cycles merged by number.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::disconnects::Tally;
use crate::hist::Hist;

/// Error messages kept (later ones are only counted).
pub const MAX_MESSAGES: usize = 16;

/// Loss, duplicate and order counts of one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubscriberFigures {
    /// Client index.
    pub client: u64,
    /// PUBLISH packets received.
    pub received: u64,
    /// Missing sequence numbers (see `seqcheck`).
    pub lost: u64,
    /// Sequence numbers received twice.
    pub duplicated: u64,
    /// Sequence numbers received after a higher one.
    pub out_of_order: u64,
}

/// One connect phase of a storm (0 is the first connect, then one per reconnect cycle).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CycleFigures {
    /// Phase number.
    pub cycle: u32,
    /// Clients that tried.
    pub clients: u64,
    /// Clients connected at the end of the phase.
    pub connected: u64,
    /// Clients that could not connect (after their retries).
    pub unconnected: u64,
    /// Failed attempts by reason (retries included).
    pub failures: BTreeMap<String, u64>,
    /// Seconds from the first connect to the last outcome (slowest worker).
    pub connect_secs: f64,
    /// Seconds the drop took (0 for the last phase).
    pub drop_secs: f64,
    /// Connect-to-CONNACK latency of the successful connects.
    pub connect_latency: Hist,
    /// TLS handshakes completed in full in this phase (`--tls`).
    pub tls_full: u64,
    /// TLS handshakes resumed in this phase (`--tls-resume`).
    pub tls_resumed: u64,
    /// Broker CPU seconds over the connect phase (`--broker-pid`). Every worker samples the
    /// same broker over its own, nearly simultaneous phase: merging keeps the largest.
    pub broker_cpu_secs: Option<f64>,
}

/// The counters of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Worker processes merged into this (1 without `--workers`).
    pub processes: u64,
    /// Clients planned.
    pub clients: u64,
    /// Longest wall time of any process, seconds.
    pub elapsed_secs: f64,
    /// Connects tried (a redirect chain is one).
    pub connect_attempts: u64,
    /// Connects that got a successful CONNACK.
    pub connected: u64,
    /// Connects that failed.
    pub connect_failed: u64,
    /// Failed connects by reason.
    pub connect_failures: BTreeMap<String, u64>,
    /// Server References followed (CONNACK or DISCONNECT 0x9C/0x9D).
    pub redirects: u64,
    /// Seconds from the start to the last accepted connect (slowest process): the connect
    /// phase.
    pub connect_secs: f64,
    /// Clients (conn/sub/pub) that never got a CONNACK: failed, still connecting when the
    /// run ended, or not started yet.
    pub never_connected: u64,
    /// Subscriptions granted (SUBACK).
    pub subscribed: u64,
    /// Most connections open at once (sum over processes of each one's peak).
    pub peak_open: u64,
    /// Connections still open when the run ended (before the clients said goodbye).
    pub open_at_end: u64,
    /// Errors after connecting, by reason.
    pub errors: BTreeMap<String, u64>,
    /// The first error messages.
    pub error_messages: Vec<String>,
    /// PUBLISH packets written.
    pub published: u64,
    /// Publishes acknowledged (PUBACK, or PUBCOMP at QoS 2).
    pub acked: u64,
    /// PUBLISH packets received by subscribers.
    pub received: u64,
    /// Received PUBLISH packets without a loadtest mark.
    pub unmarked: u64,
    /// Lost, summed over subscribers.
    pub lost: u64,
    /// Duplicated, summed over subscribers.
    pub duplicated: u64,
    /// Out of order, summed over subscribers.
    pub out_of_order: u64,
    /// Per subscriber, by client index.
    pub subscribers: Vec<SubscriberFigures>,
    /// Storm phases.
    pub cycles: Vec<CycleFigures>,
    /// Storm: clients not connected at the end of the last phase.
    pub unconnected_at_end: u64,
    /// Connect-to-CONNACK latency, µs.
    pub connect_latency: Hist,
    /// Publish-to-receive latency (mark timestamp to arrival), µs.
    pub e2e_latency: Hist,
    /// TLS handshakes completed in full (`--tls`; retries and redirects included).
    pub tls_full: u64,
    /// TLS handshakes resumed from loadtest's session store (`--tls-resume`).
    pub tls_resumed: u64,
    /// Live connections lost (closed or disconnected by the broker, not by the client),
    /// all clients (see `disconnects`).
    #[serde(default)]
    pub disconnects: u64,
    /// Most live connections one client lost.
    #[serde(default)]
    pub max_disconnects_per_client: u64,
    /// Clients by live connections lost: `{"0": n, "1": n, "2+": n}`.
    #[serde(default)]
    pub clients_by_disconnects: BTreeMap<String, u64>,
    /// Reconnects of clients keeping their session (`-C false`) that found it gone
    /// (CONNACK Session Present = 0).
    #[serde(default)]
    pub sessions_lost: u64,
}

fn add_map(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

impl CycleFigures {
    /// Adds another process's figures of the same phase.
    pub fn merge(&mut self, other: &CycleFigures) {
        self.clients += other.clients;
        self.connected += other.connected;
        self.unconnected += other.unconnected;
        add_map(&mut self.failures, &other.failures);
        self.connect_secs = self.connect_secs.max(other.connect_secs);
        self.drop_secs = self.drop_secs.max(other.drop_secs);
        self.connect_latency.add(&other.connect_latency);
        self.tls_full += other.tls_full;
        self.tls_resumed += other.tls_resumed;
        self.broker_cpu_secs = match (self.broker_cpu_secs, other.broker_cpu_secs) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

impl Figures {
    /// Adds another process's figures of the same run.
    pub fn merge(&mut self, other: &Figures) {
        self.processes += other.processes;
        self.clients += other.clients;
        self.elapsed_secs = self.elapsed_secs.max(other.elapsed_secs);
        self.connect_attempts += other.connect_attempts;
        self.connected += other.connected;
        self.connect_failed += other.connect_failed;
        add_map(&mut self.connect_failures, &other.connect_failures);
        self.redirects += other.redirects;
        self.connect_secs = self.connect_secs.max(other.connect_secs);
        self.subscribed += other.subscribed;
        self.never_connected += other.never_connected;
        self.peak_open += other.peak_open;
        self.open_at_end += other.open_at_end;
        add_map(&mut self.errors, &other.errors);
        for m in &other.error_messages {
            if self.error_messages.len() < MAX_MESSAGES {
                self.error_messages.push(m.clone());
            }
        }
        self.published += other.published;
        self.acked += other.acked;
        self.received += other.received;
        self.unmarked += other.unmarked;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
        self.subscribers.extend_from_slice(&other.subscribers);
        self.subscribers.sort_by_key(|s| s.client);
        for c in &other.cycles {
            match self.cycles.iter_mut().find(|mine| mine.cycle == c.cycle) {
                Some(mine) => mine.merge(c),
                None => self.cycles.push(c.clone()),
            }
        }
        self.cycles.sort_by_key(|c| c.cycle);
        self.unconnected_at_end += other.unconnected_at_end;
        self.connect_latency.add(&other.connect_latency);
        self.e2e_latency.add(&other.e2e_latency);
        self.tls_full += other.tls_full;
        self.tls_resumed += other.tls_resumed;
        let mut tally = Tally::from_report(
            &self.clients_by_disconnects,
            self.disconnects,
            self.max_disconnects_per_client,
        );
        tally.merge(&Tally::from_report(
            &other.clients_by_disconnects,
            other.disconnects,
            other.max_disconnects_per_client,
        ));
        self.set_disconnects(&tally);
        self.sessions_lost += other.sessions_lost;
    }

    /// Writes the per-client disconnect counts.
    pub fn set_disconnects(&mut self, tally: &Tally) {
        self.disconnects = tally.total;
        self.max_disconnects_per_client = tally.max;
        self.clients_by_disconnects = tally.by_count();
    }

    /// Errors after connecting, all reasons.
    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The live counters behind the progress line (summed over workers by the parent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Connections open now.
    pub open: u64,
    /// Successful connects so far.
    pub connected: u64,
    /// Failed connects so far.
    pub connect_failed: u64,
    /// PUBLISH packets written so far.
    pub published: u64,
    /// PUBLISH packets received so far.
    pub received: u64,
    /// Failed connects and errors after connecting, by reason.
    pub errors: BTreeMap<String, u64>,
}

impl Progress {
    /// Adds another process's snapshot.
    pub fn add(&mut self, other: &Progress) {
        self.open += other.open;
        self.connected += other.connected;
        self.connect_failed += other.connect_failed;
        self.published += other.published;
        self.received += other.received;
        add_map(&mut self.errors, &other.errors);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn merge_sums_maps_histograms_rows_and_cycles() {
        let mut a = Figures {
            processes: 1,
            connected: 3,
            elapsed_secs: 2.0,
            ..Figures::default()
        };
        a.connect_failures.insert("timeout".into(), 1);
        a.connect_latency.record(10);
        a.subscribers.push(SubscriberFigures {
            client: 2,
            lost: 1,
            ..SubscriberFigures::default()
        });
        a.cycles.push(CycleFigures {
            cycle: 0,
            connected: 3,
            connect_secs: 1.0,
            ..CycleFigures::default()
        });
        a.tls_resumed = 2;
        let mut tally = Tally::default();
        tally.record(1);
        tally.record(0);
        a.set_disconnects(&tally);
        a.sessions_lost = 1;
        a.cycles[0].tls_full = 1;
        a.cycles[0].broker_cpu_secs = Some(0.5);
        let mut b = a.clone();
        b.cycles[0].broker_cpu_secs = Some(0.7);
        b.elapsed_secs = 3.0;
        b.subscribers[0].client = 1;
        b.connect_failures.insert("refused".into(), 2);
        b.cycles[0].connect_secs = 4.0;
        let mut tally = Tally::default();
        tally.record(3);
        b.set_disconnects(&tally);
        let json = serde_json::to_string(&b).unwrap();
        let b: Figures = serde_json::from_str(&json).unwrap();
        a.merge(&b);
        assert_eq!((a.processes, a.connected, a.elapsed_secs), (2, 6, 3.0));
        assert_eq!(a.connect_failures["timeout"], 2);
        assert_eq!(a.connect_failures["refused"], 2);
        assert_eq!(a.connect_latency.count(), 2);
        let clients: Vec<u64> = a.subscribers.iter().map(|s| s.client).collect();
        assert_eq!(clients, [1, 2]);
        assert_eq!(a.cycles.len(), 1);
        assert_eq!((a.cycles[0].connected, a.cycles[0].connect_secs), (6, 4.0));
        assert_eq!((a.tls_resumed, a.cycles[0].tls_full), (4, 2));
        assert_eq!(a.cycles[0].broker_cpu_secs, Some(0.7));
        assert_eq!((a.disconnects, a.max_disconnects_per_client), (4, 3));
        let by: Vec<u64> = a.clients_by_disconnects.values().copied().collect();
        assert_eq!(by, [1, 1, 1], "0, 1 and 2+ each once");
        assert_eq!(a.sessions_lost, 2);
        // A report from before these fields (a worker of an older build) reads as zeros.
        let mut v = serde_json::to_value(&a).unwrap();
        for k in [
            "disconnects",
            "max_disconnects_per_client",
            "clients_by_disconnects",
            "sessions_lost",
        ] {
            v.as_object_mut().unwrap().remove(k).unwrap();
        }
        let old: Figures = serde_json::from_value(v).unwrap();
        assert_eq!((old.disconnects, old.sessions_lost), (0, 0));
    }
}
