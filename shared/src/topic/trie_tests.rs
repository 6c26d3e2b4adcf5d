//! Unit tests of the subscription trie (spec examples, counting, pruning, limits).

use super::*;

/// Sorted (filter, value) pairs matching `name`.
fn matched(trie: &Trie<u32>, name: &str) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    trie.for_each_match_with_filter(name, |filter, value| out.push((filter.to_owned(), *value)));
    out.sort();
    out
}

/// Sorted filters matching `name` (with value 0 inserted under each).
fn matched_filters(trie: &Trie<u32>, name: &str) -> Vec<String> {
    matched(trie, name)
        .into_iter()
        .map(|(filter, _)| filter)
        .collect()
}

fn trie_of(filters: &[&str]) -> Trie<u32> {
    let mut trie = Trie::new();
    for filter in filters {
        assert!(trie.insert(filter, 0));
    }
    trie
}

#[test]
fn spec_multi_level_examples() {
    let trie = trie_of(&["sport/tennis/player1/#", "sport/#", "#"]);
    for name in [
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport/tennis/player1/score/wimbledon",
    ] {
        assert_eq!(
            matched_filters(&trie, name),
            ["#", "sport/#", "sport/tennis/player1/#"]
        );
    }
    assert_eq!(matched_filters(&trie, "sport"), ["#", "sport/#"]);
    assert_eq!(matched_filters(&trie, "other"), ["#"]);
}

#[test]
fn spec_single_level_examples() {
    let trie = trie_of(&["+", "+/+", "/+", "sport/+", "sport/tennis/+"]);
    assert_eq!(matched_filters(&trie, "/finance"), ["+/+", "/+"]);
    assert_eq!(matched_filters(&trie, "finance"), ["+"]);
    assert_eq!(matched_filters(&trie, "sport"), ["+"]);
    assert_eq!(matched_filters(&trie, "sport/"), ["+/+", "sport/+"]);
    assert_eq!(
        matched_filters(&trie, "sport/tennis/player1"),
        ["sport/tennis/+"]
    );
    assert!(matched_filters(&trie, "sport/tennis/player1/ranking").is_empty());
}

#[test]
fn spec_dollar_examples() {
    let trie = trie_of(&[
        "#",
        "+/monitor/Clients",
        "$SYS/#",
        "$SYS/monitor/+",
        "+",
        "+/#",
    ]);
    assert_eq!(
        matched_filters(&trie, "$SYS/monitor/Clients"),
        ["$SYS/#", "$SYS/monitor/+"]
    );
    assert_eq!(matched_filters(&trie, "$SYS"), ["$SYS/#"]);
    assert!(matched_filters(&trie, "$other/x").is_empty());
    // Only the first level is protected.
    assert_eq!(matched_filters(&trie, "a/$SYS"), ["#", "+/#"]);
}

#[test]
fn empty_levels() {
    let trie = trie_of(&["a//b", "/a", "a/", "a/+/b", "+/a", "a/#"]);
    assert_eq!(matched_filters(&trie, "a//b"), ["a/#", "a/+/b", "a//b"]);
    assert_eq!(matched_filters(&trie, "/a"), ["+/a", "/a"]);
    assert_eq!(matched_filters(&trie, "a/"), ["a/", "a/#"]);
    assert_eq!(matched_filters(&trie, "a"), ["a/#"]);
}

#[test]
fn values_and_counts() {
    let mut trie = Trie::new();
    assert!(trie.is_empty());
    assert!(trie.insert("a/+", 1));
    assert!(trie.insert("a/+", 2));
    assert!(!trie.insert("a/+", 1));
    assert!(trie.insert("a/b", 1));
    assert_eq!(trie.len(), 3);
    assert_eq!(
        matched(&trie, "a/b"),
        [("a/+".into(), 1), ("a/+".into(), 2), ("a/b".into(), 1)]
    );
    let mut values = Vec::new();
    trie.for_each_match("a/b", |value| values.push(*value));
    values.sort();
    assert_eq!(values, [1, 1, 2]);

    let set = trie.get("a/+").map(|set| set.len());
    assert_eq!(set, Some(2));
    assert!(
        trie.get("a").is_none(),
        "a node with no values is not a filter"
    );
    assert!(trie.get("a/c").is_none());

    assert!(trie.remove("a/+", &1));
    assert!(!trie.remove("a/+", &1));
    assert!(!trie.remove("a/c", &1));
    assert!(!trie.remove("a", &1));
    assert_eq!(trie.len(), 2);
    assert_eq!(
        matched(&trie, "a/b"),
        [("a/+".into(), 2), ("a/b".into(), 1)]
    );
}

#[test]
fn removal_prunes_every_node() {
    let filters = ["#", "+", "a/b/c", "a/b", "a/+/#", "/", "a//", "$SYS/#"];
    let mut trie = trie_of(&filters);
    assert!(trie.node_count() > 0);
    for filter in filters {
        assert!(trie.remove(filter, &0), "{filter:?}");
    }
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 0);
}

#[test]
fn prunes_only_what_is_empty() {
    let mut trie = trie_of(&["a/b/c", "a"]);
    assert_eq!(trie.node_count(), 3);
    assert!(trie.remove("a/b/c", &0));
    assert_eq!(trie.node_count(), 1);
    assert_eq!(matched_filters(&trie, "a"), ["a"]);
    assert!(trie.insert("a/b/c", 0));
    assert!(trie.remove("a", &0));
    assert_eq!(trie.node_count(), 3);
    assert!(trie.get("a").is_none());
    assert_eq!(matched_filters(&trie, "a/b/c"), ["a/b/c"]);
}

#[test]
fn churn_does_not_grow() {
    let mut trie = Trie::new();
    for round in 0..3u32 {
        for i in 0..1000u32 {
            assert!(trie.insert(&format!("dev/{i}/+"), round));
        }
        for i in 0..1000u32 {
            assert!(trie.remove(&format!("dev/{i}/+"), &round));
        }
        assert_eq!(trie.node_count(), 0);
        assert!(trie.root.children.capacity() <= 16);
    }
}

#[test]
fn depth_limit() {
    let mut trie = Trie::new();
    let at_limit = vec!["+"; MAX_FILTER_LEVELS].join("/");
    let over = vec!["+"; MAX_FILTER_LEVELS + 1].join("/");
    assert!(trie.insert(&at_limit, 1));
    assert!(!trie.insert(&over, 1));
    assert_eq!(trie.len(), 1);
    assert_eq!(trie.node_count(), MAX_FILTER_LEVELS);
    // A name far deeper than the trie is harmless.
    let deep_name = "x/".repeat(30_000);
    assert!(matched(&trie, &deep_name).is_empty());
    assert_eq!(
        matched(&trie, &vec!["x"; MAX_FILTER_LEVELS].join("/")).len(),
        1
    );
    assert!(!trie.remove(&over, &1));
}

#[test]
fn filter_strings_are_reported_as_inserted() {
    let trie = trie_of(&["a/+/c", "a/b/#"]);
    let mut seen = Vec::new();
    trie.for_each_match_with_filter("a/b/c", |filter, _| seen.push(filter));
    seen.sort_unstable();
    assert_eq!(seen, ["a/+/c", "a/b/#"]);
}
