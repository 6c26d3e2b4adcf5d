//! The bounded queue of one outgoing peer link, and how it is cut into batches.
//!
//! The queue accepts messages only while its link is connected (`up`): a message for a down
//! peer is refused at once. It holds at most `queue_len` messages; [`Queue::next_batch`]
//! hands the link task everything queued, up to [`MAX_BATCH_MESSAGES`] messages or about
//! [`MAX_BATCH_BYTES`], in order. It owns the messages between `forward` and the write; it
//! never waits while holding its lock, never reorders, and never counts (the caller does).

use std::collections::VecDeque;

use meshmq_proto::peer::PeerMessage;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::DropReason;

/// Most messages in one `PeerBatch` frame.
pub const MAX_BATCH_MESSAGES: usize = 512;
/// A batch stops growing before it passes this many bytes (a single larger message still
/// goes, alone).
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// Bytes a message adds to a batch besides its own encoding (field tag and length prefix).
const FRAMING: usize = 6;

/// A bounded FIFO of messages for one node, open only while the link is connected.
pub(super) struct Queue {
    /// The messages with their encoded length, and the link state.
    state: Mutex<QueueState>,
    /// Wakes the link task when a message is pushed.
    wake: Notify,
    /// Most messages held.
    cap: usize,
}

/// The part of [`Queue`] behind its lock.
struct QueueState {
    /// Queued messages with their encoded length (computed once, outside the lock).
    items: VecDeque<(usize, PeerMessage)>,
    /// The link is connected: pushes are accepted.
    up: bool,
    /// The link is stopped for good: pushes are refused and nothing is queued again.
    closed: bool,
}

impl Queue {
    /// An empty queue of `cap` messages, not accepting any until [`set_up`](Self::set_up).
    pub(super) fn new(cap: usize) -> Self {
        Self {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                up: false,
                closed: false,
            }),
            wake: Notify::new(),
            cap,
        }
    }

    /// Queues `msg` (of encoded length `len`), or says why it cannot.
    pub(super) fn push(&self, len: usize, msg: PeerMessage) -> Result<(), DropReason> {
        {
            let mut s = self.state.lock();
            if s.closed || !s.up {
                return Err(DropReason::PeerDown);
            }
            if s.items.len() >= self.cap {
                return Err(DropReason::QueueFull);
            }
            s.items.push_back((len, msg));
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Starts accepting messages; false if the queue is closed.
    pub(super) fn set_up(&self) -> bool {
        let mut s = self.state.lock();
        s.up = !s.closed;
        s.up
    }

    /// Stops accepting messages and empties the queue; returns how many were dropped.
    pub(super) fn set_down(&self) -> usize {
        let mut s = self.state.lock();
        s.up = false;
        let n = s.items.len();
        s.items.clear();
        n
    }

    /// Closes the queue for good and empties it; returns how many were dropped.
    pub(super) fn close(&self) -> usize {
        self.state.lock().closed = true;
        self.set_down()
    }

    /// Takes the next batch: at least one message (waiting for it), at most
    /// [`MAX_BATCH_MESSAGES`], and no more than about [`MAX_BATCH_BYTES`].
    pub(super) async fn next_batch(&self) -> Vec<PeerMessage> {
        loop {
            let batch = self.take();
            if !batch.is_empty() {
                return batch;
            }
            // A push between `take` and here left a permit: this returns at once.
            self.wake.notified().await;
        }
    }

    /// Takes what [`next_batch`](Self::next_batch) would, without waiting (may be empty).
    pub(super) fn take(&self) -> Vec<PeerMessage> {
        let mut s = self.state.lock();
        let mut batch = Vec::with_capacity(s.items.len().min(MAX_BATCH_MESSAGES));
        let mut bytes = 0;
        while batch.len() < MAX_BATCH_MESSAGES {
            let Some(&(len, _)) = s.items.front() else {
                break;
            };
            let framed = len + FRAMING;
            if !batch.is_empty() && bytes + framed > MAX_BATCH_BYTES {
                break;
            }
            let Some((_, msg)) = s.items.pop_front() else {
                break;
            };
            bytes += framed;
            batch.push(msg);
        }
        batch
    }
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

    fn push(q: &Queue, size: usize) -> Result<(), DropReason> {
        let (len, m) = msg(size);
        q.push(len, m)
    }

    #[test]
    fn the_queue_takes_nothing_while_down_and_bounds_itself_while_up() {
        let q = Queue::new(3);
        assert_eq!(push(&q, 1), Err(DropReason::PeerDown));
        assert!(q.set_up());
        for _ in 0..3 {
            assert_eq!(push(&q, 1), Ok(()));
        }
        assert_eq!(push(&q, 1), Err(DropReason::QueueFull));
        assert_eq!(q.set_down(), 3);
        assert_eq!(push(&q, 1), Err(DropReason::PeerDown));
        assert!(q.set_up());
        assert_eq!(push(&q, 1), Ok(()));
        assert_eq!(q.close(), 1);
        assert!(!q.set_up(), "a closed queue stays closed");
        assert_eq!(push(&q, 1), Err(DropReason::PeerDown));
    }

    #[test]
    fn batches_are_bounded_in_count_and_bytes_and_keep_order() {
        let q = Queue::new(10_000);
        assert!(q.set_up());
        for _ in 0..1_000 {
            push(&q, 10).expect("queued");
        }
        assert_eq!(q.take().len(), MAX_BATCH_MESSAGES);
        assert_eq!(q.take().len(), 1_000 - MAX_BATCH_MESSAGES);
        assert!(q.take().is_empty());

        // 300 KiB messages: three fit in 1 MiB, a fourth does not.
        for i in 0..5 {
            let (len, mut m) = msg(300 << 10);
            m.topic = format!("t/{i}");
            q.push(len, m).expect("queued");
        }
        let first: Vec<String> = q.take().into_iter().map(|m| m.topic).collect();
        assert_eq!(first, ["t/0", "t/1", "t/2"]);
        assert_eq!(q.take().len(), 2);

        // A message over the byte bound still goes, alone.
        push(&q, 2 << 20).expect("queued");
        push(&q, 1).expect("queued");
        assert_eq!(q.take().len(), 1);
        assert_eq!(q.take().len(), 1);
    }
}
