//! The counters every client of one run (or scenario phase) adds to while it runs: atomics
//! for the hot counts, small locked maps for counts by reason, locked histograms fed in
//! batches (one lock per read, not per message), and the rows finished subscribers leave.
//! [`Live::progress`] feeds the progress line; [`Live::figures`] is the final count.
//!
//! Clients only add. Nothing here blocks for long or allocates per message.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::disconnects::Tally;
use crate::figures::{CycleFigures, Figures, MAX_MESSAGES, Progress, SubscriberFigures};
use crate::hist::Hist;

/// Shared counters of one run.
#[derive(Debug)]
pub struct Live {
    /// When the counting started (connect times are measured from here).
    started: std::time::Instant,
    /// Nanoseconds from `started` to the start of the run ([`Live::mark_start`]).
    start_ns: AtomicU64,
    /// Nanoseconds from `started` to the latest accepted connect.
    last_connect_ns: AtomicU64,
    /// Connects tried.
    pub attempts: AtomicU64,
    /// Connects accepted.
    pub connected: AtomicU64,
    /// Clients that got a CONNACK at least once.
    pub clients_connected: AtomicU64,
    /// Connects failed.
    pub connect_failed: AtomicU64,
    /// Redirects followed.
    pub redirects: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Most open at once.
    pub peak_open: AtomicU64,
    /// Subscriptions granted (SUBACK).
    pub subscribed: AtomicU64,
    /// PUBLISH packets written.
    pub published: AtomicU64,
    /// PUBACK / PUBCOMP received.
    pub acked: AtomicU64,
    /// PUBLISH packets received.
    pub received: AtomicU64,
    /// Received without a mark.
    pub unmarked: AtomicU64,
    /// Reconnects that found the session gone (Session Present = 0 with `-C false`).
    pub sessions_lost: AtomicU64,
    /// Finished clients by live connections lost.
    disconnects: Mutex<Tally>,
    connect_failures: Mutex<BTreeMap<String, u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    messages: Mutex<Vec<String>>,
    connect_latency: Mutex<Hist>,
    e2e_latency: Mutex<Hist>,
    subscribers: Mutex<Vec<SubscriberFigures>>,
    cycles: Mutex<Vec<CycleFigures>>,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            started: std::time::Instant::now(),
            start_ns: AtomicU64::new(0),
            last_connect_ns: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            clients_connected: AtomicU64::new(0),
            connect_failed: AtomicU64::new(0),
            redirects: AtomicU64::new(0),
            open: AtomicU64::new(0),
            peak_open: AtomicU64::new(0),
            subscribed: AtomicU64::new(0),
            published: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            received: AtomicU64::new(0),
            unmarked: AtomicU64::new(0),
            sessions_lost: AtomicU64::new(0),
            disconnects: Mutex::default(),
            connect_failures: Mutex::default(),
            errors: Mutex::default(),
            messages: Mutex::default(),
            connect_latency: Mutex::default(),
            e2e_latency: Mutex::default(),
            subscribers: Mutex::default(),
            cycles: Mutex::default(),
        }
    }
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, reason: String) {
    if let Ok(mut m) = map.lock() {
        *m.entry(reason).or_default() += 1;
    }
}

/// Adds `n` to an atomic counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Live {
    /// Fresh counters.
    pub fn new() -> Live {
        Live::default()
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The run starts now (a scenario phase may be created before its delay).
    pub fn mark_start(&self) {
        self.start_ns.store(self.now_ns(), Ordering::Relaxed);
    }

    fn keep_message(&self, who: &str, err: &anyhow::Error) {
        if let Ok(mut m) = self.messages.lock()
            && m.len() < MAX_MESSAGES
        {
            m.push(format!("{who}: {err:#}"));
        }
    }

    /// Counts a failed connect by `reason`.
    pub fn connect_failed(&self, who: &str, reason: String, err: &anyhow::Error) {
        add(&self.connect_failed, 1);
        bump(&self.connect_failures, reason);
        self.keep_message(who, err);
    }

    /// Counts an accepted connect and its latency.
    pub fn connect_ok(&self, latency_us: u64) {
        add(&self.connected, 1);
        self.last_connect_ns
            .fetch_max(self.now_ns(), Ordering::Relaxed);
        if let Ok(mut h) = self.connect_latency.lock() {
            h.record(latency_us);
        }
    }

    /// A connection opened.
    pub fn opened(&self) {
        let now = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_open.fetch_max(now, Ordering::Relaxed);
    }

    /// A connection closed.
    pub fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts an error after connecting.
    pub fn error(&self, who: &str, reason: String, err: &anyhow::Error) {
        bump(&self.errors, reason);
        self.keep_message(who, err);
    }

    /// Records publish-to-receive latencies (µs) of one read.
    pub fn e2e(&self, micros: &[u64]) {
        if micros.is_empty() {
            return;
        }
        if let Ok(mut h) = self.e2e_latency.lock() {
            for &us in micros {
                h.record(us);
            }
        }
    }

    /// A subscriber finished: keep its row.
    pub fn subscriber_done(&self, row: SubscriberFigures) {
        if let Ok(mut rows) = self.subscribers.lock() {
            rows.push(row);
        }
    }

    /// A client finished, having lost `lost` live connections.
    pub fn client_done(&self, lost: u64) {
        if let Ok(mut t) = self.disconnects.lock() {
            t.record(lost);
        }
    }

    /// A storm phase finished.
    pub fn cycle_done(&self, cycle: CycleFigures) {
        if let Ok(mut c) = self.cycles.lock() {
            c.push(cycle);
        }
    }

    /// The snapshot behind the progress line.
    pub fn progress(&self) -> Progress {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut errors = self
            .connect_failures
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        if let Ok(m) = self.errors.lock() {
            for (k, v) in m.iter() {
                *errors.entry(k.clone()).or_default() += v;
            }
        }
        Progress {
            open: load(&self.open),
            connected: load(&self.connected),
            connect_failed: load(&self.connect_failed),
            published: load(&self.published),
            received: load(&self.received),
            errors,
        }
    }

    /// Everything counted, for one process; `clients`, `elapsed_secs` and `open_at_end`
    /// are the caller's.
    pub fn figures(&self) -> Figures {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut subscribers = self
            .subscribers
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        subscribers.sort_by_key(|s| s.client);
        let mut cycles = self.cycles.lock().map(|c| c.clone()).unwrap_or_default();
        cycles.sort_by_key(|c| c.cycle);
        let tally = self.disconnects.lock().map(|t| *t).unwrap_or_default();
        let mut figures = Figures {
            processes: 1,
            connect_attempts: load(&self.attempts),
            connected: load(&self.connected),
            connect_failed: load(&self.connect_failed),
            connect_failures: self
                .connect_failures
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default(),
            redirects: load(&self.redirects),
            connect_secs: load(&self.last_connect_ns).saturating_sub(load(&self.start_ns)) as f64
                / 1e9,
            subscribed: load(&self.subscribed),
            peak_open: load(&self.peak_open),
            errors: self.errors.lock().map(|m| m.clone()).unwrap_or_default(),
            error_messages: self.messages.lock().map(|m| m.clone()).unwrap_or_default(),
            published: load(&self.published),
            acked: load(&self.acked),
            received: load(&self.received),
            unmarked: load(&self.unmarked),
            lost: subscribers.iter().map(|s| s.lost).sum(),
            duplicated: subscribers.iter().map(|s| s.duplicated).sum(),
            out_of_order: subscribers.iter().map(|s| s.out_of_order).sum(),
            subscribers,
            cycles,
            connect_latency: self
                .connect_latency
                .lock()
                .map(|h| h.clone())
                .unwrap_or_default(),
            e2e_latency: self
                .e2e_latency
                .lock()
                .map(|h| h.clone())
                .unwrap_or_default(),
            sessions_lost: load(&self.sessions_lost),
            ..Figures::default()
        };
        figures.set_disconnects(&tally);
        figures
    }
}
