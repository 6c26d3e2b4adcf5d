//! The follow task: keeps the replica following one core's committed log.
//!
//! One session = pick a core, send `Follow{from_index: applied + 1}`, apply every frame.
//! A session ends on silence (no frame for [`FRAME_TIMEOUT`]; cores send a heartbeat every
//! 250 ms when idle), on a dead connection (no byte at all for [`DEAD_AFTER`]: the
//! connection is then closed, so that transactions waiting on it fail over at once instead
//! of waiting out their reply timeout), a gap, a malformed frame, the end of the stream or
//! any connection error. A snapshot streamed in chunks is assembled apart from the replica
//! and installed only when complete ([`snapshot`](super::snapshot)), so a session that ends
//! inside one leaves the replica as it was. The task then counts a core switch, backs off
//! (100 ms doubling to 2 s, jittered) and starts a new session from wherever the replica
//! is. It never starts from index 1 unless the replica is empty, never applies a frame out
//! of order (the replica refuses), and never panics on what a core sends.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use meshmq_proto::core::{FollowFrame, FollowRequest, Request, follow_frame, request};
use meshmq_shared::metrics as m;
use meshmq_shared::quic::frame::{self, FrameError};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::pick::{self, Picked};
use super::snapshot::{Receiver, Step};
use super::{Backoff, Shared};
use crate::replica::ReplicaError;

/// A follow stream that completes no frame for this long is given up (cores send a
/// heartbeat every 250 ms when idle).
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(3);
/// A connection that receives no byte at all for this long is taken for dead (a core that
/// crashed, or a network that dropped it): closed at once, so that transactions waiting on
/// it fail now and go to another core instead of waiting out their own timeout. Cores send
/// a heartbeat every 250 ms and QUIC acknowledges our keep-alives (every 500 ms), so a live
/// core is never this quiet; a large frame in transit keeps bytes flowing. Silence is only
/// counted while this task runs on time (a stalled runtime proves nothing about the core).
pub const DEAD_AFTER: Duration = Duration::from_secs(1);
/// How often the follow task looks at the connection's received bytes.
const LIVENESS_TICK: Duration = Duration::from_millis(250);

/// How a follow session ended.
struct Ended {
    /// Short label for logs and the switch counter.
    reason: &'static str,
    /// What happened, for logs and the start error.
    detail: String,
    /// A frame was applied during the session (the back-off starts over).
    progress: bool,
    /// A core was being followed (so this counts as a core switch).
    connected: bool,
    /// The connection is suspect (silent, broken, malformed): close it so nothing else
    /// keeps using it.
    close: bool,
}

impl Ended {
    /// A session that ended before any core was followed.
    fn before_follow(reason: &'static str, detail: String) -> Self {
        Self {
            reason,
            detail,
            progress: false,
            connected: false,
            close: false,
        }
    }
}

/// Runs follow sessions until the link stops. `first` gets the commit index of the first
/// core followed (the start-up catch-up target).
pub async fn run(shared: Arc<Shared>, first: oneshot::Sender<u64>) {
    let mut first = Some(first);
    let mut backoff = Backoff::new();
    loop {
        let ended = tokio::select! {
            _ = shared.stop.cancelled() => break,
            ended = session(&shared, &mut first) => ended,
        };
        shared.current.lock().take();
        if ended.progress {
            backoff.reset();
        }
        if ended.connected {
            shared.core_switches.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::REPLICA_CORE_SWITCHES_TOTAL, "reason" => ended.reason)
                .increment(1);
            warn!(reason = ended.reason, detail = %ended.detail, "follow stream ended; picking a core again");
        } else {
            warn!(reason = ended.reason, detail = %ended.detail, "no core to follow");
        }
        *shared.last_error.lock() = ended.detail;
        let delay = backoff.delay();
        tokio::select! {
            _ = shared.stop.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    shared.current.lock().take();
}

/// One session: pick, ask to follow from `applied + 1`, apply frames until it ends.
async fn session(shared: &Shared, first: &mut Option<oneshot::Sender<u64>>) -> Ended {
    let Picked { addr, conn, status } = match pick::pick(&shared.dialer, &shared.cores).await {
        Ok(p) => p,
        Err(e) => return Ended::before_follow("no_core", e),
    };
    note_commit(shared, status.commit_index);
    let from = shared.replica.applied_index() + 1;
    let mut recv = match open(shared, &conn, from).await {
        Ok(recv) => recv,
        Err(e) => {
            shared.dialer.forget(addr, "follow failed");
            return Ended::before_follow("open", format!("follow {addr}: {e}"));
        }
    };
    *shared.current.lock() = Some((addr, conn.clone()));
    if let Some(tx) = first.take() {
        // Start may have given up waiting; nothing to do then.
        let _ = tx.send(status.commit_index);
    }
    info!(core = %addr, from, "following core");
    let mut ended = stream(shared, &conn, &mut recv).await;
    ended.detail = format!("core {addr}: {}", ended.detail);
    if ended.close {
        shared.dialer.forget(addr, ended.reason);
    }
    if ended.reason == "dead" {
        conn.close(0u32.into(), b"no bytes received");
    }
    ended
}

/// Opens the follow stream and sends the request.
async fn open(
    shared: &Shared,
    conn: &quinn::Connection,
    from_index: u64,
) -> Result<quinn::RecvStream, String> {
    let req = Request {
        kind: Some(request::Kind::Follow(FollowRequest {
            from_index,
            node: shared.node.clone(),
            projected: shared.replica.projected_for().is_some(),
        })),
        wire: shared.dialer.wire.proto(),
    };
    let opened = tokio::time::timeout(shared.request_timeout, async {
        let (mut send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        frame::write_msg(&mut send, &req)
            .await
            .map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        Ok(recv)
    })
    .await;
    opened.unwrap_or_else(|_| Err("timed out".into()))
}

/// Reads and applies frames until the stream ends; says how it ended. A snapshot still being
/// received then is dropped.
async fn stream(shared: &Shared, conn: &quinn::Connection, recv: &mut quinn::RecvStream) -> Ended {
    let mut snapshot = Receiver::default();
    let ended = frames(shared, conn, recv, &mut snapshot).await;
    snapshot.abandon(shared);
    ended
}

/// The frame loop of [`stream`].
async fn frames(
    shared: &Shared,
    conn: &quinn::Connection,
    recv: &mut quinn::RecvStream,
    snapshot: &mut Receiver,
) -> Ended {
    let mut progress = false;
    let mut first = true;
    let end = |reason: &'static str, detail: String, close: bool, progress: bool| Ended {
        reason,
        detail,
        progress,
        connected: true,
        close,
    };
    loop {
        let read = match read_frame(conn, recv, shared.max_frame).await {
            Read::Dead => {
                let detail = format!("no byte received for {DEAD_AFTER:?}");
                return end("dead", detail, true, progress);
            }
            Read::Silent => return end("timeout", "no frame for 3 s".into(), true, progress),
            Read::Frame(r) => *r,
        };
        let frame = match read {
            Ok(None) => return end("closed", "stream ended".into(), false, progress),
            Err(e) => {
                if is_malformed(&e) {
                    count_malformed(shared, e.label());
                }
                return end(e.label(), e.to_string(), true, progress);
            }
            Ok(Some(frame)) => frame,
        };
        // A frame without a kind is malformed (the replica says so below), not a refusal.
        if std::mem::take(&mut first)
            && frame.kind.is_some()
            && let Err(refused) = check_wire(shared, conn, &frame)
        {
            return end("wire_refused", refused, true, progress);
        }
        let reported = reported_commit(&frame);
        let frame = match snapshot.on_frame(shared, frame) {
            Step::Apply(frame) => *frame,
            Step::Staged => continue,
            Step::Installed => {
                progress = true;
                note_reported(shared, reported);
                continue;
            }
            Step::Abort { reason, detail } => {
                if reason != "too_large" {
                    count_malformed(shared, reason);
                }
                return end("snapshot", detail, true, progress);
            }
        };
        match shared.replica.apply(frame) {
            Ok(()) => progress = true,
            Err(e @ ReplicaError::Gap { .. }) => {
                return end("gap", e.to_string(), false, progress);
            }
            Err(e) => {
                count_malformed(shared, "invalid_frame");
                return end("malformed", e.to_string(), true, progress);
            }
        }
        note_reported(shared, reported);
    }
}

/// Checks the version on the first frame of a stream (a core that refused this node sends
/// `refused` with the reason); a core that accepts ends any refusal.
fn check_wire(
    shared: &Shared,
    conn: &quinn::Connection,
    frame: &FollowFrame,
) -> Result<(), String> {
    let said = match &frame.kind {
        Some(follow_frame::Kind::Refused(e)) => Some(e.message.as_str()),
        _ => None,
    };
    let core = conn.remote_address().to_string();
    shared.dialer.wire.check(frame.wire.as_ref(), &core, said)?;
    if let Some(said) = said {
        // Same major but refused anyway: say so, as a refusal.
        let text = format!("refused by core {core}: {said}");
        shared.dialer.wire.refuse(&text);
        return Err(text);
    }
    shared.dialer.wire.accepted();
    Ok(())
}

/// Notes the commit index a frame reported and sets the lag gauge.
fn note_reported(shared: &Shared, reported: Option<u64>) {
    if let Some(commit) = reported {
        note_commit(shared, commit);
        let lag = commit.saturating_sub(shared.replica.applied_index());
        metrics::gauge!(m::REPLICATION_LAG_ENTRIES).set(lag as f64);
    }
}

/// What waiting for the next frame gave.
enum Read {
    /// A frame, the end of the stream, or a read error. Boxed: a frame (with its snapshot
    /// of every table) is large, and one allocation per frame is nothing next to it.
    Frame(Box<Result<Option<FollowFrame>, frame::FrameError>>),
    /// No frame completed within [`FRAME_TIMEOUT`] although the connection is alive.
    Silent,
    /// The connection received nothing for [`DEAD_AFTER`].
    Dead,
}

/// Reads the next frame, watching the connection: its received-bytes counter must grow at
/// least every [`DEAD_AFTER`] (the read itself is never cancelled mid-frame except to end
/// the stream).
async fn read_frame(conn: &quinn::Connection, recv: &mut quinn::RecvStream, max: usize) -> Read {
    let read = frame::read_msg::<FollowFrame>(recv, max);
    tokio::pin!(read);
    let started = tokio::time::Instant::now();
    let mut rx = conn.stats().udp_rx.bytes;
    let mut heard = started;
    let mut last_tick = started;
    let mut tick = tokio::time::interval(LIVENESS_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = &mut read => return Read::Frame(Box::new(r)),
            _ = tick.tick() => {
                let now = tokio::time::Instant::now();
                let seen = conn.stats().udp_rx.bytes;
                if seen != rx {
                    (rx, heard) = (seen, now);
                } else if now.duration_since(last_tick) > 2 * LIVENESS_TICK {
                    // This task (or the whole runtime) was not run for a while: what the
                    // core sent meanwhile may still wait to be read. Judge from here on.
                    heard = now;
                } else if now.duration_since(heard) >= DEAD_AFTER {
                    return Read::Dead;
                }
                last_tick = now;
                if now.duration_since(started) >= FRAME_TIMEOUT {
                    return Read::Silent;
                }
            }
        }
    }
}

/// The commit index a frame reports (entries and heartbeats carry one; a snapshot's own
/// index is committed too).
fn reported_commit(frame: &FollowFrame) -> Option<u64> {
    match &frame.kind {
        Some(follow_frame::Kind::Entries(e)) => Some(e.commit_index),
        Some(follow_frame::Kind::Heartbeat(h)) => Some(h.commit_index),
        Some(follow_frame::Kind::Snapshot(s)) => Some(s.index),
        Some(follow_frame::Kind::SnapshotEnd(e)) => Some(e.index),
        Some(
            follow_frame::Kind::SnapshotBegin(_)
            | follow_frame::Kind::SnapshotChunk(_)
            | follow_frame::Kind::Refused(_),
        ) => None,
        None => None,
    }
}

/// Remembers the highest commit index seen.
fn note_commit(shared: &Shared, commit: u64) {
    shared.commit_index.fetch_max(commit, Ordering::Relaxed);
}

/// True for read errors caused by the bytes the core sent (not by the connection).
fn is_malformed(e: &FrameError) -> bool {
    matches!(
        e,
        FrameError::Decode(..) | FrameError::TooLarge { .. } | FrameError::Truncated
    )
}

/// Counts a malformed frame.
fn count_malformed(shared: &Shared, reason: &'static str) {
    shared.malformed_frames.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(m::REPLICA_MALFORMED_FRAMES_TOTAL, "reason" => reason).increment(1);
}
