//! Property tests of the subscribe-side rule matcher [`covers`] against the reference
//! topic matcher [`matches`]: a rule filter that covers a subscription filter matches every
//! topic name the subscription can receive (so an allow rule never lets a subscription reach
//! topics the rule does not name), and every filter covers itself.

use meshmq_shared::auth::acl::covers;
use meshmq_shared::topic::{matches, validate_topic_filter, validate_topic_name};
use proptest::prelude::*;

/// Levels filters are built from: few enough that random filters often meet.
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

/// Every valid topic name of 1 to 5 levels over [`NAME_LEVELS`] (one level more than the
/// filters, so that `#` is exercised below their depth).
fn all_names() -> Vec<String> {
    let mut names: Vec<String> = NAME_LEVELS.iter().map(|l| (*l).to_owned()).collect();
    let mut last = names.clone();
    for _ in 1..5 {
        last = last
            .iter()
            .flat_map(|n| NAME_LEVELS.iter().map(move |l| format!("{n}/{l}")))
            .collect();
        names.extend(last.iter().cloned());
    }
    names.retain(|n| validate_topic_name(n).is_ok());
    names
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn a_covering_rule_matches_everything_the_subscription_receives(
        rule in filter(),
        sub in filter(),
    ) {
        if covers(&rule, &sub) {
            for name in all_names() {
                if matches(&sub, &name) {
                    prop_assert!(
                        matches(&rule, &name),
                        "{rule} covers {sub}, but {sub} receives {name} and {rule} does not match it"
                    );
                }
            }
        }
    }

    #[test]
    fn every_filter_covers_itself(f in filter()) {
        prop_assert!(covers(&f, &f), "{f}");
    }
}
