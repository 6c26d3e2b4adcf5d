//! [`CoreLink::transact`]: commits one batch of table operations through the core group
//! and returns once the local replica has applied it (invariant 1: a SUBACK sent after this
//! returns means the route is visible here).
//!
//! Retry policy: a batch is sent again only when it certainly did not commit — no
//! connection or stream could be opened (nothing was sent), or a core answered
//! `NotLeader` (retried on the leader it names, else on a freshly picked core) or
//! `Unavailable` — with back-off until `transact_deadline`. Once the request may have
//! reached a core (written, then no readable reply) the outcome is unknown and the call
//! returns [`TransactError::Timeout`]; it must never resend then, nor build or inspect ops.

use std::time::{Duration, Instant};

use core_node::api::{self, Committed, MAX_ENTRY_BYTES, MAX_OPS_PER_ENTRY, TransactError};
use meshmq_proto::core::{Request, Response, TransactRequest, request, response};
use meshmq_proto::tables::{Batch, Op};
use meshmq_shared::metrics as m;
use meshmq_shared::quic::{self, frame};
use tracing::warn;

use super::wire::WireGuard;
use super::{Backoff, CoreLink, Shared, pick};

/// Where the next attempt goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// The followed core (or a picked one if none is followed now).
    Current,
    /// A core picked afresh.
    Repick,
    /// The leader a core named (`host:port`).
    Leader(String),
}

/// Why an attempt gave no commit.
enum Failed {
    /// Nothing was sent (no connection, no stream): safe to send again.
    NotSent(String),
    /// A core answered, or the outcome is unknown (`Timeout`).
    Answer(TransactError),
}

impl CoreLink {
    /// Commits `ops` as one log entry and waits until the local replica applied it.
    ///
    /// Refuses more than [`MAX_OPS_PER_ENTRY`] ops or [`MAX_ENTRY_BYTES`] bytes of ops
    /// (`Rejected`, naming the bound; split larger work first, see
    /// `core_node::api::split_entries`). Retries on `NotLeader`, `Unavailable`
    /// and unsent requests until `transact_deadline`. [`TransactError::Timeout`] means the
    /// batch may have committed (it is never resent); it is also returned when the batch
    /// committed but the replica did not apply it in time.
    ///
    /// Concurrent calls share requests (see `coalesce`): each caller still gets only its
    /// own ops' results, in order.
    pub async fn transact(&self, ops: Vec<Op>) -> Result<Committed, TransactError> {
        let started = Instant::now();
        let bytes = api::batch_bytes(&ops);
        let result = if ops.is_empty() || ops.len() > MAX_OPS_PER_ENTRY || bytes > MAX_ENTRY_BYTES {
            self.shared.transact_one(ops).await
        } else {
            super::coalesce::Coalescer::submit(&self.shared, ops, bytes)
                .await
                .unwrap_or_else(|_| Err(TransactError::Unavailable("core link stopped".into())))
        };
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        metrics::histogram!(m::REPLICA_TRANSACT_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::counter!(m::REPLICA_TRANSACT_TOTAL, "result" => label).increment(1);
        result
    }
}

impl Shared {
    /// Commits `ops` as one request (the retry loop), without coalescing.
    pub(super) async fn transact_one(&self, ops: Vec<Op>) -> Result<Committed, TransactError> {
        let deadline = Instant::now() + self.transact_deadline;
        self.transact(ops, deadline).await.0
    }

    /// As [`transact_one`](Self::transact_one), giving up at `deadline`.
    pub(super) async fn transact_until(
        &self,
        ops: Vec<Op>,
        deadline: Instant,
    ) -> Result<Committed, TransactError> {
        self.transact(ops, deadline).await.0
    }

    /// The retry loop; returns the outcome and its metric label.
    async fn transact(
        &self,
        ops: Vec<Op>,
        deadline: Instant,
    ) -> (Result<Committed, TransactError>, &'static str) {
        if let Err(e) = api::check_entry(&ops) {
            tracing::warn!(ops = ops.len(), error = %e, "transaction refused before sending");
            return (Err(e), "rejected");
        }
        let req = Request {
            kind: Some(request::Kind::Transact(TransactRequest {
                batch: Some(Batch { ops }),
                forwarded: false,
            })),
            wire: self.dialer.wire.proto(),
        };
        let mut target = Target::Current;
        let mut backoff = Backoff::new();
        loop {
            if self.stop.is_cancelled() {
                let e = TransactError::Unavailable("core link stopped".into());
                return (Err(e), "unavailable");
            }
            let (next, last) = match self.attempt(&target, &req, deadline).await {
                Ok(committed) => return self.until_applied(committed, deadline).await,
                Err(Failed::Answer(e)) if !e.is_retryable() => {
                    let label = e.label();
                    return (Err(e), label);
                }
                Err(Failed::Answer(TransactError::NotLeader {
                    leader: Some(leader),
                })) => (
                    Target::Leader(leader.clone()),
                    TransactError::NotLeader {
                        leader: Some(leader),
                    },
                ),
                Err(Failed::Answer(e)) => (Target::Repick, e),
                Err(Failed::NotSent(why)) => (Target::Repick, TransactError::Unavailable(why)),
            };
            // A newly named leader is tried at once; anything else waits first.
            let delay = match &next {
                Target::Leader(_) if next != target => Duration::ZERO,
                _ => backoff.delay(),
            };
            if Instant::now() + delay >= deadline {
                let label = last.label();
                return (Err(last), label);
            }
            tokio::time::sleep(delay).await;
            target = next;
        }
    }

    /// One attempt on `target`; its reply is awaited at most `request_timeout`, and never
    /// past the whole transaction's `deadline`.
    async fn attempt(
        &self,
        target: &Target,
        req: &Request,
        deadline: Instant,
    ) -> Result<Committed, Failed> {
        let conn = match target {
            Target::Current => match self.current_conn() {
                Some((_, conn)) => Ok(conn),
                None => pick::pick(&self.dialer, &self.cores).await.map(|p| p.conn),
            },
            Target::Repick => pick::pick(&self.dialer, &self.cores).await.map(|p| p.conn),
            Target::Leader(addr) => self.conn_to(addr).await.map(|(_, conn)| conn),
        }
        .map_err(Failed::NotSent)?;
        let left = deadline.saturating_duration_since(Instant::now());
        exchange(
            &conn,
            req,
            self.request_timeout.min(left),
            &self.dialer.wire,
        )
        .await
    }

    /// Waits until the replica applied the committed entry.
    async fn until_applied(
        &self,
        committed: Committed,
        deadline: Instant,
    ) -> (Result<Committed, TransactError>, &'static str) {
        let now = Instant::now();
        let left = deadline
            .saturating_duration_since(now)
            .max(self.request_timeout);
        let applied = self.replica.wait_applied(committed.index, left).await;
        metrics::histogram!(m::REPLICA_APPLY_WAIT_SECONDS).record(now.elapsed().as_secs_f64());
        match applied {
            Ok(()) => (Ok(committed), "ok"),
            Err(e) => {
                warn!(index = committed.index, error = %e, "committed but not applied locally in time");
                (Err(TransactError::Timeout), "lagging")
            }
        }
    }
}

/// Sends the request on a new stream of `conn` and reads the reply, within `timeout`.
async fn exchange(
    conn: &quinn::Connection,
    req: &Request,
    timeout: Duration,
    wire: &WireGuard,
) -> Result<Committed, Failed> {
    let (mut send, mut recv) = match tokio::time::timeout(timeout, conn.open_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(e)) => return Err(Failed::NotSent(format!("open stream: {e}"))),
        Err(_) => return Err(Failed::NotSent("open stream: timed out".into())),
    };
    let reply = tokio::time::timeout(timeout, async {
        frame::write_msg(&mut send, req).await?;
        // The reply is what matters; a finish error shows up when reading it.
        let _ = send.finish();
        frame::read_msg::<Response>(&mut recv, frame::MAX_FRAME).await
    })
    .await;
    let resp = match reply {
        Ok(Ok(Some(resp))) => resp,
        // The core shut down after answering every request it had accepted: this one was
        // never processed, so it is safe to send it to another core.
        Ok(_) if quic::closed_by_shutdown(conn) => {
            return Err(Failed::NotSent(
                "the core shut down before serving it".into(),
            ));
        }
        Ok(Ok(None)) => return Err(unknown("the core closed the stream without a reply")),
        Ok(Err(e)) => return Err(unknown(&format!("reading the reply: {e}"))),
        Err(_) => return Err(unknown("no reply in time")),
    };
    let said = match &resp.kind {
        Some(response::Kind::Error(e)) => Some(e.message.as_str()),
        _ => None,
    };
    // Refused for its version: not served, so another core may be asked (none will).
    let core = conn.remote_address().to_string();
    wire.check(resp.wire.as_ref(), &core, said)
        .map_err(Failed::NotSent)?;
    match resp.kind {
        Some(response::Kind::Transact(t)) => api::from_wire(t).map_err(Failed::Answer),
        // The core refused to serve the request at all (e.g. it could not decode it).
        Some(response::Kind::Error(e)) => Err(Failed::Answer(TransactError::Rejected(e.message))),
        _ => Err(unknown("unexpected response to a transaction")),
    }
}

/// The request may have reached a core but no usable answer came back: the batch may
/// have committed, so it is reported as a timeout and never resent.
fn unknown(why: &str) -> Failed {
    warn!(why, "transaction outcome unknown");
    Failed::Answer(TransactError::Timeout)
}
