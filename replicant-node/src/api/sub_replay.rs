//! Retained messages for a subscription made through the REST API: what a client's
//! SUBSCRIBE replays (Retain Handling 0, or 1 on a new subscription; never a shared one),
//! handed to the session's queue, since no connection task paces it.
//!
//! Bounded: the replica is read in chunks (one short read lock each), at most the session
//! queue's length (`mqtt.max_mqueue_len`) of messages are handed over, and the walk stops at
//! the first message the queue drops (its bounds apply and count as for any delivery).

use std::collections::VecDeque;
use std::sync::Arc;

use meshmq_shared::tables::ChunkBudget;

use crate::cluster;
use crate::ctx::Ctx;
use crate::mailbox::PushOutcome;
use crate::message::Delivery;
use crate::session::SubOpts;
use crate::sessions::SessionSlot;

/// One chunk taken from the replica under its read lock.
const CHUNK: ChunkBudget = ChunkBudget {
    max_messages: 256,
    max_bytes: 256 * 1024,
    max_levels: 4096,
};

/// Whether a subscription asks for retained messages now.
pub fn wanted(opts: &SubOpts, is_new: bool, shared: bool) -> bool {
    !shared && (opts.retain_handling == 0 || (opts.retain_handling == 1 && is_new))
}

/// Hands the retained messages matching `filter` to `slot`'s queue (see the module doc);
/// returns how many were queued.
pub fn replay(ctx: &Ctx, slot: &SessionSlot, filter: &str, opts: SubOpts) -> usize {
    let max = ctx.runtime.current().config.mqtt.max_mqueue_len.max(1);
    let mut cursor = None;
    let mut chunk = VecDeque::new();
    let mut queued = 0;
    loop {
        let next = cluster::retained_chunk(ctx, filter, cursor.as_ref(), CHUNK, &mut chunk);
        for msg in chunk.drain(..) {
            let d = Delivery {
                qos: msg.qos.min(opts.qos),
                msg: Arc::clone(&msg),
                retain: true,
                subscription_ids: opts.subscription_id.into_iter().collect(),
            };
            match slot.mailbox.push(d) {
                PushOutcome::Queued | PushOutcome::Congested => queued += 1,
                PushOutcome::Dropped | PushOutcome::Full => return queued,
            }
            if queued >= max {
                return queued;
            }
        }
        match next {
            Some(c) => cursor = Some(c),
            None => return queued,
        }
    }
}
