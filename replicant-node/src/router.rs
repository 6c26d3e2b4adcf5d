//! The node's subscription index: which local sessions a topic reaches.
//!
//! Owns the topic trie of plain subscriptions, the shared-subscription groups with their
//! member-choice strategies, and the session → mailbox map. Matching runs under a read lock
//! and never awaits; pushing into mailboxes happens after the lock is released, by the caller.
//! It does not talk to the cluster tables: it tells the caller when a filter gains its first
//! or loses its last local subscriber, and the caller writes the `routes` row.

use std::sync::Arc;

use hashbrown::HashMap;
use meshmq_shared::config::SharedStrategy;
use meshmq_shared::topic::Trie;
use parking_lot::RwLock;

use crate::mailbox::Mailbox;
use crate::message::{Delivery, Message};
use crate::session::SubOpts;
use crate::sessions::SessionId;
use crate::shared_pick::strategy::{self, Need, PickState};

/// A plain subscription in the trie.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SubValue {
    sid: SessionId,
    opts: SubOpts,
}

/// One `$share/{group}/{filter}` group.
#[derive(Debug, Default)]
struct SharedGroup {
    members: Vec<(SessionId, SubOpts)>,
    /// Strategy state (round-robin cursor, sticky member) of this node's local picks.
    pick: PickState<SessionId>,
}

#[derive(Debug, Default)]
struct State {
    trie: Trie<SubValue>,
    /// Local subscriber count per plain filter: drives `routes` rows (first / last).
    filter_counts: HashMap<String, usize>,
    /// Order of first/last decisions, stamped on the `routes` ops (`RouteAdd.seq`) so that
    /// ops committed out of order still apply in decision order. Starts at 1.
    route_seq: u64,
    /// Route decisions not yet taken by the route writer: the latest per filter
    /// (`true` = add), with its seq. Recorded under this lock, so seqs and queue agree.
    decisions: HashMap<String, (bool, u64)>,
    shared_trie: Trie<Box<str>>,
    /// filter → group → members.
    shared: HashMap<Box<str>, HashMap<Box<str>, SharedGroup>>,
    mailboxes: HashMap<SessionId, Arc<Mailbox>>,
}

/// The next route decision seq (taken under the state lock, so seqs follow decisions).
fn next_seq(st: &mut State) -> u64 {
    st.route_seq += 1;
    st.route_seq
}

/// Records a first/last decision for `filter` and returns its seq.
fn decide(st: &mut State, filter: &str, add: bool) -> u64 {
    let seq = next_seq(st);
    st.decisions.insert(filter.to_owned(), (add, seq));
    seq
}

/// Route decisions taken by the route writer: `(filter, add, seq)`, and the seq up to
/// which every decision is in this batch or in an earlier one.
pub struct Decisions {
    /// The latest decision per filter, at most the requested number.
    pub batch: Vec<(String, bool, u64)>,
    /// Every decision with a seq up to this one has been handed out.
    pub covered: u64,
}

/// A delivery to push into a session's mailbox.
pub type Target = (Arc<Mailbox>, Delivery);

/// The subscription index of this node.
#[derive(Debug)]
pub struct Router {
    state: RwLock<State>,
    strategy: SharedStrategy,
    /// Woken when a route decision is recorded (the route writer waits on it).
    pub decided: tokio::sync::Notify,
}

impl Router {
    /// An empty router using `strategy` for shared subscriptions.
    pub fn new(strategy: SharedStrategy) -> Router {
        Router {
            state: RwLock::new(State::default()),
            strategy,
            decided: tokio::sync::Notify::new(),
        }
    }

    /// Takes up to `max` pending route decisions for the route writer (the oldest first).
    pub fn take_decisions(&self, max: usize) -> Decisions {
        let mut st = self.state.write();
        let mut all: Vec<(String, bool, u64)> = st
            .decisions
            .drain()
            .map(|(f, (add, seq))| (f, add, seq))
            .collect();
        all.sort_unstable_by_key(|d| d.2);
        let rest = all.split_off(all.len().min(max));
        let covered = rest.first().map_or(st.route_seq, |d| d.2 - 1);
        for (f, add, seq) in rest {
            st.decisions.insert(f, (add, seq));
        }
        Decisions {
            batch: all,
            covered,
        }
    }

    /// Puts back decisions whose commit failed, unless a newer one for the filter exists.
    pub fn requeue_decisions(&self, failed: Vec<(String, bool, u64)>) {
        let mut st = self.state.write();
        for (f, add, seq) in failed {
            match st.decisions.get(&f) {
                Some((_, newer)) if *newer > seq => {}
                _ => {
                    st.decisions.insert(f, (add, seq));
                }
            }
        }
    }

    /// The seq of the latest route decision (0 before the first).
    pub fn decided_seq(&self) -> u64 {
        self.state.read().route_seq
    }

    /// True when route decisions wait for the writer.
    pub fn has_decisions(&self) -> bool {
        !self.state.read().decisions.is_empty()
    }

    /// Makes a session's mailbox reachable.
    pub fn register(&self, sid: SessionId, mailbox: Arc<Mailbox>) {
        self.state.write().mailboxes.insert(sid, mailbox);
    }

    /// Forgets a session's mailbox (its subscriptions must have been removed first).
    pub fn unregister(&self, sid: SessionId) {
        self.state.write().mailboxes.remove(&sid);
    }

    /// Adds a plain subscription; returns the route seq when `filter` had no local subscriber
    /// before (a `RouteAdd` decision is then queued for the route writer).
    pub fn subscribe(&self, sid: SessionId, filter: &str, opts: SubOpts) -> Option<u64> {
        let mut st = self.state.write();
        if !st.trie.insert(filter, SubValue { sid, opts }) {
            return None;
        }
        let n = st.filter_counts.entry_ref(filter).or_insert(0);
        *n += 1;
        let seq = (*n == 1).then(|| decide(&mut st, filter, true));
        drop(st);
        if seq.is_some() {
            self.decided.notify_one();
        }
        seq
    }

    /// Removes a plain subscription; returns the route seq when `filter` has no local
    /// subscriber left (the caller then writes `RouteRemove` with it).
    pub fn unsubscribe(&self, sid: SessionId, filter: &str, opts: SubOpts) -> Option<u64> {
        let mut st = self.state.write();
        if !st.trie.remove(filter, &SubValue { sid, opts }) {
            return None;
        }
        match st.filter_counts.get_mut(filter) {
            Some(n) if *n > 1 => {
                *n -= 1;
                None
            }
            Some(_) => {
                st.filter_counts.remove(filter);
                let seq = decide(&mut st, filter, false);
                drop(st);
                self.decided.notify_one();
                Some(seq)
            }
            None => None,
        }
    }

    /// Adds (or updates) a member of a shared group.
    pub fn subscribe_shared(&self, sid: SessionId, group: &str, filter: &str, opts: SubOpts) {
        let mut st = self.state.write();
        st.shared_trie.insert(filter, Box::from(group));
        let groups = st.shared.entry_ref(filter).or_default();
        let g = groups.entry_ref(group).or_default();
        match g.members.iter_mut().find(|(s, _)| *s == sid) {
            Some(m) => m.1 = opts,
            None => g.members.push((sid, opts)),
        }
    }

    /// Removes a member of a shared group; returns true if it was a member.
    pub fn unsubscribe_shared(&self, sid: SessionId, group: &str, filter: &str) -> bool {
        let mut st = self.state.write();
        let Some(groups) = st.shared.get_mut(filter) else {
            return false;
        };
        let Some(g) = groups.get_mut(group) else {
            return false;
        };
        let before = g.members.len();
        g.members.retain(|(s, _)| *s != sid);
        let removed = g.members.len() != before;
        if g.members.is_empty() {
            groups.remove(group);
            if groups.is_empty() {
                st.shared.remove(filter);
            }
            st.shared_trie.remove(filter, &Box::from(group));
        }
        removed
    }

    /// Number of plain (filter, session) subscriptions plus shared memberships.
    pub fn subscription_count(&self) -> usize {
        let st = self.state.read();
        st.trie.len()
            + st.shared
                .values()
                .flat_map(|g| g.values())
                .map(|g| g.members.len())
                .sum::<usize>()
    }

    /// Finds every local session `msg` goes to. Overlapping plain subscriptions of one session
    /// give one delivery at the highest granted QoS carrying every subscription identifier;
    /// each shared group gives one delivery to one member.
    pub fn route(&self, msg: &Arc<Message>, out: &mut Vec<Target>) {
        self.route_with(msg, true, out);
    }

    /// Like [`route`](Self::route) without the shared groups (in a cluster the publishing
    /// node picks shared members cluster-wide: see `crate::shared_pick`).
    pub fn route_plain(&self, msg: &Arc<Message>, out: &mut Vec<Target>) {
        self.route_with(msg, false, out);
    }

    /// The deliveries of `msg` to members of shared groups on this node, one per
    /// `(group, filter, member)`: to that member (a session id the publishing node picked),
    /// or when it is not (or no longer) a member here, to a local member picked by the
    /// strategy; nothing for a group without a member here. One read of the index for all.
    pub fn shared_targets(
        &self,
        picks: &[(&str, &str, Option<SessionId>)],
        msg: &Arc<Message>,
        out: &mut Vec<Target>,
    ) {
        let st = self.state.read();
        for &(group, filter, sid) in picks {
            let Some(g) = st.shared.get(filter).and_then(|m| m.get(group)) else {
                continue;
            };
            let member = sid
                .and_then(|sid| g.members.iter().find(|(s, _)| *s == sid).copied())
                .or_else(|| self.pick(g, msg, &st.mailboxes));
            if let Some((sid, opts)) = member
                && let Some(t) = member_target(&st, sid, opts, msg)
            {
                out.push(t);
            }
        }
    }

    fn route_with(&self, msg: &Arc<Message>, shared: bool, out: &mut Vec<Target>) {
        let st = self.state.read();
        let mut hits: Vec<(SessionId, SubOpts)> = Vec::new();
        st.trie.for_each_match(&msg.topic, |v| {
            if !(v.opts.no_local && msg.from == Some(v.sid)) {
                hits.push((v.sid, v.opts));
            }
        });
        hits.sort_unstable_by_key(|(sid, _)| *sid);
        let mut i = 0;
        while i < hits.len() {
            let (sid, first) = hits[i];
            let mut qos = first.qos;
            let mut rap = first.retain_as_published;
            let mut ids: Vec<u32> = first.subscription_id.into_iter().collect();
            i += 1;
            while i < hits.len() && hits[i].0 == sid {
                qos = qos.max(hits[i].1.qos);
                rap |= hits[i].1.retain_as_published;
                ids.extend(hits[i].1.subscription_id);
                i += 1;
            }
            if let Some(mb) = st.mailboxes.get(&sid) {
                out.push((mb.clone(), delivery(msg, qos, rap, ids)));
            }
        }
        if !shared {
            return;
        }
        st.shared_trie
            .for_each_match_with_filter(&msg.topic, |filter, group| {
                let Some(g) = st.shared.get(filter).and_then(|m| m.get(group)) else {
                    return;
                };
                if let Some((sid, opts)) = self.pick(g, msg, &st.mailboxes)
                    && let Some(t) = member_target(&st, sid, opts, msg)
                {
                    out.push(t);
                }
            });
    }

    /// Picks the member of a local shared group by the configured strategy
    /// (`shared_pick::strategy`: connected members first, ready ones for the load-spreading
    /// strategies).
    fn pick(
        &self,
        g: &SharedGroup,
        msg: &Message,
        mailboxes: &HashMap<SessionId, Arc<Mailbox>>,
    ) -> Option<(SessionId, SubOpts)> {
        let able = |(sid, _): &(SessionId, SubOpts), need: Need| match need {
            Need::Ready => ready(mailboxes, *sid),
            Need::Connected => online(mailboxes, *sid),
        };
        strategy::choose(self.strategy, &g.pick, msg, &g.members, |m| m.0, able)
            .map(|i| g.members[i])
    }
}

fn online(mailboxes: &HashMap<SessionId, Arc<Mailbox>>, sid: SessionId) -> bool {
    mailboxes.get(&sid).is_some_and(|m| m.is_online())
}

/// Online and its queue under the high-water mark.
fn ready(mailboxes: &HashMap<SessionId, Arc<Mailbox>>, sid: SessionId) -> bool {
    mailboxes
        .get(&sid)
        .is_some_and(|m| m.is_online() && !m.is_congested())
}

/// The delivery of `msg` to member `sid` of a shared group, with its options.
fn member_target(st: &State, sid: SessionId, opts: SubOpts, msg: &Arc<Message>) -> Option<Target> {
    let mb = st.mailboxes.get(&sid)?;
    let ids = opts.subscription_id.into_iter().collect();
    Some((
        mb.clone(),
        delivery(msg, opts.qos, opts.retain_as_published, ids),
    ))
}

fn delivery(
    msg: &Arc<Message>,
    sub_qos: meshmq_shared::codec::QoS,
    rap: bool,
    ids: Vec<u32>,
) -> Delivery {
    Delivery {
        msg: msg.clone(),
        qos: msg.qos.min(sub_qos),
        retain: rap && msg.retain,
        subscription_ids: ids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshmq_shared::codec::QoS;

    fn opts() -> SubOpts {
        SubOpts {
            qos: QoS::AtLeastOnce,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
            subscription_id: None,
        }
    }

    #[test]
    fn route_decisions_keep_the_latest_per_filter_and_say_what_they_cover() {
        let r = Router::new(SharedStrategy::RoundRobin);
        let a = r
            .subscribe(1, "a/#", opts())
            .expect("first subscriber of a/#");
        assert_eq!(
            r.subscribe(2, "a/#", opts()),
            None,
            "second subscriber: no decision"
        );
        let b = r.subscribe(1, "b", opts()).expect("first of b");
        let b_gone = r.unsubscribe(1, "b", opts()).expect("last of b");
        assert!(a < b && b < b_gone);
        assert_eq!(r.decided_seq(), b_gone);

        let d = r.take_decisions(10);
        let got: Vec<_> = d
            .batch
            .iter()
            .map(|(f, add, _)| (f.as_str(), *add))
            .collect();
        assert_eq!(got, [("a/#", true), ("b", false)], "b's add was superseded");
        assert_eq!(d.covered, b_gone);
        assert!(!r.has_decisions());

        // A batch that failed goes back, unless a newer decision for its filter exists.
        let again = r.subscribe(1, "b", opts()).expect("b again");
        r.requeue_decisions(d.batch);
        let d = r.take_decisions(1);
        assert_eq!(d.batch, [("a/#".to_owned(), true, a)]);
        assert_eq!(d.covered, again - 1, "b's newer add is still pending");
        let d = r.take_decisions(10);
        assert_eq!(d.batch, [("b".to_owned(), true, again)]);
        assert_eq!(d.covered, again);
    }
}
