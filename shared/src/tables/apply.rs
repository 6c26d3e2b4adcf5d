//! [`Tables::apply`]: the dispatch of one [`Op`] to the table rules, and the rules that span
//! tables (a claim with clean start clears subscriptions, a purge drops a node's rows
//! everywhere but in `subscriptions` and the disconnected `registry` rows, routes need a
//! known node, a node row carries what its node holds in the registry).
//!
//! Owns the order of checks inside an op: every check runs before the first write, so a
//! rejected op leaves the state exactly as it was. It must never read anything but its
//! arguments and the tables, and never return an error other than a `Rejected` result.

use meshmq_proto::tables::{
    Applied, BannedAs, Batch, NodePurge, NodeUp, Op, OpResult, RegistryClaim, RegistryRemove,
    RejectReason, Rejected, RetainedSet, SharedAdd, SharedRemove, SubscriptionSet, op::Kind,
    op_result::Outcome,
};

use super::nodes::UpOutcome;
use super::{
    Tables, auth_users, authz_rules, banned, invalid, reject, retained, retained_quota, routes,
    settings, shared_groups, subscriptions,
};

/// What a single table rule returns: the outcome to report, or why nothing changed.
type Applying = Result<Outcome, Rejected>;

/// Where an op is in the log: the entry's index and the op's position in its batch.
#[derive(Debug, Clone, Copy)]
struct OpPos {
    index: u64,
    pos: usize,
}

impl OpPos {
    /// The generation a claim at this place gives a client that has no registry row:
    /// `index × 2^16 + pos + 1`, unique per op (a batch holds fewer than 2^16 ops) and
    /// growing with the log, so it is above every generation the client had before (each
    /// of its earlier claims sat at a smaller index, and a row's generation only grows by
    /// one per claim).
    fn first_generation(self) -> u64 {
        self.index
            .saturating_mul(1 << 16)
            .saturating_add(self.pos as u64 % (1 << 16) + 1)
    }
}

/// The outcome of an op that applied with nothing to report.
fn done() -> Applying {
    Ok(Outcome::Ok(Applied {}))
}

impl Tables {
    /// Applies one op at log index `index` and returns its result.
    ///
    /// Deterministic: the same ops in the same order give the same state and the same
    /// results on every node. Total: a malformed or stale op gives a `Rejected` result and
    /// changes nothing; it never panics. `index` only advances
    /// [`applied_index`](Self::applied_index) (it never moves back).
    pub fn apply(&mut self, index: u64, op: &Op) -> OpResult {
        self.apply_at(OpPos { index, pos: 0 }, op)
    }

    /// Applies the ops of one log entry in order, all at `index`, one result per op. A
    /// rejected op does not stop the others (each op is its own all-or-nothing unit).
    pub fn apply_batch(&mut self, index: u64, batch: &Batch) -> Vec<OpResult> {
        batch
            .ops
            .iter()
            .enumerate()
            .map(|(pos, op)| self.apply_at(OpPos { index, pos }, op))
            .collect()
    }

    /// Applies one op at its place in the log.
    fn apply_at(&mut self, at: OpPos, op: &Op) -> OpResult {
        self.applied_index = self.applied_index.max(at.index);
        let applying = match &op.kind {
            Some(kind) => self.apply_kind(at, kind),
            None => Err(invalid("empty Op")),
        };
        OpResult {
            outcome: Some(applying.unwrap_or_else(Outcome::Rejected)),
        }
    }

    /// Routes an op to its rule.
    fn apply_kind(&mut self, at: OpPos, kind: &Kind) -> Applying {
        match kind {
            Kind::NodeUp(op) => self.node_up(op),
            Kind::NodeStatus(op) => self.nodes.set_status(op).and_then(|()| done()),
            Kind::NodePurge(op) => self.node_purge(op),
            Kind::RegistryClaim(op) => self.registry_claim(op, at.first_generation()),
            Kind::RegistryDisconnect(op) => {
                let node = self.registry.disconnect(op)?;
                self.sync_held(&node);
                done()
            }
            Kind::RegistryRemove(op) => self.registry_remove(op),
            Kind::SubscriptionSet(op) => self.subscription_set(op),
            Kind::SubscriptionRemove(op) => {
                self.subscriptions.remove(&op.client_id, &op.filter);
                done()
            }
            Kind::SubscriptionClear(op) => {
                self.subscriptions.clear(&op.client_id);
                done()
            }
            Kind::RouteAdd(op) => {
                routes::check("RouteAdd", &op.filter, &op.node)?;
                self.require_node("RouteAdd", &op.node)?;
                self.routes.add(&op.filter, &op.node, op.seq);
                done()
            }
            Kind::RouteRemove(op) => {
                self.routes.remove(&op.filter, &op.node, op.seq);
                done()
            }
            Kind::SharedAdd(op) => self.shared_add(op),
            Kind::SharedRemove(op) => self.shared_remove(op),
            Kind::RetainedSet(op) => self.retained_set(op),
            Kind::RetainedDelete(op) => {
                self.retained.delete(&op.topic);
                done()
            }
            Kind::RetainedExpire(op) => {
                self.retained.expire(op.now_ms);
                done()
            }
            Kind::AuthUserSet(op) => {
                let user = op
                    .user
                    .as_ref()
                    .ok_or_else(|| invalid("AuthUserSet: no user"))?;
                auth_users::check(user)?;
                self.auth_users.set(user);
                done()
            }
            Kind::AuthUserDelete(op) => {
                self.auth_users.delete(&op.user_id);
                done()
            }
            Kind::BannedAdd(op) => {
                let row = op
                    .row
                    .as_ref()
                    .ok_or_else(|| invalid("BannedAdd: no row"))?;
                banned::check(row)?;
                self.banned.add(row, op.now_s)?;
                done()
            }
            Kind::BannedDelete(op) => {
                if op.all {
                    self.banned.clear();
                } else {
                    let kind = BannedAs::try_from(op.kind).unwrap_or(BannedAs::Unspecified);
                    self.banned.delete(kind, &op.who);
                }
                done()
            }
            Kind::BannedPurge(op) => {
                self.banned.purge(op.now_s);
                done()
            }
            Kind::AuthzRulesSet(op) => {
                let rules = op
                    .rules
                    .as_ref()
                    .ok_or_else(|| invalid("AuthzRulesSet: no rules"))?;
                authz_rules::check(rules)?;
                self.authz_rules.set(rules);
                done()
            }
            Kind::AuthzRulesDelete(op) => {
                self.authz_rules.delete(op.kind, &op.key);
                done()
            }
            Kind::AuthzCacheClear(_) => {
                self.authz_rules.clear_cache();
                done()
            }
            Kind::SettingSet(op) => {
                self.settings.set(op, settings::Limits::TABLE)?;
                done()
            }
            Kind::SettingDelete(op) => {
                self.settings.delete(op)?;
                done()
            }
        }
    }

    /// Rejects with `UnknownNode` unless `node` has a row: a late write of a purged node
    /// must not bring its rows back.
    fn require_node(&self, what: &str, node: &str) -> Result<(), Rejected> {
        if self.nodes.contains(node) {
            Ok(())
        } else {
            Err(reject(
                RejectReason::UnknownNode,
                format!("{what}: unknown node {node:?}"),
            ))
        }
    }

    /// Copies what `node` holds in the registry into its node row (if it has one): called
    /// after every op that adds, drops or disconnects a registry row of `node`.
    /// A projected replica holds few registry rows: its counts come from the cores' notes
    /// (`projected.rs`).
    fn sync_held(&mut self, node: &str) {
        if self.projected_for.is_some() {
            return;
        }
        if let Some(recorder) = &mut self.recorder {
            recorder.counted(node);
        }
        self.nodes.set_held(node, self.registry.held(node));
    }

    /// `NodeUp`; a new incarnation drops what the previous process of that node held. The
    /// row (new or refreshed) gets what the node holds in the registry: a node announcing
    /// itself again after a purge finds its disconnected sessions counted.
    fn node_up(&mut self, op: &NodeUp) -> Applying {
        if let UpOutcome::NewIncarnation { new } = self.nodes.up(op)? {
            self.routes.purge_node(&op.node);
            self.shared.purge_node(&op.node);
            self.registry.purge_node(&op.node, new.saturating_sub(1));
        }
        self.sync_held(&op.node);
        done()
    }

    /// `NodePurge`: drops routes, shared members and connected registry rows of the node,
    /// then its row; keeps subscriptions (and disconnected registry rows, which carry the
    /// expiry clock) so that persistent sessions resume elsewhere, or expire.
    fn node_purge(&mut self, op: &NodePurge) -> Applying {
        if op.node.is_empty() {
            return Err(invalid("NodePurge: empty node id"));
        }
        self.nodes.check_purge(&op.node, op.incarnation)?;
        self.routes.purge_node(&op.node);
        self.shared.purge_node(&op.node);
        self.registry.purge_node(&op.node, op.incarnation);
        // Its disconnected rows stay in the registry, counted again if the node comes back.
        self.nodes.remove(&op.node);
        done()
    }

    /// `RegistryClaim`: applies when well-formed and, if it names an expected owner, while
    /// the client's row still matches it (else STATE_CONFLICT, nothing changed); clears the subscriptions of a
    /// clean start or of an expired session in the same op. A client without a row gets
    /// `first_generation` (unique to this op's place in the log), so an op naming a
    /// generation of an earlier, removed session can never match the new one.
    fn registry_claim(&mut self, op: &RegistryClaim, first_generation: u64) -> Applying {
        self.registry.check_claim(op)?;
        let has_subscriptions = self.subscriptions.has_any(&op.client_id);
        let outcome = self.registry.claim(op, has_subscriptions, first_generation);
        if outcome.clear_subscriptions {
            self.subscriptions.clear(&op.client_id);
        }
        if let Some(previous) = &outcome.claimed.previous {
            self.sync_held(&previous.node);
        }
        self.sync_held(&op.node);
        // Only a session that keeps its subscriptions brings any into a projection (the
        // claiming node writes later ones itself).
        if let Some(recorder) = &mut self.recorder
            && has_subscriptions
            && !outcome.clear_subscriptions
        {
            recorder.claimed(&op.client_id, &op.node);
        }
        Ok(Outcome::Claimed(outcome.claimed))
    }

    /// `RegistryRemove`: the session ended, its subscriptions go with it.
    fn registry_remove(&mut self, op: &RegistryRemove) -> Applying {
        let row = self.registry.remove(op)?;
        self.subscriptions.clear(&op.client_id);
        self.sync_held(&row.node);
        done()
    }

    /// `SubscriptionSet` for a client that has a registry row.
    fn subscription_set(&mut self, op: &SubscriptionSet) -> Applying {
        if op.client_id.is_empty() {
            return Err(invalid("SubscriptionSet: empty client id"));
        }
        let options = op.options.unwrap_or_default();
        subscriptions::check(&op.filter, &options)?;
        if self.registry.get(&op.client_id).is_none() {
            return Err(reject(
                RejectReason::UnknownClient,
                format!("SubscriptionSet: unknown client {:?}", op.client_id),
            ));
        }
        self.subscriptions.set(&op.client_id, &op.filter, options);
        done()
    }

    /// `SharedAdd` for a known node.
    fn shared_add(&mut self, op: &SharedAdd) -> Applying {
        shared_groups::check_add(&op.group, &op.filter, &op.client_id, &op.node)?;
        self.require_node("SharedAdd", &op.node)?;
        self.shared
            .add(&op.group, &op.filter, &op.client_id, &op.node);
        if let Some(recorder) = &mut self.recorder {
            recorder.joined(&op.client_id);
        }
        done()
    }

    /// `SharedRemove`: an ended session's removal (with its generation) never touches the
    /// membership of a newer session of the same client (a reconnect's claim and SharedAdd
    /// can commit before the old node's bookkeeping).
    fn shared_remove(&mut self, op: &SharedRemove) -> Applying {
        if op.generation != 0
            && let Some(row) = self.registry.get(&op.client_id)
            && row.generation > op.generation
        {
            return Err(reject(
                RejectReason::StaleGeneration,
                format!(
                    "SharedRemove: client {:?} is at generation {}, op names {}",
                    op.client_id, row.generation, op.generation
                ),
            ));
        }
        self.shared.remove(&op.group, &op.filter, &op.client_id);
        done()
    }

    /// `RetainedSet`; an empty payload deletes (MQTT 5.0 3.3.1.3). A message that would
    /// take the table past the limits the op carries is rejected (`QuotaExceeded`).
    fn retained_set(&mut self, op: &RetainedSet) -> Applying {
        let Some(message) = &op.message else {
            return Err(invalid("RetainedSet: no message"));
        };
        retained::check(message)?;
        if message.payload.is_empty() {
            self.retained.delete(&message.topic);
            return done();
        }
        let bytes = retained_quota::message_bytes(message);
        if let Err(quota) = self
            .retained
            .fits(&message.topic, bytes, op.max_messages, op.max_bytes)
        {
            return Err(reject(
                RejectReason::QuotaExceeded,
                format!(
                    "RetainedSet: {:?} ({bytes} bytes) over {} (limits: {} messages, {} bytes)",
                    message.topic,
                    quota.label(),
                    op.max_messages,
                    op.max_bytes
                ),
            ));
        }
        self.retained.set(message.clone());
        done()
    }
}
