//! Retained-message replay of new subscriptions, paced by the subscriber's flow control.
//!
//! A SUBSCRIBE whose Retain Handling asks for retained messages (0, or 1 on a new
//! subscription; never a shared one) starts a replay of its filter. The connection's main
//! loop runs one step of the replays per turn, after whatever woke it (a read, the mailbox, a
//! timer) and before it writes, so a subscription that matches 100 000 retained messages
//! neither stops the node nor its own connection, and loses none of them:
//! - messages come from the replica in chunks ([`CHUNK`]): one short read lock per chunk,
//!   resumed from a cursor, so applying the log never waits for a whole walk; one chunk at
//!   a time is held in memory;
//! - a QoS 1/2 delivery is handed to the session only while the session would send it at
//!   once (a free in-flight slot, nothing pending): the pending queue stays for live
//!   deliveries, so a replay never causes a `queue_full` drop nor makes this client's
//!   queue look congested to publishers; PUBACKs (reads) make room for the next ones;
//! - QoS 0 deliveries are bounded per turn in bytes ([`TURN_QOS0_BYTES`]), and the turn's
//!   write completes before the next turn.
//!
//! Replays run one at a time, in SUBSCRIBE order. A new SUBSCRIBE of a filter that is being
//! replayed restarts its replay (Retain Handling 0) or lets it finish with the new
//! subscription's options (1 and 2: the subscription exists, nothing new to send). A replay
//! stops at the first step after its subscription left the session (UNSUBSCRIBE, a
//! SUBSCRIBE rolled back), and ends with the connection (MQTT sends retained messages on
//! SUBSCRIBE only: a resumed session does not replay).
//!
//! What a replay delivers follows the walk's promise
//! ([`RetainedCursor`](meshmq_shared::tables::RetainedCursor)): each message retained before
//! the SUBSCRIBE and not changed during the replay, exactly once; a topic at most once; a
//! topic retained or changed during the replay, at most once (live, the subscriber gets
//! it anyway). Each carries RETAIN=1, min(message QoS, subscription QoS) and the
//! subscription's identifier.
//!
//! It must never hold the replica's lock for more than one chunk, never put a retained
//! message in the pending queue, and never wait.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use meshmq_shared::codec::QoS;
use meshmq_shared::metrics as m;
use meshmq_shared::tables::{ChunkBudget, RetainedCursor};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Conn;
use crate::cluster;
use crate::ctx::Ctx;
use crate::message::{Delivery, Message};
use crate::session::{Outgoing, Session, SubOpts};

/// Bounds of one chunk taken from the replica under its read lock.
const CHUNK: ChunkBudget = ChunkBudget {
    max_messages: 256,
    max_bytes: 256 * 1024,
    max_levels: 4096,
};
/// Most retained messages handed to the session per turn of the main loop.
const TURN_MESSAGES: usize = 256;
/// Most QoS 0 bytes (topic and payload) handed to the session per turn; the message that
/// reaches it is included.
const TURN_QOS0_BYTES: usize = 64 * 1024;
/// Most chunks taken per turn (a chunk can hold few messages when little of what it
/// visits matches).
const TURN_CHUNKS: usize = 4;

/// Where a replay's walk of the retained table stands.
enum Walk {
    /// No chunk taken yet.
    Start,
    /// Resume after this cursor.
    After(RetainedCursor),
    /// The walk is complete; what is left is in the chunk.
    Done,
}

/// The replay of one subscription's filter.
struct Replay {
    filter: String,
    /// The subscription's options (QoS, identifier) at the latest SUBSCRIBE.
    opts: SubOpts,
    walk: Walk,
    /// Messages taken from the replica and not yet handed to the session, in walk order.
    chunk: VecDeque<Arc<Message>>,
}

/// How feeding the session from a chunk ended (with the number of messages handed over).
enum Fed {
    /// The chunk is empty: take the next one.
    Emptied(u64),
    /// No more room this turn.
    Blocked(u64),
    /// The session no longer has the subscription: the replay ends.
    Unsubscribed,
}

/// What one turn may still do.
struct Turn {
    messages: usize,
    qos0_bytes: usize,
    chunks: usize,
}

/// The replays of one connection in SUBSCRIBE order; only the first one runs. Each filter
/// has at most one, so there are no more than the connection has subscriptions.
#[derive(Default)]
pub(super) struct Replays {
    queue: VecDeque<Replay>,
}

impl Replays {
    /// A SUBSCRIBE of `filter` was granted. When it asks for retained messages (`wanted`), a
    /// replay starts behind the others, replacing one of the filter already there. When it
    /// asks for none, a replay of the filter still running goes on with the new options,
    /// unless the subscription is new: that replay was for a subscription since removed.
    pub(super) fn subscribed(&mut self, filter: &str, opts: SubOpts, wanted: bool, is_new: bool) {
        if !wanted {
            if is_new {
                self.remove(filter, "unsubscribed");
            } else if let Some(r) = self.queue.iter_mut().find(|r| r.filter == filter) {
                r.opts = opts;
            }
            return;
        }
        self.remove(filter, "replaced");
        self.queue.push_back(Replay {
            filter: filter.to_owned(),
            opts,
            walk: Walk::Start,
            chunk: VecDeque::new(),
        });
        metrics::gauge!(m::RETAINED_REPLAYS).increment(1.0);
    }

    fn remove(&mut self, filter: &str, outcome: &'static str) {
        let before = self.queue.len();
        self.queue.retain(|r| r.filter != filter);
        ended(outcome, before - self.queue.len());
    }
}

impl Drop for Replays {
    /// The connection ended with replays left: they end with it.
    fn drop(&mut self) {
        ended("closed", self.queue.len());
    }
}

/// Counts `n` replays that ended with `outcome`.
fn ended(outcome: &'static str, n: usize) {
    if n > 0 {
        metrics::counter!(m::RETAINED_REPLAYS_TOTAL, "outcome" => outcome).increment(n as u64);
        metrics::gauge!(m::RETAINED_REPLAYS).decrement(n as f64);
    }
}

impl Replay {
    /// Takes the next chunk from the replica (one short read lock).
    fn fetch(&mut self, ctx: &Ctx) {
        let from = match &self.walk {
            Walk::Start => None,
            Walk::After(cursor) => Some(cursor),
            Walk::Done => return,
        };
        let next = cluster::retained_chunk(ctx, &self.filter, from, CHUNK, &mut self.chunk);
        self.walk = next.map_or(Walk::Done, Walk::After);
    }

    /// Hands the session what its flow control takes now, within `turn`; nothing once the
    /// session no longer has the subscription (UNSUBSCRIBE, or a SUBSCRIBE rolled back).
    fn feed(
        &mut self,
        s: &mut Session,
        now: Instant,
        out: &mut Vec<Outgoing>,
        turn: &mut Turn,
    ) -> Fed {
        if !s.subscriptions.contains_key(self.filter.as_str()) {
            return Fed::Unsubscribed;
        }
        let ids: Vec<u32> = self.opts.subscription_id.into_iter().collect();
        let mut handed = 0;
        while let Some(msg) = self.chunk.front() {
            let qos = msg.qos.min(self.opts.qos);
            let room = if qos == QoS::AtMostOnce {
                turn.qos0_bytes > 0
            } else {
                s.window_room() > 0
            };
            if !room || turn.messages == 0 {
                return Fed::Blocked(handed);
            }
            if qos == QoS::AtMostOnce {
                let size = msg.topic.len() + msg.payload.len();
                turn.qos0_bytes = turn.qos0_bytes.saturating_sub(size);
            }
            let Some(msg) = self.chunk.pop_front() else {
                break;
            };
            turn.messages -= 1;
            handed += 1;
            let d = Delivery {
                msg,
                qos,
                retain: true,
                subscription_ids: ids.clone(),
            };
            s.deliver(now, d, out);
        }
        Fed::Emptied(handed)
    }
}

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Whether a replay step could make progress now (the main loop then takes a turn even
    /// when nothing else woke it).
    pub(super) fn replay_wants_turn(&self) -> bool {
        let Some(r) = self.replays.queue.front() else {
            return false;
        };
        match r.chunk.front() {
            // The next chunk to take, or a finished replay to retire.
            None => true,
            Some(msg) if msg.qos.min(r.opts.qos) == QoS::AtMostOnce => true,
            Some(_) => self.slot.inner.lock().session.window_room() > 0,
        }
    }

    /// One turn of the replays: hands the session what its flow control takes, taking
    /// chunks as they run out, within the bounds of a turn.
    pub(super) fn replay_step(&mut self) {
        let mut turn = Turn {
            messages: TURN_MESSAGES,
            qos0_bytes: TURN_QOS0_BYTES,
            chunks: TURN_CHUNKS,
        };
        while let Some(mut replay) = self.replays.queue.pop_front() {
            if replay.chunk.is_empty() {
                if matches!(replay.walk, Walk::Done) {
                    ended("completed", 1);
                    continue;
                }
                let take = turn.chunks > 0;
                if take {
                    turn.chunks -= 1;
                    replay.fetch(&self.ctx);
                }
                self.replays.queue.push_front(replay);
                if take {
                    continue;
                }
                return;
            }
            let fed = self.with_session(|s, now, out| replay.feed(s, now, out, &mut turn));
            let (handed, blocked) = match fed {
                Some(Fed::Emptied(n)) => (n, false),
                Some(Fed::Blocked(n)) => (n, true),
                Some(Fed::Unsubscribed) => {
                    ended("unsubscribed", 1);
                    continue;
                }
                None => {
                    // Taken over: the connection is ending, and its replays with it.
                    self.replays.queue.push_front(replay);
                    self.replays = Replays::default();
                    return;
                }
            };
            self.replays.queue.push_front(replay);
            metrics::counter!(m::RETAINED_REPLAYED_TOTAL).increment(handed);
            if blocked {
                return;
            }
        }
    }
}
