//! The quota of the `retained` table: how many bytes a retained message counts for, and
//! whether a `RetainedSet` fits the limits it carries.
//!
//! Owns the size rule and the admission decision; the store keeps the running totals
//! (`Retained::len`, `Retained::bytes`). Pure and deterministic: the limits come from the op
//! (the submitting node's `mqtt.max_retained_messages` and `mqtt.max_retained_bytes`),
//! never from the applying node's configuration, so every node decides the same. It must
//! never read the store's walk or expiry indexes.

use meshmq_proto::tables::RetainedMessage;

/// Bytes a retained message counts for: topic, payload and the variable-length properties
/// (content type, response topic, correlation data, user properties). The same rule as a
/// session queue's (`replicant_node::message::Message::size`).
pub fn message_bytes(m: &RetainedMessage) -> u64 {
    let properties = m.content_type.as_ref().map_or(0, String::len)
        + m.response_topic.as_ref().map_or(0, String::len)
        + m.correlation_data.as_ref().map_or(0, |c| c.len())
        + m.user_properties
            .iter()
            .map(|kv| kv.key.len() + kv.value.len())
            .sum::<usize>();
    (m.topic.len() + m.payload.len() + properties) as u64
}

/// Which limit storing a retained message would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainedQuota {
    /// A new topic beyond `max_messages`.
    Messages,
    /// More than `max_bytes` in total.
    Bytes,
}

impl RetainedQuota {
    /// The metric label (`quota` of `meshmq_quota_exceeded_total`).
    pub fn label(self) -> &'static str {
        match self {
            RetainedQuota::Messages => "retained_messages",
            RetainedQuota::Bytes => "retained_bytes",
        }
    }
}

/// Whether a message on `topic` counts toward the quota: the broker's own `$SYS` topics (a
/// handful per node, replaced in place, which clients may not publish to) do not.
pub fn counted(topic: &str) -> bool {
    !(topic == "$SYS" || topic.starts_with("$SYS/"))
}

/// What the table holds, for [`fits`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Held {
    /// Messages stored (that the quota counts).
    pub count: u64,
    /// Their bytes ([`message_bytes`]).
    pub bytes: u64,
    /// Bytes of the message already stored on the same topic, if any.
    pub replaced: Option<u64>,
}

impl Held {
    /// Counts a message stored (unless its topic is not [`counted`]).
    pub(super) fn add(&mut self, m: &RetainedMessage) {
        if counted(&m.topic) {
            self.count += 1;
            self.bytes += message_bytes(m);
        }
    }

    /// Un-counts a message removed (unless its topic is not [`counted`]).
    pub(super) fn remove(&mut self, m: &RetainedMessage) {
        if counted(&m.topic) {
            self.count = self.count.saturating_sub(1);
            self.bytes = self.bytes.saturating_sub(message_bytes(m));
        }
    }
}

/// Whether a message of `bytes` bytes fits beside what is `held`, under `max_messages` and
/// `max_bytes` (0: no limit). Replacing a topic's message with one no larger always fits
/// (it frees or keeps room), so a full store can still be updated and shrunk.
pub fn fits(
    held: Held,
    bytes: u64,
    max_messages: u64,
    max_bytes: u64,
) -> Result<(), RetainedQuota> {
    let total = match held.replaced {
        Some(old) if bytes <= old => return Ok(()),
        Some(old) => held.bytes.saturating_sub(old).saturating_add(bytes),
        None => {
            if max_messages > 0 && held.count >= max_messages {
                return Err(RetainedQuota::Messages);
            }
            held.bytes.saturating_add(bytes)
        }
    };
    if max_bytes > 0 && total > max_bytes {
        return Err(RetainedQuota::Bytes);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(count: u64, bytes: u64, replaced: Option<u64>) -> Held {
        Held {
            count,
            bytes,
            replaced,
        }
    }

    #[test]
    fn a_new_topic_needs_room_in_count_and_bytes() {
        assert_eq!(fits(held(9, 90, None), 10, 10, 100), Ok(()));
        assert_eq!(
            fits(held(10, 90, None), 1, 10, 100),
            Err(RetainedQuota::Messages)
        );
        assert_eq!(
            fits(held(9, 95, None), 10, 10, 100),
            Err(RetainedQuota::Bytes)
        );
        assert_eq!(
            fits(held(1_000, 1 << 40, None), 1 << 30, 0, 0),
            Ok(()),
            "0: no limit"
        );
    }

    #[test]
    fn replacing_with_no_larger_always_fits_and_larger_needs_the_difference() {
        assert_eq!(
            fits(held(10, 200, Some(50)), 50, 10, 100),
            Ok(()),
            "over both"
        );
        assert_eq!(fits(held(10, 100, Some(50)), 10, 10, 100), Ok(()));
        assert_eq!(fits(held(10, 90, Some(50)), 60, 10, 100), Ok(()));
        assert_eq!(
            fits(held(10, 90, Some(50)), 61, 10, 100),
            Err(RetainedQuota::Bytes)
        );
    }

    #[test]
    fn every_variable_part_counts() {
        let m = RetainedMessage {
            topic: "abc".into(),
            payload: vec![0; 10].into(),
            content_type: Some("ct".into()),
            response_topic: Some("rt".into()),
            correlation_data: Some(vec![1, 2].into()),
            user_properties: vec![meshmq_proto::tables::KeyValue {
                key: "k".into(),
                value: "vv".into(),
            }],
            ..RetainedMessage::default()
        };
        assert_eq!(message_bytes(&m), 3 + 10 + 2 + 2 + 2 + 3);
    }

    #[test]
    fn the_brokers_own_sys_topics_are_not_counted() {
        assert!(!counted("$SYS"));
        assert!(!counted("$SYS/brokers/n/uptime"));
        assert!(counted("$SYSTEM/x"));
        assert!(counted("a/$SYS"));
    }
}
