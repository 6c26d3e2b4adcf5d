//! The walk over the retained level tree for one subscription filter: the stored messages a
//! filter matches (MQTT 4.7, with the `$` rule), in bounded chunks, each resumable from a
//! [`RetainedCursor`].
//!
//! Order: pre-order over the level tree with siblings sorted by name, so a topic comes before
//! the topics below it (`a` < `a/b` < `a/b/c` < `a/c` < `b`); a total order on topics. A
//! cursor is the level path of the last level a chunk visited, and the next chunk visits only
//! what comes strictly after it. So a caller that resumes each chunk from the cursor the
//! previous one returned, whatever happened to the store in between:
//! - sees each topic at most once;
//! - sees every message stored before the first chunk and neither set, deleted nor expired
//!   until the walk is complete, exactly once;
//! - sees a topic set or replaced between chunks (with its value then) if it lies after the
//!   cursor, and misses it if it lies before; misses a topic deleted before the walk got to it.
//!
//! Owns only the walk. It must never recurse per level (an explicit stack of sibling
//! iterators: one chunk's memory follows the filter's depth in the tree, not the store size)
//! and never allocate per visited level beyond that stack.

use std::collections::btree_map;
use std::ops::Bound;

use meshmq_proto::tables::RetainedMessage;

use super::retained::{Level, expired};

/// Where a chunked walk stopped: the level path of the last level visited. Opaque; its size
/// is that of one topic name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedCursor {
    /// The path's level names joined by '/' (a level name never contains '/').
    after: String,
}

/// Bounds of one chunk: the walk stops as soon as one is reached (after at least one level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkBudget {
    /// Most messages handed out.
    pub max_messages: usize,
    /// Most bytes (topic plus payload) handed out; the message that reaches it is included.
    pub max_bytes: usize,
    /// Most levels visited, matching or not (bounds the time of a chunk in which little of
    /// what is visited matches, e.g. expired messages or `$` topics under `#`).
    pub max_levels: usize,
}

impl ChunkBudget {
    /// No bound: the whole walk in one call.
    pub const UNBOUNDED: ChunkBudget = ChunkBudget {
        max_messages: usize::MAX,
        max_bytes: usize::MAX,
        max_levels: usize::MAX,
    };
}

/// What the children of a visited level must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Filter level `j`: a literal name or `+` (never `#`: that is [`Want::All`]).
    Level(usize),
    /// Anything: below a `#`.
    All,
}

/// The children of one level still to visit, in name order.
struct Frame<'a> {
    children: btree_map::Range<'a, Box<str>, Level>,
    /// What these children match.
    want: Want,
    /// Length of the path of the level these children belong to.
    depth: usize,
}

/// The filter, split into levels.
struct Filter<'f> {
    levels: Vec<&'f str>,
}

impl Filter<'_> {
    /// What the first level must match.
    fn start(&self) -> Want {
        self.normalize(0)
    }

    /// `Want::Level(j)`, or `Want::All` when filter level `j` is `#`.
    fn normalize(&self, j: usize) -> Want {
        match self.levels.get(j) {
            Some(&"#") => Want::All,
            _ => Want::Level(j),
        }
    }

    /// The literal name filter level `j` asks for (`None` for `+` and for `All`).
    fn literal(&self, want: Want) -> Option<&str> {
        match want {
            Want::Level(j) => self.levels.get(j).copied().filter(|name| *name != "+"),
            Want::All => None,
        }
    }

    /// Whether a child named `name` at `depth` is selected by `want`. The `$` rule: a
    /// wildcard first level does not match names starting with '$'.
    fn selects(&self, want: Want, depth: usize, name: &str) -> bool {
        match self.literal(want) {
            Some(literal) => literal == name,
            None => depth > 0 || !name.starts_with('$'),
        }
    }

    /// For a selected child: whether its own message matches, and what its children must
    /// match (`None`: nothing below it can).
    fn step(&self, want: Want) -> (bool, Option<Want>) {
        match want {
            Want::All => (true, Some(Want::All)),
            Want::Level(j) => match self.levels.get(j + 1) {
                None => (true, None),
                // `a/#` also matches `a` itself.
                Some(&"#") => (true, Some(Want::All)),
                Some(_) => (false, Some(self.normalize(j + 1))),
            },
        }
    }

    /// The children of `level` (whose path has `depth` levels) that `want` may select,
    /// strictly after the name `after` if given.
    fn frame<'a>(
        &self,
        level: &'a Level,
        want: Want,
        depth: usize,
        after: Option<&str>,
    ) -> Option<Frame<'a>> {
        let children = match self.literal(want) {
            Some(literal) => {
                if after.is_some_and(|a| literal <= a) {
                    return None;
                }
                let bounds = (Bound::Included(literal), Bound::Included(literal));
                level.children.range::<str, _>(bounds)
            }
            None => {
                let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
                level.children.range::<str, _>((lower, Bound::Unbounded))
            }
        };
        Some(Frame {
            children,
            want,
            depth,
        })
    }
}

/// Calls `f` for the unexpired messages under `root` whose topics match `filter`, in walk
/// order, starting strictly after `from` (at the beginning when `None`), until the walk is
/// complete (returns `None`) or a bound of `budget` is reached (returns where it stopped).
///
/// Whatever the filter (even an invalid one, which matches what its levels spell), it never
/// panics.
pub(super) fn walk(
    root: &Level,
    filter: &str,
    now_ms: u64,
    from: Option<&RetainedCursor>,
    budget: ChunkBudget,
    mut f: impl FnMut(&RetainedMessage),
) -> Option<RetainedCursor> {
    let filter = Filter {
        levels: filter.split('/').collect(),
    };
    let mut stack = Vec::new();
    let mut path = Vec::new();
    resume(&filter, root, from, &mut stack, &mut path);
    let (mut messages, mut bytes, mut levels) = (0usize, 0usize, 0usize);
    while let Some(top) = stack.last_mut() {
        let Some((name, level)) = top.children.next() else {
            stack.pop();
            continue;
        };
        let (want, depth) = (top.want, top.depth);
        path.truncate(depth);
        path.push(&**name);
        levels += 1;
        if filter.selects(want, depth, name) {
            let (matches, below) = filter.step(want);
            if matches
                && let Some(message) = level.message.as_deref()
                && !expired(message, now_ms)
            {
                f(message);
                messages += 1;
                bytes = bytes.saturating_add(message.topic.len() + message.payload.len());
            }
            if let Some(below) = below {
                stack.extend(filter.frame(level, below, depth + 1, None));
            }
        }
        if messages >= budget.max_messages
            || bytes >= budget.max_bytes
            || levels >= budget.max_levels
        {
            return Some(RetainedCursor {
                after: path.join("/"),
            });
        }
    }
    None
}

/// Rebuilds the walk's stack as it was right after visiting the cursor's level: for each
/// level on the cursor's path, its later siblings that the filter may select; then the
/// children of the cursor's level itself (if it still exists and the filter reaches below
/// it). `path` is left holding the part of the cursor's path that still exists.
fn resume<'a>(
    filter: &Filter<'_>,
    root: &'a Level,
    from: Option<&'a RetainedCursor>,
    stack: &mut Vec<Frame<'a>>,
    path: &mut Vec<&'a str>,
) {
    let mut level = root;
    let mut want = filter.start();
    if let Some(from) = from {
        for (depth, name) in from.after.split('/').enumerate() {
            stack.extend(filter.frame(level, want, depth, Some(name)));
            let Some(child) = level.children.get(name) else {
                return;
            };
            if !filter.selects(want, depth, name) {
                return;
            }
            let Some(below) = filter.step(want).1 else {
                return;
            };
            path.push(name);
            (level, want) = (child, below);
        }
    }
    let depth = path.len();
    stack.extend(filter.frame(level, want, depth, None));
}
