//! The MQTT session as a pure state machine: no sockets, no clock of its own, no locks.
//!
//! A [`Session`] outlives connections (persistent sessions): it holds subscriptions, the
//! outbound in-flight window (QoS 1/2 awaiting acks), the pending queue beyond that window and
//! the inbound QoS 2 `awaiting_rel` set. Connection-scoped state (topic aliases both ways, the
//! client's Receive Maximum and Maximum Packet Size) is reset by [`Session::attach`].
//! The connection task feeds it packets and deliveries with the current time and executes the
//! [`Outgoing`] items it returns; it never decides protocol behaviour itself.

mod bounds;
mod handover;
mod inbound;
mod outbound;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use meshmq_shared::codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use meshmq_shared::config::{MqttConfig, QueueDropPolicy};

pub use handover::{Handed, HandedState};
pub use inbound::Inbound;
pub use outbound::{Inflight, Stage};

use crate::message::{Message, PublishVariant};

/// Options of one subscription, as the session and the router keep them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubOpts {
    /// Maximum QoS granted.
    pub qos: QoS,
    /// No Local: never deliver this session's own publications.
    pub no_local: bool,
    /// Retain As Published.
    pub retain_as_published: bool,
    /// Retain Handling 0, 1, 2.
    pub retain_handling: u8,
    /// Subscription identifier (5.0).
    pub subscription_id: Option<u32>,
}

/// Limits that come from the node's configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Cap on our in-flight QoS 1/2 deliveries (also bounded by the client's Receive Maximum).
    pub max_inflight: u16,
    /// Our Receive Maximum: un-released inbound QoS 2 beyond it is a protocol violation.
    pub receive_maximum: u16,
    /// EMQX-style cap on `awaiting_rel` below the Receive Maximum check.
    pub max_awaiting_rel: usize,
    /// Age after which an un-released inbound QoS 2 packet id is purged.
    pub await_rel_timeout: Duration,
    /// Bound of the session's queue (mailbox and pending queue together), in messages.
    pub max_queue: usize,
    /// The same bound in bytes.
    pub max_queue_bytes: usize,
    /// Drop policy of the pending queue.
    pub drop_policy: QueueDropPolicy,
    /// Topic Alias Maximum we accept from the client.
    pub max_topic_alias: u16,
    /// Bytes the topics of the client's aliases may take together.
    pub max_topic_alias_bytes: usize,
}

impl Limits {
    /// Limits from the `[mqtt]` section.
    pub fn from_config(c: &MqttConfig) -> Limits {
        Limits {
            max_inflight: c.max_inflight.max(1),
            receive_maximum: c.receive_maximum.max(1),
            max_awaiting_rel: c.max_awaiting_rel.max(1),
            await_rel_timeout: Duration::from_secs(c.await_rel_timeout),
            max_queue: c.max_mqueue_len.max(1),
            max_queue_bytes: c.max_mqueue_bytes.max(1),
            drop_policy: c.mqueue_drop_policy,
            max_topic_alias: c.max_topic_alias,
            max_topic_alias_bytes: c.max_topic_alias_bytes,
        }
    }
}

/// What the current connection told us about the client.
#[derive(Debug, Clone)]
pub struct ConnParams {
    /// Protocol version of the connection.
    pub version: ProtocolVersion,
    /// The client's Receive Maximum (65 535 when absent).
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size (`u32::MAX` when absent).
    pub max_packet_size: u32,
    /// The client's Topic Alias Maximum (server → client aliases; 0 = none).
    pub topic_alias_maximum: u16,
}

/// Something the connection task must send.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // short-lived: drained into the write buffer each turn
pub enum Outgoing {
    /// A control packet.
    Packet(Packet),
    /// A PUBLISH built from a shared message and this subscriber's variant.
    Publish {
        /// The message.
        msg: Arc<Message>,
        /// Packet id, flags, alias, subscription ids of this copy.
        variant: PublishVariant,
    },
}

/// Counters the connection task turns into metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    /// Deliveries dropped because the pending queue was full.
    pub queue_full: u64,
    /// Deliveries dropped because their message had expired.
    pub expired: u64,
    /// Deliveries dropped because they exceeded the client's Maximum Packet Size.
    pub too_large: u64,
    /// Inbound QoS 2 packet ids purged after `await_rel_timeout`.
    pub awaiting_rel_expired: u64,
    /// Inbound QoS 2 messages refused because `max_awaiting_rel` was reached.
    pub awaiting_rel_full: u64,
}

/// One client's session.
#[derive(Debug)]
pub struct Session {
    /// Client identifier.
    pub client_id: Arc<str>,
    /// Subscriptions by full filter (including `$share/{group}/`).
    pub subscriptions: HashMap<String, SubOpts>,
    limits: Limits,
    conn: ConnParams,
    next_packet_id: u16,
    inflight: VecDeque<Inflight>,
    /// How many entries at the back of `inflight` still wait to be (re-)sent on this
    /// connection: after a reconnect whose Receive Maximum admits fewer than were in
    /// flight, the rest wait there, in order and with their packet ids, until acks open
    /// the window. Always a suffix: new deliveries are only appended when none wait.
    unsent: usize,
    pending: bounds::Pending,
    awaiting_rel: HashMap<u16, Instant>,
    in_aliases: bounds::InAliases,
    out_aliases: HashMap<String, u16>,
    /// Counters since the last [`Session::take_drops`].
    drops: Drops,
}

impl Session {
    /// A fresh session.
    pub fn new(client_id: Arc<str>, limits: Limits, conn: ConnParams) -> Session {
        Session {
            client_id,
            subscriptions: HashMap::new(),
            limits,
            conn,
            next_packet_id: 1,
            inflight: VecDeque::new(),
            unsent: 0,
            pending: bounds::Pending::default(),
            awaiting_rel: HashMap::new(),
            in_aliases: bounds::InAliases::default(),
            out_aliases: HashMap::new(),
            drops: Drops::default(),
        }
    }

    /// Protocol version of the current (or last) connection.
    pub fn version(&self) -> ProtocolVersion {
        self.conn.version
    }

    /// Attaches a new connection to a resumed session: resets connection-scoped state and
    /// re-sends the unacknowledged QoS 1/2 PUBLISHes (DUP=1) and PUBRELs in order, each
    /// once, as many as the new connection's Receive Maximum admits (the rest follow as
    /// acks open the window), then whatever the window admits from the pending queue.
    pub fn attach(&mut self, now: Instant, conn: ConnParams, out: &mut Vec<Outgoing>) {
        self.conn = conn;
        self.in_aliases.clear();
        self.out_aliases.clear();
        self.resend_inflight(now, out);
        self.pump(now, out);
    }

    /// Counters accumulated since the last call.
    pub fn take_drops(&mut self) -> Drops {
        std::mem::take(&mut self.drops)
    }

    /// Records or replaces a subscription; returns true if the filter is new to the session.
    pub fn subscribe(&mut self, filter: &str, opts: SubOpts) -> bool {
        self.subscriptions.insert(filter.to_owned(), opts).is_none()
    }

    /// Removes a subscription; returns its options if it existed.
    pub fn unsubscribe(&mut self, filter: &str) -> Option<SubOpts> {
        self.subscriptions.remove(filter)
    }

    /// Number of QoS 1/2 deliveries awaiting acknowledgement.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Size of the in-flight window: our cap and the client's Receive Maximum, the lower.
    pub fn inflight_max(&self) -> usize {
        usize::from(self.conn.receive_maximum.min(self.limits.max_inflight))
    }

    /// The node's limits this session runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Number of deliveries waiting for room in the in-flight window.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Number of inbound QoS 2 packet ids awaiting PUBREL.
    pub fn awaiting_rel_len(&self) -> usize {
        self.awaiting_rel.len()
    }

    /// The earliest instant at which an `awaiting_rel` entry expires, for the task's timer.
    pub fn next_awaiting_rel_expiry(&self) -> Option<Instant> {
        self.awaiting_rel
            .values()
            .min()
            .map(|t| *t + self.limits.await_rel_timeout)
    }
}

/// The reason code a session-level protocol violation closes the connection with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The client exceeded our Receive Maximum (0x93).
    #[error("client exceeded receive maximum")]
    ReceiveMaximumExceeded,
    /// An unknown or out-of-range topic alias (0x94).
    #[error("invalid topic alias")]
    TopicAliasInvalid,
    /// A protocol error (0x82), e.g. an empty topic without a known alias.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A new topic alias would take the aliases' topics past `max_topic_alias_bytes` (0x97).
    #[error("topic aliases over their byte quota")]
    TopicAliasQuotaExceeded,
}

impl SessionError {
    /// The DISCONNECT reason code for this violation.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            SessionError::ReceiveMaximumExceeded => ReasonCode::ReceiveMaximumExceeded,
            SessionError::TopicAliasInvalid => ReasonCode::TopicAliasInvalid,
            SessionError::Protocol(_) => ReasonCode::ProtocolError,
            SessionError::TopicAliasQuotaExceeded => ReasonCode::QuotaExceeded,
        }
    }
}

#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod tests;
