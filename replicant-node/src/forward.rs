//! Cross-node delivery: after local delivery, a PUBLISH goes once to every other replicant
//! whose `routes` rows match its topic (read from the local replica), over that node's peer
//! link; a message that arrives from a peer is delivered to local subscribers only, never
//! forwarded again.
//!
//! Owns the conversion between [`Message`] and the wire `PeerMessage`. The transport is in
//! [`crate::peer`]; which nodes match is the tables' `route_nodes_matching`. A message on
//! a `$SYS/...` topic is forwarded only when the broker itself published it
//! ([`sys_to_peers`], called by `crate::sys` alone: its events, stats and heartbeat reach
//! subscribers on every node); [`to_peers`] never forwards one. Shared-group members are
//! picked cluster-wide by the publishing node (`crate::shared_pick`), which forwards to the
//! picked member only.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use meshmq_proto::peer::PeerMessage;
use meshmq_shared::codec::{Properties, QoS};
use meshmq_shared::metrics as m;

use crate::ctx::Ctx;
use crate::message::Message;
use crate::peer::{Congested, Deliver};

/// Forwards `msg` to every other node with a matching route; returns how many nodes, and a
/// link found congested (publisher back-pressure), if any.
pub fn to_peers(ctx: &Ctx, msg: &Message) -> (usize, Option<Congested>) {
    if msg.topic.starts_with("$SYS/") {
        return (0, None);
    }
    send(ctx, msg)
}

/// Forwards one of the broker's own `$SYS` messages (built by `crate::sys`, never a
/// client's) to every other node with a matching route; returns how many nodes. QoS 0: a
/// congested link is not waited for.
pub fn sys_to_peers(ctx: &Ctx, msg: &Message) -> usize {
    send(ctx, msg).0
}

/// [`to_peers`] without the `$SYS` rule.
fn send(ctx: &Ctx, msg: &Message) -> (usize, Option<Congested>) {
    let Some(peers) = &ctx.cluster.peers else {
        return (0, None);
    };
    let me = ctx.node();
    let mut targets: Vec<(String, String)> = Vec::new();
    ctx.tables.core.read(|t| {
        t.route_nodes_matching(&msg.topic, |node| {
            if node != me
                && !targets.iter().any(|(n, _)| n == node)
                && let Some(row) = t.node(node)
                && !row.peer_addr.is_empty()
            {
                targets.push((node.to_owned(), row.peer_addr.clone()));
            }
        });
    });
    if targets.is_empty() {
        return (0, None);
    }
    let wire = to_wire(msg, Instant::now());
    let n = targets.len();
    let mut congested = None;
    for (node, addr) in targets {
        metrics::counter!(m::MESSAGES_FORWARDED_TOTAL).increment(1);
        if let Some(c) = peers.forward(&node, &addr, wire.clone()) {
            congested = Some(c);
        }
    }
    (n, congested)
}

/// Keeps a link open to every other replicant in the `nodes` table (so the first message
/// to a node is not lost while it dials) and drops links of nodes that left; runs until
/// shutdown, re-checking whenever the replica applies something (at least every second).
pub async fn sync_links(ctx: Arc<Ctx>) {
    let Some(peers) = ctx.cluster.peers.clone() else {
        return;
    };
    let mut applied = ctx.tables.core.replica().subscribe_applied();
    let mut known: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    loop {
        let me = ctx.node();
        let now: std::collections::HashMap<String, String> = ctx.tables.core.read(|t| {
            t.nodes()
                .filter(|n| n.node != me && !n.peer_addr.is_empty())
                .filter(|n| n.status != meshmq_proto::tables::NodeState::Left as i32)
                .map(|n| (n.node.clone(), n.peer_addr.clone()))
                .collect()
        });
        for (node, addr) in &now {
            if known.get(node) != Some(addr) {
                peers.connect(node, addr);
            }
        }
        for node in known.keys().filter(|n| !now.contains_key(*n)) {
            peers.remove(node);
        }
        known = now;
        tokio::select! {
            _ = ctx.admission.shutdown.cancelled() => return,
            _ = applied.changed() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

/// The callback the peer server calls for each received message: local delivery only.
/// `ctx` is filled in once the broker context exists (the peer endpoint starts before it).
pub fn deliver_fn(ctx: Arc<OnceLock<Weak<Ctx>>>) -> Deliver {
    Arc::new(move |mut pm: PeerMessage| {
        let Some(ctx) = ctx.get().and_then(Weak::upgrade) else {
            return;
        };
        let shared = pm.shared.take();
        let Some(msg) = from_wire(pm, Instant::now()) else {
            metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "bad_peer_message")
                .increment(1);
            return;
        };
        metrics::counter!(m::MESSAGES_FROM_PEERS_TOTAL).increment(1);
        let msg = Arc::new(msg);
        if let Some(t) = shared {
            let mut targets = Vec::new();
            let pick = (t.group.as_str(), t.filter.as_str(), t.client_id.as_str());
            crate::shared_pick::local_targets(&ctx, &[pick], &msg, &mut targets);
            if targets.is_empty() {
                metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "shared_member_gone")
                    .increment(1);
            } else {
                crate::publish::push(targets);
            }
        } else if !crate::publish::route(&ctx, &msg).matched {
            crate::publish::count_unmatched(); // a route that outlived its subscribers
        }
    })
}

/// The wire form of `msg`, with the expiry interval that remains at `now`.
pub fn to_wire(msg: &Message, now: Instant) -> PeerMessage {
    let p = &msg.properties;
    PeerMessage {
        topic: msg.topic.clone(),
        payload: msg.payload.clone(),
        qos: msg.qos as u32,
        retain: msg.retain,
        payload_format_indicator: p.payload_format_indicator.map(u32::from),
        message_expiry_interval: msg.remaining_expiry(now),
        content_type: p.content_type.clone(),
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: crate::message::user_properties_to_wire(p),
        from_client: msg.from_client.as_deref().unwrap_or_default().to_owned(),
        shared: None,
        sampled_at_us: msg
            .sampled
            .as_ref()
            .and_then(crate::delivery_latency::to_wire),
    }
}

/// A routable message from its wire form; `None` if a field is out of range (QoS > 2,
/// payload format > 1) or the topic is empty.
pub fn from_wire(pm: PeerMessage, now: Instant) -> Option<Message> {
    let qos = u8::try_from(pm.qos).ok().and_then(QoS::from_u8)?;
    let payload_format_indicator = match pm.payload_format_indicator {
        None => None,
        Some(v @ 0..=1) => Some(v as u8),
        Some(_) => return None,
    };
    if pm.topic.is_empty() {
        return None;
    }
    let properties = Properties {
        payload_format_indicator,
        message_expiry_interval: pm.message_expiry_interval,
        content_type: pm.content_type,
        response_topic: pm.response_topic,
        correlation_data: pm.correlation_data,
        user_properties: crate::message::user_properties_from_wire(&pm.user_properties),
        ..Properties::default()
    };
    let mut msg = Message::new(now, pm.topic, pm.payload, qos, pm.retain, properties);
    msg.sampled = pm
        .sampled_at_us
        .map(|us| crate::delivery_latency::from_wire(us, now));
    if !pm.from_client.is_empty() {
        msg.from_client = Some(Arc::from(pm.from_client.as_str()));
    }
    Some(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn a_message_survives_the_wire_with_its_remaining_expiry() {
        let now = Instant::now();
        let props = Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            content_type: Some("text/plain".into()),
            response_topic: Some("r/t".into()),
            correlation_data: Some(Bytes::from_static(b"c")),
            user_properties: vec![("k".into(), "v".into())],
            ..Properties::default()
        };
        let mut msg = Message::new(
            now,
            "a/b".into(),
            Bytes::from_static(b"p"),
            QoS::AtLeastOnce,
            true,
            props,
        );
        msg.from_client = Some(Arc::from("pub-1"));
        let later = now + std::time::Duration::from_secs(20);
        let back = from_wire(to_wire(&msg, later), later).expect("valid");
        assert_eq!(back.topic, "a/b");
        assert_eq!(back.qos, QoS::AtLeastOnce);
        assert!(back.retain);
        assert_eq!(back.properties.message_expiry_interval, Some(40));
        assert_eq!(
            back.properties.user_properties,
            vec![("k".to_owned(), "v".to_owned())]
        );
        assert_eq!(back.properties.content_type.as_deref(), Some("text/plain"));
        assert_eq!(back.from_client.as_deref(), Some("pub-1"));
    }

    #[test]
    fn out_of_range_fields_are_refused() {
        let bad_qos = PeerMessage {
            topic: "t".into(),
            qos: 3,
            ..PeerMessage::default()
        };
        assert!(from_wire(bad_qos, Instant::now()).is_none());
        let bad_pfi = PeerMessage {
            topic: "t".into(),
            payload_format_indicator: Some(7),
            ..PeerMessage::default()
        };
        assert!(from_wire(bad_pfi, Instant::now()).is_none());
        assert!(from_wire(PeerMessage::default(), Instant::now()).is_none());
    }
}
