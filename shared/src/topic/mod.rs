//! MQTT topic names, topic filters, shared subscriptions (`$share/{group}/{filter}`) and the
//! subscription trie that maps filters to subscribers.
//!
//! This module owns the rules of MQTT 5.0 section 4.7 (and 3.1.1 section 4.7, which are the
//! same): what a valid name or filter is, what matches what (including the `$` rule), how a
//! shared subscription filter is split, and a [`Trie`] for matching one topic name against
//! many filters on the per-message hot path.
//!
//! It must never know who the subscribers are, where they live or what options they
//! subscribed with: the trie stores opaque values of a caller-chosen type. It does no I/O
//! and never panics on malformed input.
//!
//! Depth limit: filters with more than [`MAX_FILTER_LEVELS`] levels are refused by
//! [`validate_topic_filter`] (and by [`Trie::insert`]). The trie's match, removal and drop
//! recurse once per level, so bounding the depth of what can be stored bounds the stack
//! a malicious `+/+/+/…` subscription could make the broker use.

mod filter;
mod name;
mod shared;
mod trie;

pub use filter::{is_wildcard, matches, validate_topic_filter};
pub use name::validate_topic_name;
pub use shared::{SubscriptionFilter, parse_subscription};
pub use trie::Trie;

/// Longest topic name or filter, in bytes: an MQTT UTF-8 string has a 16-bit length.
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Most levels a topic filter may have (mosquitto uses 200, EMQX 128 by default).
///
/// Not an MQTT rule but a server limit: it bounds the depth of the [`Trie`] and thus the
/// recursion of its matching. Topic names are not limited, they never deepen the trie.
pub const MAX_FILTER_LEVELS: usize = 256;

/// Why a topic name, topic filter or shared subscription filter is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The name or filter is the empty string (MQTT 5.0 4.7.3).
    #[error("topic is empty")]
    Empty,
    /// The name or filter is longer than 65 535 bytes.
    #[error("topic is longer than 65535 bytes")]
    TooLong,
    /// A topic name contains a wildcard character ('+' or '#').
    #[error("topic name contains a wildcard ('+' or '#')")]
    Wildcard,
    /// A topic filter breaks a wildcard rule or the level limit; the text says which.
    #[error("invalid topic filter: {0}")]
    InvalidFilter(&'static str),
    /// The name or filter contains the null character U+0000.
    #[error("topic contains the null character U+0000")]
    Null,
    /// A `$share/{group}/{filter}` filter is malformed; the text says how.
    #[error("invalid shared subscription: {0}")]
    InvalidShare(&'static str),
}
