//! Topic filter validation and the reference matcher of a filter against a name.
//!
//! [`matches`] is the definition of "matches" for the whole broker (MQTT 5.0 4.7): the
//! [`Trie`](super::Trie) must agree with it. Nothing here allocates, and nothing here may
//! panic on a malformed filter or name.

use super::{MAX_FILTER_LEVELS, MAX_TOPIC_LEN, TopicError};

/// Checks that `filter` is a valid topic filter: non-empty, at most 65 535 bytes, no U+0000,
/// '#' only as the whole last level, '+' only as a whole level, and at most
/// [`MAX_FILTER_LEVELS`] levels. Empty levels are valid. `$share/…` is not special here:
/// use [`parse_subscription`](super::parse_subscription) for subscription filters.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if filter.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if filter.as_bytes().contains(&0) {
        return Err(TopicError::Null);
    }
    let mut levels = filter.split('/').enumerate().peekable();
    while let Some((index, level)) = levels.next() {
        if index >= MAX_FILTER_LEVELS {
            return Err(TopicError::InvalidFilter("more than 256 levels"));
        }
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return Err(TopicError::InvalidFilter(
                "'#' must be the whole last level",
            ));
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::InvalidFilter("'+' must be a whole level"));
        }
    }
    Ok(())
}

/// Whether `filter` contains a wildcard character ('+' or '#').
pub fn is_wildcard(filter: &str) -> bool {
    filter.bytes().any(|b| b == b'+' || b == b'#')
}

/// Whether `filter` matches the topic name `name` (MQTT 5.0 4.7).
///
/// '+' matches exactly one level (possibly empty), '#' matches its level and every level
/// below, including the parent ("a/#" matches "a"), and a name starting with '$' is not
/// matched by a filter whose first level is '+' or '#'. Both arguments are assumed valid;
/// for invalid ones the answer is unspecified but there is no panic.
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut name_levels = name.split('/');
    loop {
        match (filter_levels.next(), name_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(n)) if f == n => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_filters() {
        let valid = [
            "#",
            "+",
            "+/+",
            "/+",
            "+/",
            "sport/#",
            "sport/tennis/+",
            "+/tennis/#",
            "a//b",
            "/",
            "$SYS/#",
            "$share",
            "sport/+/player1",
        ];
        for filter in valid {
            assert_eq!(validate_topic_filter(filter), Ok(()), "{filter:?}");
        }
    }

    #[test]
    fn invalid_filters_from_the_spec() {
        for filter in [
            "sport/tennis#",
            "sport/tennis/#/ranking",
            "sport+",
            "#/a",
            "a/#/",
            "a/++",
        ] {
            assert!(
                matches!(
                    validate_topic_filter(filter),
                    Err(TopicError::InvalidFilter(_))
                ),
                "{filter:?}"
            );
        }
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_filter("a/\0"), Err(TopicError::Null));
        let long = "a".repeat(MAX_TOPIC_LEN + 1);
        assert_eq!(validate_topic_filter(&long), Err(TopicError::TooLong));
    }

    #[test]
    fn level_limit() {
        let at_limit = vec!["+"; MAX_FILTER_LEVELS].join("/");
        assert_eq!(validate_topic_filter(&at_limit), Ok(()));
        let over = vec!["+"; MAX_FILTER_LEVELS + 1].join("/");
        assert!(matches!(
            validate_topic_filter(&over),
            Err(TopicError::InvalidFilter(_))
        ));
    }

    #[test]
    fn wildcard_detection() {
        assert!(is_wildcard("a/+"));
        assert!(is_wildcard("#"));
        assert!(!is_wildcard("a/b"));
        assert!(!is_wildcard(""));
    }

    #[test]
    fn multi_level_wildcard_spec_examples() {
        let filter = "sport/tennis/player1/#";
        for name in [
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
        ] {
            assert!(matches(filter, name), "{name:?}");
        }
        assert!(!matches(filter, "sport/tennis/player2"));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "sport/tennis"));
        assert!(matches("#", "/"));
        assert!(matches("a/#", "a/"));
    }

    #[test]
    fn single_level_wildcard_spec_examples() {
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(matches("sport/tennis/+", "sport/tennis/player2"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("+", "finance"));
        assert!(matches("+/tennis/#", "sport/tennis"));
    }

    #[test]
    fn dollar_topics_spec_examples() {
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("#", "$SYS"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS"));
        // Only the first level is protected.
        assert!(matches("a/#", "a/$SYS"));
        assert!(matches("+/$x", "a/$x"));
    }

    #[test]
    fn exact_and_empty_levels() {
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(matches("a//b", "a//b"));
        assert!(matches("a/+/b", "a//b"));
        assert!(!matches("a/b", "a/b/"));
        assert!(matches("/", "/"));
        assert!(matches("+/+", "/"));
    }
}
