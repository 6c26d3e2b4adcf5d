//! A message as the broker routes it: decoded once from the publisher's PUBLISH, shared by
//! `Arc` among every subscriber it reaches, and encoded once per wire variant where it can be.
//!
//! Owns the message expiry arithmetic (absolute deadline in, remaining interval out). Never
//! holds anything specific to one subscriber (packet id, QoS granted, alias): that is
//! [`Delivery`]'s job.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use meshmq_shared::codec::{self, Properties, ProtocolVersion, Publish, QoS};

use crate::sessions::SessionId;

/// An application message in flight through the broker.
#[derive(Debug)]
pub struct Message {
    /// Topic name (never an alias: aliases are resolved on the way in).
    pub topic: String,
    /// Payload, shared without copying.
    pub payload: Bytes,
    /// QoS the publisher sent it with.
    pub qos: QoS,
    /// RETAIN flag as published (for retain-as-published).
    pub retain: bool,
    /// Publish properties forwarded to subscribers (no topic alias, no subscription ids).
    pub properties: Properties,
    /// Absolute expiry computed from Message Expiry Interval at arrival.
    pub expires_at: Option<Instant>,
    /// The publishing session, for No Local; `None` for wills, `$SYS` and retained replays.
    pub from: Option<SessionId>,
    /// The publisher's client id (hash_clientid strategy, logs).
    pub from_client: Option<Arc<str>>,
    /// Set on the messages sampled for the delivery latency histogram
    /// ([`crate::delivery_latency`]).
    pub sampled: Option<crate::delivery_latency::Sampled>,
    /// What the message counts for in queues ([`counted_bytes`]), computed once.
    size: usize,
    /// Cached encodings of the plain QoS 0 variant: [3.1.1, 5.0].
    qos0_cache: [OnceLock<Bytes>; 2],
}

/// Bytes a message counts for in every byte bound of the broker (session queues, write
/// budgets, the retained store): topic, payload and the variable-length properties (content
/// type, response topic, correlation data, user properties). Fixed-size properties and the
/// encoding's framing are left out. The retained table counts the same parts
/// (`meshmq_shared::tables::retained_quota::message_bytes`).
pub fn counted_bytes(topic: &str, payload_len: usize, p: &Properties) -> usize {
    let properties = p.content_type.as_ref().map_or(0, String::len)
        + p.response_topic.as_ref().map_or(0, String::len)
        + p.correlation_data.as_ref().map_or(0, |c| c.len())
        + p.user_properties
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    topic.len() + payload_len + properties
}

impl Message {
    /// A message received at `now` with these parts; properties' expiry is turned into a deadline.
    pub fn new(
        now: Instant,
        topic: String,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        mut properties: Properties,
    ) -> Message {
        let expires_at = properties
            .message_expiry_interval
            .map(|s| now + std::time::Duration::from_secs(u64::from(s)));
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        let size = counted_bytes(&topic, payload.len(), &properties);
        Message {
            size,
            topic,
            payload,
            qos,
            retain,
            properties,
            expires_at,
            from: None,
            from_client: None,
            sampled: None,
            qos0_cache: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// Bytes this message counts for in queues and budgets ([`counted_bytes`]).
    pub fn size(&self) -> usize {
        self.size
    }

    /// True once the message expiry interval has passed.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }

    /// Seconds left before expiry (at least 1 while not expired), `None` without expiry.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|t| {
            let left = t.saturating_duration_since(now).as_secs_f64().ceil();
            (left as u32).max(1)
        })
    }

    /// Builds the PUBLISH for one subscriber.
    pub fn to_publish(&self, now: Instant, d: &PublishVariant) -> Publish {
        let mut properties = self.properties.clone();
        if properties.message_expiry_interval.is_some() {
            properties.message_expiry_interval = self.remaining_expiry(now);
        }
        properties.subscription_identifiers = d.subscription_ids.clone();
        properties.topic_alias = d.topic_alias;
        Publish {
            dup: d.dup,
            qos: d.qos,
            retain: d.retain,
            topic: if d.omit_topic {
                String::new()
            } else {
                self.topic.clone()
            },
            packet_id: d.packet_id,
            payload: self.payload.clone(),
            properties,
        }
    }

    /// The wire bytes of the plain QoS 0 variant (no alias, no subscription id, RETAIN=0,
    /// no expiry), encoded once and then shared; `None` when the message needs a per-subscriber
    /// encoding (it has an expiry interval, which counts down).
    pub fn cached_qos0(&self, version: ProtocolVersion) -> Option<Bytes> {
        if self.expires_at.is_some() {
            return None;
        }
        let slot = &self.qos0_cache[usize::from(version.is_v5())];
        if let Some(b) = slot.get() {
            return Some(b.clone());
        }
        let variant = PublishVariant::plain(QoS::AtMostOnce);
        let publish = self.to_publish(Instant::now(), &variant);
        let mut out = BytesMut::new();
        codec::encode(&codec::Packet::Publish(publish), version, &mut out).ok()?;
        Some(slot.get_or_init(|| out.freeze()).clone())
    }
}

/// What differs between two subscribers' copies of the same message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishVariant {
    /// QoS of this delivery (the lower of the message's and the subscription's).
    pub qos: QoS,
    /// Packet id (0 for QoS 0).
    pub packet_id: u16,
    /// DUP flag (redelivery).
    pub dup: bool,
    /// RETAIN flag of this delivery.
    pub retain: bool,
    /// Subscription identifiers of every matching subscription (5.0).
    pub subscription_ids: Vec<u32>,
    /// Topic alias to send (5.0).
    pub topic_alias: Option<u16>,
    /// Send an empty topic (the alias is already known to the client).
    pub omit_topic: bool,
}

impl PublishVariant {
    /// The plain variant: given QoS, nothing else.
    pub fn plain(qos: QoS) -> PublishVariant {
        PublishVariant {
            qos,
            ..PublishVariant::default()
        }
    }

    /// True when this variant is the shared, cacheable QoS 0 encoding.
    pub fn is_plain_qos0(&self) -> bool {
        *self == PublishVariant::plain(QoS::AtMostOnce)
    }
}

/// One message on its way to one session: the message plus what the subscription decided.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub msg: Arc<Message>,
    /// Granted QoS for this subscriber: min(message QoS, subscription QoS).
    pub qos: QoS,
    /// RETAIN flag to send (retained replay, or retain-as-published).
    pub retain: bool,
    /// Subscription identifiers of every matching subscription.
    pub subscription_ids: Vec<u32>,
}

#[cfg(test)]
impl Delivery {
    /// A delivery of a new message without properties, at `qos`, not retained (unit tests).
    pub(crate) fn for_test(now: Instant, topic: &str, payload: Bytes, qos: QoS) -> Delivery {
        let msg = Message::new(
            now,
            topic.into(),
            payload,
            qos,
            false,
            Properties::default(),
        );
        Delivery {
            msg: Arc::new(msg),
            qos,
            retain: false,
            subscription_ids: vec![],
        }
    }
}

/// A message's user properties in the tables' and peers' wire form.
pub fn user_properties_to_wire(p: &Properties) -> Vec<meshmq_proto::tables::KeyValue> {
    p.user_properties
        .iter()
        .map(|(k, v)| meshmq_proto::tables::KeyValue {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// User properties back from their wire form.
pub fn user_properties_from_wire(kvs: &[meshmq_proto::tables::KeyValue]) -> Vec<(String, String)> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect()
}
