//! The bounded queue of one outgoing peer link, and how it is cut into batches.
//!
//! The queue holds [`Item`]s — forwarded messages, barriers and acks — in ONE order, and
//! accepts them only while its link is connected (`up`): an item for a down peer is refused
//! at once. It holds at most `cap` messages and `cap_bytes` bytes of them (their encoded
//! length; one message larger than that still goes when no other is queued); barriers and
//! acks are tiny and bypass those caps (bounded separately by [`MAX_CONTROL`]), session
//! hand-over items share that count bound and have a byte bound of their own (`cap_bytes`
//! again: they carry queued messages), and an ack pushed right behind another ack raises it
//! instead of queueing a second one. [`Queue::next_batch`] hands the link task
//! everything queued as one `PeerBatch`, up to [`MAX_BATCH_ITEMS`] items or about
//! [`MAX_BATCH_BYTES`], in order. Every connection gets a new session number, so a barrier
//! can tell that the session it was queued on is gone.
//!
//! It owns the items between their push and the write; it never waits while holding its
//! lock, never reorders, and never counts (the caller does).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use meshmq_proto::peer::{PeerBatch, PeerMessage, SessionItem};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::DropReason;

/// Most items (messages, barriers, acks) in one `PeerBatch` frame.
pub const MAX_BATCH_ITEMS: usize = 512;
/// A batch stops growing before it passes this many bytes (a single larger message still
/// goes, alone).
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// Most barriers and acks queued at once (they bypass the message cap, not this one).
pub const MAX_CONTROL: usize = 65_536;
/// Bytes a message adds to a batch besides its own encoding (field tag and length prefix).
const FRAMING: usize = 6;
/// Bytes a barrier or an ack adds to a batch at most (a 10-byte varint and some framing).
const CONTROL_BYTES: usize = 11;

/// A barrier or an ack: tiny, never bounded by the message cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Control {
    /// "Tell me when your replica has applied this index."
    Barrier(u64),
    /// "My replica has applied at least this index."
    Ack(u64),
}

/// One thing queued for a peer.
enum Item {
    /// A forwarded PUBLISH, with its encoded length (computed once, outside the lock).
    Message(usize, PeerMessage),
    /// A barrier or an ack.
    Control(Control),
    /// A session hand-over item, with its encoded length (bounded like barriers and acks:
    /// it carries state that already exists, and must not be dropped for forwarded load).
    Session(usize, SessionItem),
}

impl Item {
    /// Bytes the item adds to a batch (an upper bound for barriers and acks).
    fn framed_len(&self) -> usize {
        match self {
            Item::Message(len, _) | Item::Session(len, _) => len + FRAMING,
            Item::Control(_) => CONTROL_BYTES,
        }
    }
}

/// A bounded FIFO of items for one node, open only while the link is connected.
pub(super) struct Queue {
    /// The items and the link state.
    state: Mutex<QueueState>,
    /// Wakes the link task when an item is pushed.
    wake: Notify,
    /// Wakes publishers waiting for this queue to fall below half its capacity.
    pub(super) drained: Notify,
    /// Most messages held.
    cap: usize,
    /// Most bytes of messages held (and, separately, of session items).
    cap_bytes: usize,
    /// Tests only ([`Queue::hold`]): the link task takes nothing while set.
    held: AtomicBool,
}

/// The part of [`Queue`] behind its lock.
struct QueueState {
    /// Queued items, in push order.
    items: VecDeque<Item>,
    /// How many of `items` are messages (the ones `cap` bounds).
    messages: usize,
    /// Encoded bytes of those messages (what `cap_bytes` bounds).
    bytes: usize,
    /// Encoded bytes of the session items queued (bounded by `cap_bytes` on their own).
    session_bytes: usize,
    /// The link is connected: pushes are accepted.
    up: bool,
    /// The link is stopped for good: pushes are refused and nothing is queued again.
    closed: bool,
    /// Number of the current (or last) connection, raised by every [`Queue::set_up`].
    session: u64,
}

impl QueueState {
    /// Empties the queue; returns how many messages were dropped (barriers and acks are not
    /// counted: a lost barrier is noticed through the session number).
    fn clear(&mut self) -> usize {
        let n = self.messages;
        self.items.clear();
        self.messages = 0;
        self.bytes = 0;
        self.session_bytes = 0;
        n
    }
}

impl Queue {
    /// An empty queue of `cap` messages and `cap_bytes` bytes, not accepting any until
    /// [`set_up`](Self::set_up).
    pub(super) fn new(cap: usize, cap_bytes: usize) -> Self {
        Self {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                messages: 0,
                bytes: 0,
                session_bytes: 0,
                up: false,
                closed: false,
                session: 0,
            }),
            wake: Notify::new(),
            drained: Notify::new(),
            cap,
            cap_bytes,
            held: AtomicBool::new(false),
        }
    }

    /// Tests only: while `held`, the link task writes nothing (items stay queued, in order,
    /// and the link stays up); releasing wakes it.
    pub(super) fn hold(&self, held: bool) {
        self.held.store(held, Ordering::Release);
        if !held {
            self.wake.notify_one();
        }
    }

    /// Past half the message or byte capacity: publishers should slow down.
    fn past_half(&self, s: &QueueState) -> bool {
        s.messages * 2 > self.cap || s.bytes * 2 > self.cap_bytes
    }

    /// Queues `msg` (of encoded length `len`), or says why it cannot. `Ok(true)`: queued,
    /// and the queue is past half its capacity (publishers should slow down).
    pub(super) fn push(&self, len: usize, msg: PeerMessage) -> Result<bool, DropReason> {
        let congested = {
            let mut s = self.state.lock();
            if s.closed || !s.up {
                return Err(DropReason::PeerDown);
            }
            if s.messages >= self.cap || (s.bytes > 0 && s.bytes + len > self.cap_bytes) {
                return Err(DropReason::QueueFull);
            }
            s.items.push_back(Item::Message(len, msg));
            s.messages += 1;
            s.bytes += len;
            self.past_half(&s)
        };
        self.wake.notify_one();
        Ok(congested)
    }

    /// True while more than half the message or byte capacity is used (and the link is up).
    pub(super) fn is_congested(&self) -> bool {
        let s = self.state.lock();
        s.up && !s.closed && self.past_half(&s)
    }

    /// Queues a barrier or an ack past the message cap; returns the session it was queued
    /// on, or why it cannot be queued. An ack right behind another ack raises that one
    /// instead (an ack means "at least").
    pub(super) fn push_control(&self, control: Control) -> Result<u64, DropReason> {
        let session = {
            let mut s = self.state.lock();
            if s.closed || !s.up {
                return Err(DropReason::PeerDown);
            }
            let session = s.session;
            if let (Some(Item::Control(Control::Ack(last))), Control::Ack(n)) =
                (s.items.back_mut(), control)
            {
                *last = (*last).max(n);
                return Ok(session);
            }
            if s.items.len() - s.messages >= MAX_CONTROL {
                return Err(DropReason::QueueFull);
            }
            s.items.push_back(Item::Control(control));
            session
        };
        self.wake.notify_one();
        Ok(session)
    }

    /// Queues a session hand-over item (of encoded length `len`) past the message caps,
    /// within the [`MAX_CONTROL`] bound it shares with barriers and acks and a byte bound of
    /// its own (`cap_bytes`; one item larger still goes when none is queued).
    pub(super) fn push_session(&self, len: usize, item: SessionItem) -> Result<(), DropReason> {
        {
            let mut s = self.state.lock();
            if s.closed || !s.up {
                return Err(DropReason::PeerDown);
            }
            let over_bytes = s.session_bytes > 0 && s.session_bytes + len > self.cap_bytes;
            if s.items.len() - s.messages >= MAX_CONTROL || over_bytes {
                return Err(DropReason::QueueFull);
            }
            s.items.push_back(Item::Session(len, item));
            s.session_bytes += len;
        }
        self.wake.notify_one();
        Ok(())
    }

    /// The current session while the link is connected, `None` while it is down.
    pub(super) fn session(&self) -> Option<u64> {
        let s = self.state.lock();
        (s.up && !s.closed).then_some(s.session)
    }

    /// Starts accepting items on a new session; false if the queue is closed.
    pub(super) fn set_up(&self) -> bool {
        let mut s = self.state.lock();
        s.up = !s.closed;
        if s.up {
            s.session += 1;
        }
        s.up
    }

    /// Stops accepting items and empties the queue; returns how many messages were dropped.
    pub(super) fn set_down(&self) -> usize {
        let n = {
            let mut s = self.state.lock();
            s.up = false;
            s.clear()
        };
        self.drained.notify_waiters();
        n
    }

    /// Closes the queue for good and empties it; returns how many messages were dropped.
    pub(super) fn close(&self) -> usize {
        self.state.lock().closed = true;
        self.set_down()
    }

    /// Takes the next batch: at least one item (waiting for it), at most
    /// [`MAX_BATCH_ITEMS`], and no more than about [`MAX_BATCH_BYTES`].
    pub(super) async fn next_batch(&self) -> PeerBatch {
        loop {
            if !self.held.load(Ordering::Acquire) {
                let batch = self.take();
                if !is_empty(&batch) {
                    return batch;
                }
            }
            // A push between `take` and here left a permit: this returns at once.
            self.wake.notified().await;
        }
    }

    /// Takes what [`next_batch`](Self::next_batch) would, without waiting (may be empty).
    pub(super) fn take(&self) -> PeerBatch {
        let mut s = self.state.lock();
        let mut batch = PeerBatch::default();
        let (mut items, mut bytes) = (0, 0);
        while items < MAX_BATCH_ITEMS {
            let Some(framed) = s.items.front().map(Item::framed_len) else {
                break;
            };
            if items > 0 && bytes + framed > MAX_BATCH_BYTES {
                break;
            }
            match s.items.pop_front() {
                Some(Item::Message(len, msg)) => {
                    s.messages -= 1;
                    s.bytes -= len;
                    batch.messages.push(msg);
                }
                Some(Item::Control(Control::Barrier(n))) => batch.barriers.push(n),
                Some(Item::Control(Control::Ack(n))) => batch.acks.push(n),
                Some(Item::Session(len, item)) => {
                    s.session_bytes -= len;
                    batch.sessions.push(item);
                }
                None => break,
            }
            items += 1;
            bytes += framed;
        }
        let calm = !self.past_half(&s);
        drop(s);
        if calm && !batch.messages.is_empty() {
            self.drained.notify_waiters();
        }
        batch
    }
}

/// True when `batch` carries nothing.
pub(super) fn is_empty(batch: &PeerBatch) -> bool {
    batch.messages.is_empty()
        && batch.barriers.is_empty()
        && batch.acks.is_empty()
        && batch.sessions.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use prost::Message as _;

    fn msg(size: usize) -> (usize, PeerMessage) {
        let m = PeerMessage {
            topic: "t".into(),
            payload: Bytes::from(vec![0u8; size]),
            ..PeerMessage::default()
        };
        (m.encoded_len(), m)
    }

    fn push(q: &Queue, size: usize) -> Result<bool, DropReason> {
        let (len, m) = msg(size);
        q.push(len, m)
    }

    #[test]
    fn the_queue_takes_nothing_while_down_and_bounds_itself_while_up() {
        let q = Queue::new(3, usize::MAX);
        assert_eq!(push(&q, 1), Err(DropReason::PeerDown));
        assert_eq!(
            q.push_control(Control::Barrier(1)),
            Err(DropReason::PeerDown)
        );
        assert!(q.set_up());
        assert_eq!(push(&q, 1), Ok(false));
        assert_eq!(push(&q, 1), Ok(true), "past half: congested");
        assert!(q.is_congested());
        assert_eq!(push(&q, 1), Ok(true));
        assert_eq!(push(&q, 1), Err(DropReason::QueueFull));
        assert_eq!(q.push_control(Control::Barrier(1)), Ok(1), "past the cap");
        assert_eq!(q.set_down(), 3, "only messages are counted");
        assert_eq!(push(&q, 1), Err(DropReason::PeerDown));
        assert_eq!(q.session(), None);
        assert!(q.set_up());
        assert_eq!(q.session(), Some(2), "a new connection is a new session");
        assert_eq!(push(&q, 1), Ok(false));
        assert_eq!(q.close(), 1);
        assert!(!q.set_up(), "a closed queue stays closed");
        assert_eq!(push(&q, 1), Err(DropReason::PeerDown));
        assert_eq!(q.session(), None);
    }

    #[tokio::test]
    async fn taking_a_batch_wakes_publishers_once_under_half() {
        let q = Queue::new(4, usize::MAX);
        assert!(q.set_up());
        for _ in 0..4 {
            push(&q, 1).expect("queued");
        }
        assert!(q.is_congested());
        let drained = q.drained.notified();
        tokio::pin!(drained);
        drained.as_mut().enable();
        assert_eq!(q.take().messages.len(), 4);
        assert!(!q.is_congested());
        tokio::time::timeout(std::time::Duration::from_secs(5), drained)
            .await
            .expect("woken");
    }

    #[test]
    fn batches_are_bounded_in_count_and_bytes_and_keep_order() {
        let q = Queue::new(10_000, usize::MAX);
        assert!(q.set_up());
        for _ in 0..1_000 {
            push(&q, 10).expect("queued");
        }
        assert_eq!(q.take().messages.len(), MAX_BATCH_ITEMS);
        assert_eq!(q.take().messages.len(), 1_000 - MAX_BATCH_ITEMS);
        assert!(is_empty(&q.take()));

        // 300 KiB messages: three fit in 1 MiB, a fourth does not.
        for i in 0..5 {
            let (len, mut m) = msg(300 << 10);
            m.topic = format!("t/{i}");
            q.push(len, m).expect("queued");
        }
        let first: Vec<String> = q.take().messages.into_iter().map(|m| m.topic).collect();
        assert_eq!(first, ["t/0", "t/1", "t/2"]);
        assert_eq!(q.take().messages.len(), 2);

        // A message over the byte bound still goes, alone.
        push(&q, 2 << 20).expect("queued");
        push(&q, 1).expect("queued");
        assert_eq!(q.take().messages.len(), 1);
        assert_eq!(q.take().messages.len(), 1);
    }

    #[test]
    fn barriers_and_acks_share_the_order_and_consecutive_acks_merge() {
        let q = Queue::new(1, usize::MAX);
        assert!(q.set_up());
        push(&q, 1).expect("queued");
        assert_eq!(q.push_control(Control::Barrier(7)), Ok(1));
        assert_eq!(q.push_control(Control::Ack(3)), Ok(1));
        assert_eq!(q.push_control(Control::Ack(5)), Ok(1));
        assert_eq!(q.push_control(Control::Ack(4)), Ok(1));
        let batch = q.take();
        assert_eq!(
            (batch.messages.len(), batch.barriers, batch.acks),
            (1, vec![7], vec![5])
        );
        assert!(is_empty(&q.take()));

        // A barrier cut off from its message by the item bound goes in the next batch.
        let q = Queue::new(MAX_BATCH_ITEMS, usize::MAX);
        assert!(q.set_up());
        for _ in 0..MAX_BATCH_ITEMS {
            push(&q, 1).expect("queued");
        }
        q.push_control(Control::Barrier(9)).expect("queued");
        let first = q.take();
        assert_eq!(
            (first.messages.len(), first.barriers.len()),
            (MAX_BATCH_ITEMS, 0)
        );
        assert_eq!(q.take().barriers, vec![9]);
    }

    #[test]
    fn messages_are_bounded_in_bytes_too_and_one_large_message_still_goes() {
        let (len, _) = msg(1_000);
        let q = Queue::new(1_000, 3 * len);
        assert!(q.set_up());
        assert_eq!(push(&q, 1_000), Ok(false));
        assert_eq!(push(&q, 1_000), Ok(true), "past half the bytes: congested");
        assert_eq!(push(&q, 1_000), Ok(true));
        assert_eq!(
            push(&q, 1_000),
            Err(DropReason::QueueFull),
            "3 × {len} bytes held"
        );
        assert_eq!(push(&q, 1), Err(DropReason::QueueFull));
        assert_eq!(q.take().messages.len(), 3);
        assert!(!q.is_congested(), "the bytes left with the batch");
        assert_eq!(
            push(&q, 10_000),
            Ok(true),
            "alone, over the bound: still queued"
        );
        assert_eq!(push(&q, 1), Err(DropReason::QueueFull));
        assert_eq!(q.set_down(), 1);
        assert!(q.set_up());
        assert_eq!(
            push(&q, 1_000),
            Ok(false),
            "nothing left counted after a clear"
        );

        // Session items have a byte bound of their own, beside the messages'.
        let item = SessionItem::default();
        assert_eq!(q.push_session(2 * len, item.clone()), Ok(()));
        assert_eq!(q.push_session(len, item.clone()), Ok(()));
        assert_eq!(q.push_session(1, item), Err(DropReason::QueueFull));
    }

    #[test]
    fn control_items_have_their_own_bound() {
        let q = Queue::new(1, usize::MAX);
        assert!(q.set_up());
        for i in 0..MAX_CONTROL as u64 {
            q.push_control(Control::Barrier(i)).expect("queued");
        }
        assert_eq!(
            q.push_control(Control::Barrier(0)),
            Err(DropReason::QueueFull)
        );
        assert_eq!(
            push(&q, 1),
            Ok(true),
            "messages have their own cap (1 of 1: past half)"
        );
    }
}
