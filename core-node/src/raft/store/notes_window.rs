//! [`NotesWindow`]: the [`EntryNotes`] of the entries this core applied most recently, for
//! the `Follow` streams of replicants that hold a projection of the registry (docs/roles.md).
//!
//! Owns the window's bounds (entries and bytes) and the index from which it is complete.
//! Notes exist only where the entry was applied: after a restart the window starts after the
//! persisted snapshot and fills again as openraft re-applies the committed entries; after a
//! snapshot install it starts after that snapshot. A follower that needs notes older than
//! the window gets a projected snapshot instead. It must never be read or written under
//! anything but the state machine's lock.

use std::collections::VecDeque;
use std::sync::Arc;

use meshmq_proto::tables::EntryNotes;
use meshmq_shared::tables::notes::heap_bytes;

/// Most entries whose notes are kept.
pub const MAX_ENTRIES: usize = 100_000;
/// Most bytes of memory the notes kept take ([`heap_bytes`]).
pub const MAX_BYTES: usize = 64 << 20;
/// Notes of one entry larger than `max_bytes / ENTRY_SHARE` are not kept (a projected follower gets a snapshot
/// past that entry): one client with many long filters must not empty the window of
/// everything before it.
pub const ENTRY_SHARE: usize = 16;

/// Why no notes can be given for an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotesGone {
    /// The oldest index whose notes the window holds (or would hold).
    pub from: u64,
}

/// The notes of recent entries, by log index.
#[derive(Debug)]
pub struct NotesWindow {
    /// Every applied entry at or after this index with a batch has its notes here.
    from: u64,
    /// (index, notes, their memory), in index order; `None`: notes too large to keep.
    notes: VecDeque<(u64, Option<Arc<EntryNotes>>, usize)>,
    /// Sum of the memory of the notes held.
    bytes: usize,
    /// Bounds (the constants above, lowered by tests).
    max_entries: usize,
    max_bytes: usize,
}

impl NotesWindow {
    /// An empty window for entries after `applied`.
    pub fn after(applied: u64) -> Self {
        Self::bounded(applied, MAX_ENTRIES, MAX_BYTES)
    }

    /// As [`after`](Self::after), with other bounds.
    pub fn bounded(applied: u64, max_entries: usize, max_bytes: usize) -> Self {
        Self {
            from: applied + 1,
            notes: VecDeque::new(),
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// Records the notes of the entry at `index` (entries are recorded in index order).
    pub fn push(&mut self, index: u64, notes: EntryNotes) {
        let len = heap_bytes(&notes);
        let (notes, len) = if len > self.max_bytes / ENTRY_SHARE {
            (None, 0)
        } else {
            (Some(Arc::new(notes)), len)
        };
        self.notes.push_back((index, notes, len));
        self.bytes += len;
        while self.notes.len() > self.max_entries
            || (self.bytes > self.max_bytes && self.notes.len() > 1)
        {
            let Some((old, _, len)) = self.notes.pop_front() else {
                break;
            };
            self.bytes -= len;
            self.from = self.from.max(old + 1);
        }
    }

    /// The notes of the entry at `index`: `Ok(None)` if it was applied without notes (no
    /// batch, or one that did not decode) or is not applied yet; `Err` if they are older
    /// than the window.
    pub fn get(&self, index: u64) -> Result<Option<Arc<EntryNotes>>, NotesGone> {
        if index < self.from {
            return Err(NotesGone { from: self.from });
        }
        match self.notes.binary_search_by_key(&index, |(i, _, _)| *i) {
            Ok(at) => match &self.notes[at].1 {
                Some(notes) => Ok(Some(Arc::clone(notes))),
                None => Err(NotesGone { from: index + 1 }),
            },
            Err(_) => Ok(None),
        }
    }

    /// The notes of the applied entries `first..=last`, in order, under one look: `None`
    /// for an entry without notes; `Err` if some are older than the window.
    pub fn range(&self, first: u64, last: u64) -> Result<Vec<Option<Arc<EntryNotes>>>, NotesGone> {
        (first..=last).map(|i| self.get(i)).collect()
    }

    /// Entries and bytes held.
    pub fn len(&self) -> (usize, usize) {
        (self.notes.len(), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshmq_proto::tables::OpResult;

    fn notes(ops: usize) -> EntryNotes {
        EntryNotes {
            results: vec![OpResult::default(); ops],
            ..EntryNotes::default()
        }
    }

    #[test]
    fn the_window_is_bounded_in_entries_and_bytes_and_says_what_it_lost() {
        let mut w = NotesWindow::bounded(10, 3, 1 << 20);
        assert_eq!(w.get(10), Err(NotesGone { from: 11 }));
        assert_eq!(w.get(11), Ok(None), "not applied yet");
        for i in 11..=15 {
            w.push(i, notes(1));
        }
        assert_eq!(w.len().0, 3);
        assert_eq!(w.get(12), Err(NotesGone { from: 13 }));
        assert!(w.get(13).expect("held").is_some());
        assert!(w.get(15).expect("held").is_some());
        let one = heap_bytes(&notes(100));
        let mut w = NotesWindow::bounded(0, 1_000, one * 32);
        for i in 1..=40 {
            w.push(i, notes(100));
        }
        assert_eq!(w.len(), (32, one * 32));
        assert_eq!(w.get(8), Err(NotesGone { from: 9 }));
        assert!(w.get(9).expect("held").is_some());
    }

    #[test]
    fn notes_too_large_for_the_window_are_gone_and_keep_the_rest() {
        let one = heap_bytes(&notes(100));
        let mut w = NotesWindow::bounded(0, 1_000, one * ENTRY_SHARE - 1);
        w.push(1, notes(1));
        w.push(2, notes(100));
        w.push(3, notes(1));
        assert!(w.get(1).expect("held").is_some(), "what came before stays");
        assert_eq!(w.get(2), Err(NotesGone { from: 3 }));
        assert!(w.get(3).expect("held").is_some());
    }

    #[test]
    fn entries_without_notes_inside_the_window_have_none() {
        let mut w = NotesWindow::after(0);
        w.push(1, notes(1));
        w.push(3, notes(1));
        assert_eq!(w.get(2), Ok(None));
        assert!(w.get(3).expect("held").is_some());
    }
}
