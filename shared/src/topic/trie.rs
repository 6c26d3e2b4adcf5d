//! The subscription trie: topic filters → sets of values, matched against topic names.
//!
//! Owns the data structure only. Each node is one filter level: literal levels in a hash
//! map, '+' and '#' in dedicated slots, so matching a name costs one hash lookup per level
//! plus a visit of the wildcard slots, and never allocates. A node that ends a filter keeps
//! the full filter string, so matches can report it without building it. Empty nodes are
//! pruned on removal, so subscribe/unsubscribe churn does not leak memory.
//!
//! It must never validate or interpret filters beyond splitting them into levels (callers
//! validate with [`validate_topic_filter`](super::validate_topic_filter) or
//! [`parse_subscription`](super::parse_subscription) first), never know what a value means,
//! and never hold more than [`MAX_FILTER_LEVELS`] levels of depth (the recursions below
//! rely on it).

use std::hash::Hash;
use std::str::Split;

use hashbrown::{HashMap, HashSet};

use super::MAX_FILTER_LEVELS;

/// Maps topic filters to sets of values (e.g. subscriber ids) and finds, for a topic name,
/// every (filter, value) whose filter matches it, with the same rules as
/// [`matches`](super::matches), including the `$` rule.
#[derive(Debug, Clone)]
pub struct Trie<V> {
    /// The node of the empty path; it never ends a filter (the first level is a child).
    root: Node<V>,
    /// Number of (filter, value) pairs, kept so `len` is O(1).
    len: usize,
}

/// One level of one or more filters.
#[derive(Debug, Clone)]
struct Node<V> {
    /// Children for literal levels, including the empty level.
    children: HashMap<Box<str>, Node<V>>,
    /// Child for a '+' level.
    plus: Option<Box<Node<V>>>,
    /// Child for a '#' level; valid filters never go below it.
    hash: Option<Box<Node<V>>>,
    /// The full filter ending at this node; `Some` exactly when `values` is non-empty.
    filter: Option<Box<str>>,
    /// Values subscribed with exactly this filter.
    values: HashSet<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            children: HashMap::new(),
            plus: None,
            hash: None,
            filter: None,
            values: HashSet::new(),
        }
    }
}

impl<V> Default for Trie<V> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<V: Clone + Eq + Hash> Trie<V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts (filter, value). Returns true if the pair was new.
    ///
    /// The filter is not validated; it should have been. A filter of more than
    /// [`MAX_FILTER_LEVELS`] levels (which validation refuses) is not stored and gives false.
    pub fn insert(&mut self, filter: &str, value: V) -> bool {
        if filter.split('/').nth(MAX_FILTER_LEVELS).is_some() {
            return false;
        }
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.child_or_insert(level);
        }
        if !node.values.insert(value) {
            return false;
        }
        if node.filter.is_none() {
            node.filter = Some(filter.into());
        }
        self.len += 1;
        true
    }

    /// Removes (filter, value). Returns true if it was present. Nodes left without values
    /// or children are freed.
    pub fn remove(&mut self, filter: &str, value: &V) -> bool {
        let removed = self.root.remove(filter.split('/'), value);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f(value)` for every value of every filter matching the topic name `name`.
    ///
    /// Each matching (filter, value) pair is reported once, in no particular order; a value
    /// subscribed with two matching filters is reported twice. Allocates nothing.
    pub fn for_each_match<'t>(&'t self, name: &str, mut f: impl FnMut(&'t V)) {
        self.for_each_match_with_filter(name, |_, value| f(value));
    }

    /// Like [`for_each_match`](Self::for_each_match), also giving the filter that matched
    /// (as it was inserted, e.g. to find the subscription options or the shared group).
    pub fn for_each_match_with_filter<'t>(&'t self, name: &str, mut f: impl FnMut(&'t str, &'t V)) {
        let wildcards_at_root = !name.starts_with('$');
        self.root.visit(name.split('/'), wildcards_at_root, &mut f);
    }

    /// The values stored under exactly this filter (no wildcard matching); `None` if there
    /// are none. The set is never empty.
    pub fn get(&self, filter: &str) -> Option<&HashSet<V>> {
        let mut node = &self.root;
        for level in filter.split('/') {
            node = node.child(level)?;
        }
        (!node.values.is_empty()).then_some(&node.values)
    }

    /// Whether the trie holds no (filter, value) pair.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of (filter, value) pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Number of nodes below the root: 0 once everything was removed. Walks the whole
    /// trie; meant for tests and diagnostics, not the hot path.
    pub fn node_count(&self) -> usize {
        self.root.count_below()
    }
}

impl<V: Clone + Eq + Hash> Node<V> {
    /// The child for `level`, if any.
    fn child(&self, level: &str) -> Option<&Self> {
        match level {
            "+" => self.plus.as_deref(),
            "#" => self.hash.as_deref(),
            _ => self.children.get(level),
        }
    }

    /// The child for `level`, created if missing.
    fn child_or_insert(&mut self, level: &str) -> &mut Self {
        match level {
            "+" => self.plus.get_or_insert_with(Box::default),
            "#" => self.hash.get_or_insert_with(Box::default),
            _ => self.children.entry_ref(level).or_default(),
        }
    }

    /// Whether the node holds nothing and can be freed.
    fn is_prunable(&self) -> bool {
        self.values.is_empty()
            && self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_none()
    }

    /// Reports the values of this node, if it ends a filter.
    fn emit<'t, F: FnMut(&'t str, &'t V)>(&'t self, f: &mut F) {
        if let Some(filter) = &self.filter {
            for value in &self.values {
                f(filter, value);
            }
        }
    }

    /// Reports every filter at or below this node that matches the remaining `levels`.
    /// `wildcards` is false only at the root for a name starting with '$'.
    fn visit<'t, F: FnMut(&'t str, &'t V)>(
        &'t self,
        mut levels: Split<'_, char>,
        wildcards: bool,
        f: &mut F,
    ) {
        if let Some(hash) = self.hash.as_deref().filter(|_| wildcards) {
            // '#' matches this level and all below, including none (the parent).
            hash.emit(f);
        }
        let Some(level) = levels.next() else {
            self.emit(f);
            return;
        };
        if let Some(plus) = self.plus.as_deref().filter(|_| wildcards) {
            plus.visit(levels.clone(), true, f);
        }
        if let Some(child) = self.children.get(level) {
            child.visit(levels, true, f);
        }
    }

    /// Removes `value` from the filter made of the remaining `levels`, pruning emptied nodes.
    fn remove(&mut self, mut levels: Split<'_, char>, value: &V) -> bool {
        let Some(level) = levels.next() else {
            let removed = self.values.remove(value);
            if self.values.is_empty() {
                self.filter = None;
            }
            shrink_if_sparse(&mut self.values);
            return removed;
        };
        match level {
            "+" => remove_in_slot(&mut self.plus, levels, value),
            "#" => remove_in_slot(&mut self.hash, levels, value),
            _ => {
                let Some(child) = self.children.get_mut(level) else {
                    return false;
                };
                let removed = child.remove(levels, value);
                if child.is_prunable() {
                    self.children.remove(level);
                    shrink_if_sparse(&mut self.children);
                }
                removed
            }
        }
    }

    /// Number of nodes strictly below this one.
    fn count_below(&self) -> usize {
        let slots = [self.plus.as_deref(), self.hash.as_deref()];
        self.children
            .values()
            .chain(slots.into_iter().flatten())
            .map(|child| 1 + child.count_below())
            .sum()
    }
}

/// Removes from the '+' or '#' child slot, freeing the child if it became empty.
fn remove_in_slot<V: Clone + Eq + Hash>(
    slot: &mut Option<Box<Node<V>>>,
    levels: Split<'_, char>,
    value: &V,
) -> bool {
    let Some(child) = slot.as_mut() else {
        return false;
    };
    let removed = child.remove(levels, value);
    if child.is_prunable() {
        *slot = None;
    }
    removed
}

/// A collection whose capacity can be given back when it mostly holds nothing.
trait Shrink {
    /// Current (length, capacity).
    fn len_and_capacity(&self) -> (usize, usize);
    /// Shrinks the capacity to at least `min`.
    fn shrink_capacity(&mut self, min: usize);
}

impl<K: Eq + Hash, T> Shrink for HashMap<K, T> {
    fn len_and_capacity(&self) -> (usize, usize) {
        (self.len(), self.capacity())
    }
    fn shrink_capacity(&mut self, min: usize) {
        self.shrink_to(min);
    }
}

impl<T: Eq + Hash> Shrink for HashSet<T> {
    fn len_and_capacity(&self) -> (usize, usize) {
        (self.len(), self.capacity())
    }
    fn shrink_capacity(&mut self, min: usize) {
        self.shrink_to(min);
    }
}

/// Gives memory back after a burst of removals: when a map or set uses less than a quarter
/// of a capacity above 16, shrink it to twice its length (amortised O(1) per removal).
fn shrink_if_sparse(collection: &mut impl Shrink) {
    let (len, capacity) = collection.len_and_capacity();
    if capacity > 16 && len * 4 < capacity {
        collection.shrink_capacity(len * 2);
    }
}

#[cfg(test)]
#[path = "trie_tests.rs"]
mod tests;
