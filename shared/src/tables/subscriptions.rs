//! The `subscriptions` table: client id → (filter → options) of sessions that outlive
//! their connection, so that a session resumes with its subscriptions on any node.
//!
//! Owns the rows and the validation of a stored subscription (filter syntax, option
//! ranges). It must never route messages: the `routes` and `shared` tables do that, and the
//! broker keeps them in step with this one.

use imbl::{HashMap, OrdMap};
use meshmq_proto::tables::{Rejected, SubOptions, SubscriptionEntry};

use super::invalid;
use crate::topic::parse_subscription;

/// Largest MQTT 5 subscription identifier (a variable byte integer).
const MAX_SUBSCRIPTION_ID: u32 = 268_435_455;

/// Subscriptions by client id (persistent maps: a snapshot clones them in O(1)).
#[derive(Default, Clone)]
pub(super) struct Subscriptions {
    /// Client id → filter → options; an ordered map per client so reads are in a stable
    /// order. A client never maps to an empty map.
    by_client: HashMap<String, OrdMap<String, SubOptions>>,
}

/// Checks a filter and options as `SubscriptionSet` requires.
pub(super) fn check(filter: &str, options: &SubOptions) -> Result<(), Rejected> {
    parse_subscription(filter)
        .map_err(|e| invalid(format!("SubscriptionSet: filter {filter:?}: {e}")))?;
    if options.qos > 2 {
        return Err(invalid(format!("SubscriptionSet: qos {}", options.qos)));
    }
    if options.retain_handling > 2 {
        return Err(invalid(format!(
            "SubscriptionSet: retain handling {}",
            options.retain_handling
        )));
    }
    if let Some(id) = options.subscription_id
        && !(1..=MAX_SUBSCRIPTION_ID).contains(&id)
    {
        return Err(invalid(format!("SubscriptionSet: subscription id {id}")));
    }
    Ok(())
}

impl Subscriptions {
    /// The subscriptions of `client_id`, sorted by filter.
    pub(super) fn of(&self, client_id: &str) -> impl Iterator<Item = (&str, &SubOptions)> {
        self.by_client
            .get(client_id)
            .into_iter()
            .flat_map(|m| m.iter().map(|(f, o)| (f.as_str(), o)))
    }

    /// Whether `client_id` has at least one subscription.
    pub(super) fn has_any(&self, client_id: &str) -> bool {
        self.by_client.contains_key(client_id)
    }

    /// Number of clients with subscriptions.
    pub(super) fn len(&self) -> usize {
        self.by_client.len()
    }

    /// Adds or replaces (client, filter) — already checked with [`check`].
    pub(super) fn set(&mut self, client_id: &str, filter: &str, options: SubOptions) {
        match self.by_client.get_mut(client_id) {
            Some(filters) => {
                filters.insert(filter.to_owned(), options);
            }
            None => {
                let filters = OrdMap::unit(filter.to_owned(), options);
                self.by_client.insert(client_id.to_owned(), filters);
            }
        }
    }

    /// Removes (client, filter) if present.
    pub(super) fn remove(&mut self, client_id: &str, filter: &str) {
        if let Some(filters) = self.by_client.get_mut(client_id) {
            filters.remove(filter);
            if filters.is_empty() {
                self.by_client.remove(client_id);
            }
        }
    }

    /// Removes every subscription of `client_id`.
    pub(super) fn clear(&mut self, client_id: &str) {
        self.by_client.remove(client_id);
    }

    /// Keeps the clients for which `keep(client_id)` holds, with all their rows.
    pub(super) fn retain_clients(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.by_client.retain(|client_id, _| keep(client_id));
    }

    /// All rows sorted by (client id, filter).
    pub(super) fn snapshot_rows(&self) -> Vec<SubscriptionEntry> {
        let mut clients: Vec<&String> = self.by_client.keys().collect();
        clients.sort_unstable();
        let mut rows = Vec::new();
        for client_id in clients {
            for (filter, options) in self.of(client_id) {
                rows.push(SubscriptionEntry {
                    client_id: client_id.clone(),
                    filter: filter.to_owned(),
                    options: Some(*options),
                });
            }
        }
        rows
    }

    /// Loads snapshot rows, skipping those that `SubscriptionSet` would reject.
    pub(super) fn restore(&mut self, rows: &[SubscriptionEntry]) {
        for row in rows {
            let options = row.options.unwrap_or_default();
            if !row.client_id.is_empty() && check(&row.filter, &options).is_ok() {
                self.set(&row.client_id, &row.filter, options);
            }
        }
    }
}
