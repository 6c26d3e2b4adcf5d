//! Property tests of the subscription trie against the reference matcher
//! [`matches`]: same (filter, value) pairs for every name, before and after removals, and
//! no node left behind once everything is removed.

use std::collections::BTreeSet;

use meshmq_shared::topic::{Trie, matches, validate_topic_filter, validate_topic_name};
use proptest::prelude::*;

/// Levels filters are built from: few enough that random filters and names often meet.
const FILTER_LEVELS: &[&str] = &["", "$SYS", "a", "b", "+", "#"];
/// Levels names are built from.
const NAME_LEVELS: &[&str] = &["", "$SYS", "a", "b"];

/// A valid filter of 1 to 4 levels; anything after a '#' is cut off.
fn filter() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FILTER_LEVELS), 1..5).prop_filter_map(
        "invalid filter",
        |mut levels| {
            if let Some(hash) = levels.iter().position(|level| *level == "#") {
                levels.truncate(hash + 1);
            }
            let filter = levels.join("/");
            validate_topic_filter(&filter).is_ok().then_some(filter)
        },
    )
}

/// A valid topic name of 1 to 4 levels.
fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(NAME_LEVELS), 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("invalid name", |name| validate_topic_name(name).is_ok())
}

/// (filter, value) pairs, with few values so the same pair recurs.
fn pairs() -> impl Strategy<Value = Pairs> {
    prop::collection::vec((filter(), 0u8..4), 0..40)
}

/// (filter, value) pairs as generated.
type Pairs = Vec<(String, u8)>;

/// Pairs, and the same pairs in a random order.
fn pairs_and_shuffled() -> impl Strategy<Value = (Pairs, Pairs)> {
    pairs().prop_flat_map(|pairs| (Just(pairs.clone()), Just(pairs).prop_shuffle()))
}

/// What the trie reports for `name`, sorted.
fn trie_matches(trie: &Trie<u8>, name: &str) -> Vec<(String, u8)> {
    let mut out = Vec::new();
    trie.for_each_match_with_filter(name, |filter, value| out.push((filter.to_owned(), *value)));
    out.sort();
    out
}

/// What the reference matcher says for `name`, sorted.
fn naive_matches(pairs: &BTreeSet<(String, u8)>, name: &str) -> Vec<(String, u8)> {
    pairs
        .iter()
        .filter(|(filter, _)| matches(filter, name))
        .cloned()
        .collect()
}

/// Checks the trie against the reference set for every name, and the exact lookups.
fn assert_agrees(trie: &Trie<u8>, reference: &BTreeSet<(String, u8)>, names: &[String]) {
    assert_eq!(trie.len(), reference.len());
    assert_eq!(trie.is_empty(), reference.is_empty());
    for name in names {
        assert_eq!(
            trie_matches(trie, name),
            naive_matches(reference, name),
            "name {name:?}"
        );
        let mut values = Vec::new();
        trie.for_each_match(name, |value| values.push(*value));
        values.sort_unstable();
        let mut expected: Vec<u8> = naive_matches(reference, name)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        expected.sort_unstable();
        assert_eq!(values, expected, "values for {name:?}");
    }
    for (filter, _) in reference {
        let stored: BTreeSet<u8> = trie.get(filter).into_iter().flatten().copied().collect();
        let expected: BTreeSet<u8> = reference
            .iter()
            .filter(|(f, _)| f == filter)
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(stored, expected, "get({filter:?})");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn trie_agrees_with_matches(
        inserts in pairs(),
        removals in pairs(),
        remove_mask in prop::collection::vec(any::<bool>(), 40),
        names in prop::collection::vec(name(), 1..16),
    ) {
        let mut trie = Trie::new();
        let mut reference = BTreeSet::new();
        for (filter, value) in &inserts {
            let new = reference.insert((filter.clone(), *value));
            prop_assert_eq!(trie.insert(filter, *value), new);
        }
        assert_agrees(&trie, &reference, &names);

        // Remove some inserted pairs, and some random ones that may not be there.
        let chosen = inserts
            .iter()
            .zip(&remove_mask)
            .filter(|(_, remove)| **remove)
            .map(|(pair, _)| pair);
        for (filter, value) in chosen.chain(&removals) {
            let present = reference.remove(&(filter.clone(), *value));
            prop_assert_eq!(trie.remove(filter, value), present);
        }
        assert_agrees(&trie, &reference, &names);
    }

    #[test]
    fn removing_everything_leaves_no_node(
        (inserts, removal_order) in pairs_and_shuffled(),
    ) {
        let mut trie = Trie::new();
        for (filter, value) in &inserts {
            trie.insert(filter, *value);
        }
        let mut removed = BTreeSet::new();
        for (filter, value) in &removal_order {
            let first_time = removed.insert((filter, value));
            prop_assert_eq!(trie.remove(filter, value), first_time);
        }
        prop_assert!(trie.is_empty());
        prop_assert_eq!(trie.len(), 0);
        prop_assert_eq!(trie.node_count(), 0);
    }
}
