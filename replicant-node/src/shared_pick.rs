//! Shared subscriptions across the cluster: for every `$share/{group}/{filter}` group whose
//! filter matches a message, the publishing node picks ONE member among all the group's
//! members on every replicant (the `shared` table), with the configured strategy and
//! preferring connected members, and delivers to it locally or forwards the message to that
//! member's node only (`PeerMessage.shared`). Each message thus reaches exactly one member
//! of each group cluster-wide, and a member that leaves (its row goes) or whose node dies
//! (its clients' registry rows go) stops being picked.
//!
//! Owns the per-group cursors of the round-robin and sticky strategies on this node (a
//! publisher-side pick, as EMQX does it). Standalone nodes do not come here: their router
//! picks among local members.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;
use meshmq_proto::peer::{PeerMessage, SharedTarget};
use meshmq_shared::config::SharedStrategy;
use meshmq_shared::metrics as m;
use parking_lot::Mutex;

use crate::broker::Ctx;
use crate::message::Message;
use crate::peer::Congested;
use crate::router::Target;

/// The strategy state of this node's picks, per (group, filter).
#[derive(Debug, Default)]
pub struct SharedPicker {
    /// Round-robin cursors.
    cursors: Mutex<HashMap<(String, String), usize>>,
    /// Sticky members (client ids).
    sticky: Mutex<HashMap<(String, String), String>>,
}

/// One pick: the member and where it is.
struct Pick {
    group: String,
    filter: String,
    client_id: String,
    node: String,
}

fn hash_of(s: &str) -> usize {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish() as usize
}

impl SharedPicker {
    /// Index into `members` where the search for a connected member starts.
    fn start(
        &self,
        strategy: SharedStrategy,
        key: &(String, String),
        msg: &Message,
        members: &[(String, String)],
    ) -> usize {
        let n = members.len();
        match strategy {
            SharedStrategy::Random => rand::random::<u32>() as usize % n,
            SharedStrategy::RoundRobin => {
                let mut cursors = self.cursors.lock();
                let c = cursors
                    .entry(key.clone())
                    .or_insert_with(|| rand::random::<u32>() as usize);
                *c = c.wrapping_add(1);
                *c % n
            }
            SharedStrategy::HashClientid => hash_of(msg.from_client.as_deref().unwrap_or("")) % n,
            SharedStrategy::HashTopic => hash_of(&msg.topic) % n,
            SharedStrategy::Sticky => {
                let sticky = self.sticky.lock();
                sticky
                    .get(key)
                    .and_then(|c| members.iter().position(|(m, _)| m == c))
                    .unwrap_or_else(|| rand::random::<u32>() as usize % n)
            }
        }
    }
}

/// Picks one member of every shared group matching `msg` cluster-wide: local picks are
/// added to `out`, others are forwarded to their node. Returns how many were forwarded, and
/// a link found congested, if any.
pub fn pick(ctx: &Ctx, msg: &Arc<Message>, out: &mut Vec<Target>) -> (usize, Option<Congested>) {
    let Some(peers) = &ctx.peers else {
        return (0, None);
    };
    if msg.topic.starts_with("$SYS/") {
        return (0, None);
    }
    let me = ctx.node();
    let strategy = ctx.config.mqtt.shared_subscription_strategy;
    let picker = &ctx.shared_picker;
    let mut picks: Vec<(Pick, Option<String>)> = Vec::new();
    ctx.core.read(|t| {
        t.shared_groups_matching(&msg.topic, |group, filter, members| {
            if members.is_empty() {
                return;
            }
            // `ready`: also skip a local member whose queue is past its high-water mark (a
            // remote member's queue is not known here).
            let connected = |(client, node): &(String, String), ready: bool| {
                if node == me {
                    ctx.sessions.get(client).is_some_and(|s| {
                        s.mailbox.is_online() && !(ready && s.mailbox.is_congested())
                    })
                } else {
                    // A member whose node's link is down cannot be reached now.
                    peers.is_up(node)
                        && t.registry(client)
                            .is_some_and(|r| r.connected && r.node == *node)
                }
            };
            let key = (group.to_owned(), filter.to_owned());
            let n = members.len();
            let start = picker.start(strategy, &key, msg, members);
            let in_turn = || (0..n).map(|k| &members[(start + k) % n]);
            let (client_id, node) = in_turn()
                .find(|m| strategy.spreads_load() && connected(m, true))
                .or_else(|| in_turn().find(|m| connected(m, false)))
                .unwrap_or(&members[start]);
            if strategy == SharedStrategy::Sticky {
                picker.sticky.lock().insert(key, client_id.clone());
            }
            let addr = (node != me)
                .then(|| t.node(node).map(|r| r.peer_addr.clone()))
                .flatten();
            picks.push((
                Pick {
                    group: group.to_owned(),
                    filter: filter.to_owned(),
                    client_id: client_id.clone(),
                    node: node.clone(),
                },
                addr,
            ));
        });
    });
    let mut forwarded = 0;
    let mut congested = None;
    let mut wire: Option<PeerMessage> = None;
    for (p, addr) in picks {
        if p.node == me {
            if let Some(target) = local_target(ctx, &p.group, &p.filter, &p.client_id, msg) {
                out.push(target);
            }
            continue;
        }
        let Some(addr) = addr.filter(|a| !a.is_empty()) else {
            metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "shared_member_gone")
                .increment(1);
            continue;
        };
        let mut pm = wire
            .get_or_insert_with(|| crate::forward::to_wire(msg, Instant::now()))
            .clone();
        pm.shared = Some(SharedTarget {
            group: p.group,
            filter: p.filter,
            client_id: p.client_id,
        });
        metrics::counter!(m::MESSAGES_FORWARDED_TOTAL).increment(1);
        if let Some(c) = peers.forward(&p.node, &addr, pm) {
            congested = Some(c);
        }
        forwarded += 1;
    }
    (forwarded, congested)
}

/// The delivery to member `client_id` of a group on this node, or to another local member
/// if it is no longer here (`None`: the group has no member here any more).
pub fn local_target(
    ctx: &Ctx,
    group: &str,
    filter: &str,
    client_id: &str,
    msg: &Arc<Message>,
) -> Option<Target> {
    ctx.sessions
        .get(client_id)
        .and_then(|s| ctx.router.shared_member(group, filter, s.id, msg))
        .or_else(|| ctx.router.shared_pick_local(group, filter, msg))
}
