//! Topic name validation (the topic of a PUBLISH or a will).
//!
//! Owns only the rules for names; it must never accept wildcards, which belong to filters.

use super::{MAX_TOPIC_LEN, TopicError};

/// Checks that `name` is a valid topic name: non-empty, at most 65 535 bytes, no '+' or
/// '#', no U+0000. Empty levels ("a//b", "/a", "a/") are valid.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    for byte in name.bytes() {
        match byte {
            0 => return Err(TopicError::Null),
            b'+' | b'#' => return Err(TopicError::Wildcard),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for name in [
            "a",
            "sport/tennis",
            "/",
            "/a",
            "a/",
            "a//b",
            "$SYS/x",
            " ",
            "é/ü",
        ] {
            assert_eq!(validate_topic_name(name), Ok(()), "{name:?}");
        }
    }

    #[test]
    fn invalid_names() {
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_name("a/+"), Err(TopicError::Wildcard));
        assert_eq!(validate_topic_name("a/#"), Err(TopicError::Wildcard));
        assert_eq!(validate_topic_name("sport+"), Err(TopicError::Wildcard));
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::Null));
    }

    #[test]
    fn length_limit() {
        assert_eq!(validate_topic_name(&"a".repeat(MAX_TOPIC_LEN)), Ok(()));
        assert_eq!(
            validate_topic_name(&"a".repeat(MAX_TOPIC_LEN + 1)),
            Err(TopicError::TooLong)
        );
    }
}
