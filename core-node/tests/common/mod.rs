//! Helpers shared by core-node's integration tests.

use meshmq_proto::tables::{Op, RetainedMessage, RetainedSet, op};

/// A `RetainedSet` op for `topic` (payload "x", QoS 1): a cheap write whose effect is easy to
/// read back (`Tables::retained`).
pub fn retained(topic: &str) -> Op {
    Op {
        kind: Some(op::Kind::RetainedSet(RetainedSet {
            message: Some(RetainedMessage {
                topic: topic.into(),
                payload: "x".into(),
                qos: 1,
                published_at_ms: 1,
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}
