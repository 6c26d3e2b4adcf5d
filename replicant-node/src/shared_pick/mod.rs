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

pub mod strategy;

use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;
use meshmq_proto::peer::{PeerMessage, SharedTarget};
use meshmq_shared::config::SharedStrategy;
use meshmq_shared::metrics as m;
use parking_lot::Mutex;

use crate::ctx::Ctx;
use crate::message::Message;
use crate::peer::Congested;
use crate::router::Target;
use strategy::{Need, PickState};

/// A group's key: (group name, filter).
type GroupKey = (String, String);

/// Groups whose strategy state is kept before states of groups gone are dropped.
const PRUNE_AT: usize = 4_096;

/// The strategy state of this node's cluster-wide picks, per (group, filter): only for
/// the strategies that keep one (round robin, sticky); the others share an unused one.
#[derive(Debug, Default)]
pub struct SharedPicker {
    states: Mutex<HashMap<GroupKey, Arc<PickState<String>>>>,
    /// The state handed to strategies that keep none.
    stateless: Arc<PickState<String>>,
}

/// A borrowed (group, filter), to look a state up without allocating.
#[derive(Hash)]
struct GroupRef<'a>(&'a str, &'a str);

impl hashbrown::Equivalent<GroupKey> for GroupRef<'_> {
    fn equivalent(&self, key: &GroupKey) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

impl SharedPicker {
    /// The state of `(group, filter)` for `strategy`, made on first use; when many are
    /// kept, those of groups for which `exists` says no are dropped first.
    fn state(
        &self,
        strategy: SharedStrategy,
        group: &str,
        filter: &str,
        exists: impl Fn(&str, &str) -> bool,
    ) -> Arc<PickState<String>> {
        if !matches!(
            strategy,
            SharedStrategy::RoundRobin | SharedStrategy::Sticky
        ) {
            return self.stateless.clone();
        }
        let mut states = self.states.lock();
        if let Some(s) = states.get(&GroupRef(group, filter)) {
            return s.clone();
        }
        if states.len() >= PRUNE_AT {
            states.retain(|(g, f), _| exists(g, f));
        }
        let state = Arc::new(PickState::default());
        states.insert((group.to_owned(), filter.to_owned()), state.clone());
        state
    }
}

/// One pick: the member and where it is.
struct Pick {
    group: String,
    filter: String,
    client_id: String,
    node: String,
}

/// Picks one member of every shared group matching `msg` cluster-wide: local picks are
/// added to `out`, others are forwarded to their node. Returns how many were forwarded, and
/// a link found congested, if any.
pub fn pick(ctx: &Ctx, msg: &Arc<Message>, out: &mut Vec<Target>) -> (usize, Option<Congested>) {
    let Some(peers) = &ctx.cluster.peers else {
        return (0, None);
    };
    if msg.topic.starts_with("$SYS/") {
        return (0, None);
    }
    let me = ctx.node();
    let strategy = ctx.config.mqtt.shared_subscription_strategy;
    let picker = &ctx.cluster.shared_picker;
    let mut picks: Vec<(Pick, Option<String>)> = Vec::new();
    ctx.tables.core.read(|t| {
        t.shared_groups_matching(&msg.topic, |group, filter, members| {
            if members.is_empty() {
                return;
            }
            // `ready`: also skip a local member whose queue is past its high-water mark (a
            // remote member's queue is not known here).
            let connected = |(client, node): &(String, String), ready: bool| {
                if node == me {
                    ctx.local.sessions.get(client).is_some_and(|s| {
                        s.mailbox.is_online() && !(ready && s.mailbox.is_congested())
                    })
                } else {
                    // A member whose node's link is down cannot be reached now.
                    peers.is_up(node)
                        && t.registry(client)
                            .is_some_and(|r| r.connected && r.node == *node)
                }
            };
            let state = picker.state(strategy, group, filter, |g, f| {
                !t.shared_members(g, f).is_empty()
            });
            let Some(i) = strategy::choose(
                strategy,
                &state,
                msg,
                members,
                |(client, _)| client.clone(),
                |m, need| connected(m, need == Need::Ready),
            ) else {
                return;
            };
            let (client_id, node) = &members[i];
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
    let mut local = Vec::new();
    for (p, addr) in picks {
        if p.node == me {
            local.push(p);
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
    let local: Vec<(&str, &str, &str)> = local
        .iter()
        .map(|p| (p.group.as_str(), p.filter.as_str(), p.client_id.as_str()))
        .collect();
    local_targets(ctx, &local, msg, out);
    (forwarded, congested)
}

/// The deliveries to members of groups on this node, one per `(group, filter, client id)`:
/// to that member, or to another local member if it is no longer here (none when the group
/// has no member here any more).
pub fn local_targets(
    ctx: &Ctx,
    picks: &[(&str, &str, &str)],
    msg: &Arc<Message>,
    out: &mut Vec<Target>,
) {
    if picks.is_empty() {
        return;
    }
    // Session ids first: the router is read under its own lock, once for all picks.
    let members: Vec<_> = picks
        .iter()
        .map(|&(group, filter, client)| {
            (group, filter, ctx.local.sessions.get(client).map(|s| s.id))
        })
        .collect();
    ctx.local.router.shared_targets(&members, msg, out);
}
