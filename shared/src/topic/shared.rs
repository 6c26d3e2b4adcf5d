//! Parsing of subscription filters into plain and shared (`$share/{group}/{filter}`) ones.
//!
//! Owns the MQTT 5.0 4.8.2 syntax of shared subscriptions only. It must never decide which
//! member of a group gets a message, and it does not know the protocol version: the caller
//! only calls it for 5.0 clients (3.1.1 has no shared subscriptions). `$queue/…` is not
//! supported and is an ordinary filter.

use super::{MAX_TOPIC_LEN, TopicError, validate_topic_filter};

/// The prefix that makes a subscription shared.
const SHARE_PREFIX: &str = "$share/";

/// A parsed, validated subscription filter, borrowing from the SUBSCRIBE packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionFilter<'a> {
    /// An ordinary topic filter.
    Plain(&'a str),
    /// A shared subscription: the messages matching `filter` are shared among `group`.
    Shared {
        /// The share name: non-empty, no '/', '+' or '#'.
        group: &'a str,
        /// The topic filter proper, a valid topic filter.
        filter: &'a str,
    },
}

impl<'a> SubscriptionFilter<'a> {
    /// The topic filter to match names against (the part after the group when shared).
    pub fn topic_filter(&self) -> &'a str {
        match self {
            Self::Plain(filter) | Self::Shared { filter, .. } => filter,
        }
    }
}

/// Parses and validates a subscription filter.
///
/// "$share/{group}/{filter}" is shared when the group is non-empty without '/', '+' or '#'
/// and the filter is a non-empty valid topic filter; "$share/g", "$share/g/", "$share//f"
/// are [`TopicError::InvalidShare`]. Anything not starting with "$share/" is a plain filter,
/// validated with [`validate_topic_filter`]. An invalid filter after the group gives that
/// filter's own error (e.g. [`TopicError::InvalidFilter`]).
pub fn parse_subscription(filter: &str) -> Result<SubscriptionFilter<'_>, TopicError> {
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        validate_topic_filter(filter)?;
        return Ok(SubscriptionFilter::Plain(filter));
    };
    if filter.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    let Some((group, inner)) = rest.split_once('/') else {
        return Err(TopicError::InvalidShare(
            "no '/' and filter after the share name",
        ));
    };
    if group.is_empty() {
        return Err(TopicError::InvalidShare("empty share name"));
    }
    if group.contains(['+', '#']) {
        return Err(TopicError::InvalidShare("share name contains a wildcard"));
    }
    if group.contains('\0') {
        return Err(TopicError::Null);
    }
    if inner.is_empty() {
        return Err(TopicError::InvalidShare(
            "empty filter after the share name",
        ));
    }
    validate_topic_filter(inner)?;
    Ok(SubscriptionFilter::Shared {
        group,
        filter: inner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared<'a>(group: &'a str, filter: &'a str) -> SubscriptionFilter<'a> {
        SubscriptionFilter::Shared { group, filter }
    }

    #[test]
    fn plain_filters() {
        for filter in [
            "a/b",
            "#",
            "$SYS/#",
            "$share",
            "$sharex/g/f",
            "$queue/a/b",
            "share/g/f",
        ] {
            assert_eq!(
                parse_subscription(filter),
                Ok(SubscriptionFilter::Plain(filter))
            );
        }
        assert!(matches!(
            parse_subscription("a/#/b"),
            Err(TopicError::InvalidFilter(_))
        ));
        assert_eq!(parse_subscription(""), Err(TopicError::Empty));
    }

    #[test]
    fn shared_filters() {
        assert_eq!(parse_subscription("$share/g/a/b"), Ok(shared("g", "a/b")));
        assert_eq!(
            parse_subscription("$share/consumer1/sport/tennis/+"),
            Ok(shared("consumer1", "sport/tennis/+"))
        );
        assert_eq!(parse_subscription("$share/g/#"), Ok(shared("g", "#")));
        assert_eq!(parse_subscription("$share/g//"), Ok(shared("g", "/")));
        assert_eq!(
            parse_subscription("$share/g/$SYS/#"),
            Ok(shared("g", "$SYS/#"))
        );
        assert_eq!(
            parse_subscription("$share/$share/a"),
            Ok(shared("$share", "a"))
        );
        assert_eq!(
            parse_subscription("$share/g/a").map(|s| s.topic_filter()),
            Ok("a")
        );
        assert_eq!(
            parse_subscription("a/b").map(|s| s.topic_filter()),
            Ok("a/b")
        );
    }

    #[test]
    fn invalid_shared_filters() {
        for filter in [
            "$share/",
            "$share/g",
            "$share/g/",
            "$share//f",
            "$share/+/f",
            "$share/g#/f",
        ] {
            assert!(
                matches!(parse_subscription(filter), Err(TopicError::InvalidShare(_))),
                "{filter:?}"
            );
        }
        assert!(matches!(
            parse_subscription("$share/g/a#"),
            Err(TopicError::InvalidFilter(_))
        ));
        assert_eq!(parse_subscription("$share/g\0/a"), Err(TopicError::Null));
        let long = format!("$share/g/{}", "a".repeat(MAX_TOPIC_LEN));
        assert_eq!(parse_subscription(&long), Err(TopicError::TooLong));
    }
}
