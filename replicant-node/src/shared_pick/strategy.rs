//! The one implementation of choosing a shared-subscription group's member by strategy,
//! used by the cluster-wide pick over the `shared` table ([`super::pick`]) and by a
//! standalone node's router over its local members (`crate::router`).
//!
//! The strategy gives a starting member: random, round robin (a per-group cursor with a
//! random start), the hash of the publisher's client id or of the topic, or the sticky
//! member (the last one chosen, while it is a member). From there, members are tried in
//! turn: a strategy that only spreads load (random, round robin) takes the first member
//! that is *ready* (connected, queue under its high-water mark), then any strategy the
//! first *connected* one, else the starting member (its session queues the message).
//! Sticky remembers the member chosen.

use std::sync::atomic::{AtomicUsize, Ordering};

use meshmq_shared::config::SharedStrategy;
use parking_lot::Mutex;

use crate::message::Message;

/// Per-group strategy state: the round-robin cursor and the sticky member (`K` names a
/// member: a session id locally, a client id cluster-wide).
#[derive(Debug)]
pub struct PickState<K> {
    cursor: AtomicUsize,
    sticky: Mutex<Option<K>>,
}

impl<K> Default for PickState<K> {
    fn default() -> Self {
        Self {
            cursor: AtomicUsize::new(rand::random::<u32>() as usize),
            sticky: Mutex::new(None),
        }
    }
}

/// How far a member is able to take a message now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Connected and its queue under the high-water mark.
    Ready,
    /// Connected.
    Connected,
}

/// The index of the member of `members` that gets `msg`; `None` for an empty group.
/// `key` names a member (for sticky), `able` tells whether it meets a [`Need`].
pub fn choose<M, K: PartialEq>(
    strategy: SharedStrategy,
    state: &PickState<K>,
    msg: &Message,
    members: &[M],
    key: impl Fn(&M) -> K,
    able: impl Fn(&M, Need) -> bool,
) -> Option<usize> {
    let n = members.len();
    if n == 0 {
        return None;
    }
    let random = || rand::random::<u32>() as usize % n;
    let start = match strategy {
        SharedStrategy::Random => random(),
        SharedStrategy::RoundRobin => state.cursor.fetch_add(1, Ordering::Relaxed) % n,
        SharedStrategy::HashClientid => hash_of(msg.from_client.as_deref().unwrap_or("")) % n,
        SharedStrategy::HashTopic => hash_of(&msg.topic) % n,
        SharedStrategy::Sticky => {
            let sticky = state.sticky.lock();
            sticky
                .as_ref()
                .and_then(|s| members.iter().position(|m| key(m) == *s))
                .unwrap_or_else(random)
        }
    };
    let in_turn = || (0..n).map(|k| (start + k) % n);
    let chosen = in_turn()
        .find(|&i| strategy.spreads_load() && able(&members[i], Need::Ready))
        .or_else(|| in_turn().find(|&i| able(&members[i], Need::Connected)))
        .unwrap_or(start);
    if strategy == SharedStrategy::Sticky {
        *state.sticky.lock() = Some(key(&members[chosen]));
    }
    Some(chosen)
}

/// FNV-1a (64 bit): stable across builds and Rust releases, so that every node of a
/// cluster, old and new during a rolling upgrade, maps a client id or topic to the same
/// member (std's `DefaultHasher` promises no such thing).
fn hash_of(s: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as usize
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use meshmq_shared::codec::{Properties, QoS};

    use super::*;

    fn msg(topic: &str, from: &str) -> Message {
        let mut m = Message::new(
            Instant::now(),
            topic.into(),
            Bytes::new(),
            QoS::AtMostOnce,
            false,
            Properties::default(),
        );
        m.from_client = Some(from.into());
        m
    }

    /// Members are (name, connected, ready).
    fn pick(
        strategy: SharedStrategy,
        state: &PickState<&'static str>,
        m: &Message,
        members: &[(&'static str, bool, bool)],
    ) -> &'static str {
        let i = choose(
            strategy,
            state,
            m,
            members,
            |m| m.0,
            |m, need| match need {
                Need::Ready => m.1 && m.2,
                Need::Connected => m.1,
            },
        )
        .expect("a member");
        members[i].0
    }

    #[test]
    fn round_robin_takes_members_in_turn_and_passes_over_busy_and_offline_ones() {
        let state = PickState::default();
        let m = msg("t", "p");
        let all = [("a", true, true), ("b", true, true), ("c", true, true)];
        let got: Vec<_> = (0..6)
            .map(|_| pick(SharedStrategy::RoundRobin, &state, &m, &all))
            .collect();
        assert_eq!(got[..3], got[3..], "a cycle of three: {got:?}");
        let mut first = got[..3].to_vec();
        first.sort_unstable();
        assert_eq!(first, ["a", "b", "c"]);
        let busy_b = [("a", false, false), ("b", true, false), ("c", true, true)];
        for _ in 0..6 {
            assert_eq!(pick(SharedStrategy::RoundRobin, &state, &m, &busy_b), "c");
        }
        let only_busy = [("a", false, false), ("b", true, false), ("c", false, false)];
        assert_eq!(
            pick(SharedStrategy::RoundRobin, &state, &m, &only_busy),
            "b"
        );
    }

    #[test]
    fn hashes_keep_a_publisher_or_a_topic_on_one_member() {
        let state = PickState::default();
        let all = [
            ("a", true, true),
            ("b", true, true),
            ("c", true, true),
            ("d", true, true),
        ];
        for strategy in [SharedStrategy::HashClientid, SharedStrategy::HashTopic] {
            let m = msg("some/topic", "publisher-7");
            let first = pick(strategy, &state, &m, &all);
            for _ in 0..10 {
                assert_eq!(pick(strategy, &state, &m, &all), first, "{strategy:?}");
            }
        }
    }

    #[test]
    fn sticky_keeps_its_member_until_it_goes_offline() {
        let state = PickState::default();
        let m = msg("t", "p");
        let mut all = [("a", true, true), ("b", true, true), ("c", true, true)];
        let first = pick(SharedStrategy::Sticky, &state, &m, &all);
        for _ in 0..10 {
            assert_eq!(pick(SharedStrategy::Sticky, &state, &m, &all), first);
        }
        let gone = all.iter().position(|x| x.0 == first).expect("member");
        all[gone].1 = false;
        let next = pick(SharedStrategy::Sticky, &state, &m, &all);
        assert_ne!(next, first);
        for _ in 0..10 {
            assert_eq!(pick(SharedStrategy::Sticky, &state, &m, &all), next);
        }
    }

    #[test]
    fn nobody_connected_still_gives_a_member_and_an_empty_group_none() {
        let state: PickState<&str> = PickState::default();
        let m = msg("t", "p");
        let offline = [("a", false, false), ("b", false, false)];
        assert!(["a", "b"].contains(&pick(SharedStrategy::Random, &state, &m, &offline)));
        let empty: [(&str, bool, bool); 0] = [];
        assert_eq!(
            choose(
                SharedStrategy::Random,
                &state,
                &m,
                &empty,
                |m| m.0,
                |_, _| true
            ),
            None
        );
    }
}
