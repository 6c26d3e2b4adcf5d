//! Filling the tables: the synthetic ops of each phase and the concurrent runner that
//! commits them through `Transact`, several requests in flight, with a memory guard that
//! stops a phase when the machine's `MemAvailable` drops under a floor.
//!
//! Rows: client `i` is `bench-client-<i>`; clients `0..persistent` are persistent sessions
//! (claimed with an expiry, then disconnected, each with `subs` subscriptions), the others
//! connected clean sessions. Rows name synthetic nodes `bench-n<k>` that are not in the
//! `nodes` table, so no lease ever purges them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use core_node::api::{self, Committed};
use meshmq_proto::tables::{
    Op, RegistryClaim, RegistryDisconnect, RetainedMessage, RetainedSet, SubOptions,
    SubscriptionSet, op::Kind, op_result::Outcome,
};

use crate::link::Link;
use crate::sys;

/// Session expiry of the persistent sessions: long enough that none expires in a run.
const EXPIRY_SECS: u32 = 7 * 24 * 3600;
/// Synthetic nodes the connected rows are spread over.
const NODES: u64 = 20;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Client id of client `i`.
pub fn client(i: u64) -> String {
    format!("bench-client-{i:010}")
}

/// Stops filling when `MemAvailable` is under `floor` bytes.
pub struct Guard {
    floor: u64,
    tripped: AtomicBool,
}

impl Guard {
    /// A guard with `floor` bytes.
    pub fn new(floor: u64) -> Arc<Self> {
        Arc::new(Self {
            floor,
            tripped: AtomicBool::new(false),
        })
    }

    /// Whether filling must stop (checks the machine once).
    pub fn stop(&self) -> bool {
        if self.tripped.load(Ordering::Relaxed) {
            return true;
        }
        if sys::mem_available().is_ok_and(|a| a < self.floor) {
            self.tripped.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Whether it has stopped a phase.
    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::Relaxed)
    }
}

/// What one phase committed.
#[derive(Debug, Clone)]
pub struct Phase {
    /// Ops committed and applied.
    pub applied: u64,
    /// Ops committed but rejected by apply.
    pub rejected: u64,
    /// Wall time of the phase.
    pub seconds: f64,
}

impl Phase {
    /// Committed ops per second.
    pub fn rate(&self) -> f64 {
        (self.applied + self.rejected) as f64 / self.seconds.max(1e-9)
    }
}

type Make = Arc<dyn Fn(u64) -> Vec<Op> + Send + Sync>;
type After = Arc<dyn Fn(u64, &Committed) + Send + Sync>;

/// Commits batches `0..count` (`make(b)` gives batch `b`'s ops, split at the entry bounds)
/// with `in_flight` workers; `after` sees each committed entry. Stops early when `guard`
/// trips; the first error ends the phase with it.
pub async fn run(
    name: &str,
    link: &Arc<Link>,
    count: u64,
    in_flight: usize,
    guard: &Arc<Guard>,
    make: Make,
    after: After,
) -> Result<Phase> {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let (applied, rejected) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..in_flight.max(1) {
        let (link, next, guard) = (link.clone(), next.clone(), guard.clone());
        let (make, after) = (make.clone(), after.clone());
        let (applied, rejected) = (applied.clone(), rejected.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= count || guard.stop() {
                    return anyhow::Ok(());
                }
                for ops in api::split_entries(make(b)) {
                    let c = link.transact(ops).await?;
                    let bad = c
                        .results
                        .iter()
                        .filter(|r| matches!(r.outcome, Some(Outcome::Rejected(_))))
                        .count() as u64;
                    rejected.fetch_add(bad, Ordering::Relaxed);
                    applied.fetch_add(c.results.len() as u64 - bad, Ordering::Relaxed);
                    after(b, &c);
                }
            }
        }));
    }
    let progress = tokio::spawn({
        let (name, next) = (name.to_owned(), next.clone());
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let done = next.load(Ordering::Relaxed).min(count);
                eprintln!("  {name}: {done}/{count} batches");
            }
        }
    });
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(e) => first_err = first_err.or(Some(e.into())),
        }
    }
    progress.abort();
    if let Some(e) = first_err {
        return Err(e.context(format!("phase {name}")));
    }
    Ok(Phase {
        applied: applied.load(Ordering::Relaxed),
        rejected: rejected.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Claims of clients `b*per..(b+1)*per` (below `rows`); persistent ones ask for an expiry.
pub fn claims(rows: u64, persistent: u64, per: u64) -> Make {
    Arc::new(move |b| {
        let now = now_ms();
        (b * per..((b + 1) * per).min(rows))
            .map(|i| {
                let keep = i < persistent;
                op(Kind::RegistryClaim(RegistryClaim {
                    client_id: client(i),
                    node: format!("bench-n{}", i % NODES),
                    incarnation: 1,
                    clean_start: !keep,
                    session_expiry_secs: if keep { EXPIRY_SECS } else { 0 },
                    protocol_level: 5,
                    now_ms: now,
                    ..Default::default()
                }))
            })
            .collect()
    })
}

/// Records the generation of each persistent client's claim (batch `b` of `per` clients).
pub fn keep_generations(gens: Arc<Vec<AtomicU64>>, per: u64) -> After {
    Arc::new(move |b, c| {
        for (k, r) in c.results.iter().enumerate() {
            let i = (b * per) as usize + k;
            if let (Some(g), Some(Outcome::Claimed(cl))) = (gens.get(i), &r.outcome) {
                g.store(cl.generation, Ordering::Relaxed);
            }
        }
    })
}

/// Disconnects of the persistent clients `b*per..` whose claim committed.
pub fn disconnects(gens: Arc<Vec<AtomicU64>>, per: u64) -> Make {
    Arc::new(move |b| {
        let now = now_ms();
        let end = ((b + 1) * per).min(gens.len() as u64);
        (b * per..end)
            .filter_map(|i| {
                let generation = gens[i as usize].load(Ordering::Relaxed);
                (generation != 0).then(|| {
                    op(Kind::RegistryDisconnect(RegistryDisconnect {
                        client_id: client(i),
                        generation,
                        session_expiry_secs: EXPIRY_SECS,
                        now_ms: now,
                    }))
                })
            })
            .collect()
    })
}

/// `subs` subscriptions of each persistent client `b*per..` (below `clients`).
pub fn subscriptions(clients: u64, subs: u64, per: u64) -> Make {
    Arc::new(move |b| {
        let mut ops = Vec::new();
        for i in b * per..((b + 1) * per).min(clients) {
            for k in 0..subs {
                let filter = if k + 1 == subs {
                    format!("dev/{i}/cfg/#")
                } else {
                    format!("dev/{i}/cmd/{k}")
                };
                ops.push(op(Kind::SubscriptionSet(SubscriptionSet {
                    client_id: client(i),
                    filter,
                    options: Some(SubOptions {
                        qos: 1,
                        ..Default::default()
                    }),
                })));
            }
        }
        ops
    })
}

/// Retained messages `b*per..` (below `count`) of `size` payload bytes each.
pub fn retained(count: u64, size: usize, per: u64) -> Make {
    let payload = bytes::Bytes::from(vec![b'x'; size]);
    Arc::new(move |b| {
        let now = now_ms();
        (b * per..((b + 1) * per).min(count))
            .map(|j| {
                op(Kind::RetainedSet(RetainedSet {
                    message: Some(RetainedMessage {
                        topic: format!("bench/site{}/dev{j}/state", j % 1000),
                        payload: payload.clone(),
                        qos: 1,
                        published_at_ms: now,
                        ..Default::default()
                    }),
                    max_messages: 0,
                    max_bytes: 0,
                }))
            })
            .collect()
    })
}

/// An `After` that does nothing.
pub fn nothing() -> After {
    Arc::new(|_, _| {})
}

fn op(kind: Kind) -> Op {
    Op { kind: Some(kind) }
}
