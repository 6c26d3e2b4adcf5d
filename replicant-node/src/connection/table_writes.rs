//! Committing the table rows of a SUBSCRIBE or UNSUBSCRIBE, filter by filter: in
//! transactions of at most `MAX_OPS_PER_ENTRY` ops and `MAX_ENTRY_BYTES` bytes of ops (a
//! packet may carry more filters than one transaction takes; one filter's ops are never
//! split, and a filter whose ops alone pass the byte bound goes alone and is refused), each filter told apart as
//! committed, refused, or of unknown outcome (the transaction timed out: it may still
//! commit), so that the acknowledgement can say per filter what happened.

use core_node::api::{self, MAX_ENTRY_BYTES, MAX_OPS_PER_ENTRY, TransactError};
use meshmq_proto::tables::{Op, op_result::Outcome};

use crate::cluster;
use crate::ctx::Ctx;

/// What became of the items of [`commit_in_chunks`].
pub(super) struct Written<T> {
    /// Every op of the item applied.
    pub ok: Vec<T>,
    /// Certainly not (all) applied: the transaction failed before committing, or the
    /// tables refused one of its ops.
    pub failed: Vec<T>,
    /// The transaction timed out: its ops may or may not have applied.
    pub unknown: Vec<T>,
}

/// Commits the ops of `items` (`ops_of` gives an item's ops), in order.
pub(super) async fn commit_in_chunks<T>(
    ctx: &Ctx,
    items: Vec<T>,
    ops_of: impl Fn(&T) -> &[Op],
) -> Written<T> {
    let mut written = Written {
        ok: Vec::with_capacity(items.len()),
        failed: Vec::new(),
        unknown: Vec::new(),
    };
    let mut pending = items.into_iter().peekable();
    while pending.peek().is_some() {
        let mut chunk = Vec::new();
        let mut n = 0;
        let mut bytes = 0;
        while let Some(item) = pending.next_if(|i| {
            chunk.is_empty()
                || (n + ops_of(i).len() <= MAX_OPS_PER_ENTRY
                    && bytes + api::batch_bytes(ops_of(i)) <= MAX_ENTRY_BYTES)
        }) {
            n += ops_of(&item).len();
            bytes += api::batch_bytes(ops_of(&item));
            chunk.push(item);
        }
        let ops: Vec<Op> = chunk
            .iter()
            .flat_map(|i| ops_of(i).iter().cloned())
            .collect();
        match cluster::try_transact(&ctx.tables, ops).await {
            Ok(outcomes) => {
                let mut at = 0;
                for item in chunk {
                    let k = ops_of(&item).len();
                    let mine = outcomes.get(at..at + k).unwrap_or_default();
                    at += k;
                    if mine.iter().any(|o| matches!(o, Outcome::Rejected(_))) {
                        written.failed.push(item);
                    } else {
                        written.ok.push(item);
                    }
                }
            }
            Err(TransactError::Timeout) => written.unknown.extend(chunk),
            Err(_) => written.failed.extend(chunk),
        }
    }
    written
}
