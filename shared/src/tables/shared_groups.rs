//! The `shared` table: (group, filter) → members (client id, node) of an MQTT 5 shared
//! subscription `$share/{group}/{filter}`, in join order.
//!
//! Owns the member lists (join order is part of the state, so that every node picks the
//! same member for the same rule) and a [`Trie`] over the filters to find the groups a
//! topic matches. It must never pick the member that gets a message: that is the
//! publisher's policy, which reads these lists.

use imbl::HashMap;
use meshmq_proto::tables::{Rejected, SharedEntry, SharedMember};

use super::invalid;
use crate::topic::{Trie, validate_topic_filter};

/// Members of one group for one filter: (client id, node) in join order.
type Members = Vec<(String, String)>;

/// The rows: group → filter → members (persistent maps: a snapshot clones them in O(1)).
pub(super) type Rows = HashMap<String, HashMap<String, Members>>;

/// Shared-group rows with their trie.
#[derive(Default)]
pub(super) struct SharedGroups {
    /// Group → filter → members. Neither map nor list is ever left empty.
    groups: Rows,
    /// Filter → groups that have members for it.
    trie: Trie<String>,
    /// Client id → number of (group, filter) entries it is a member of (never 0): whether a
    /// client is a member anywhere, without a scan.
    memberships: HashMap<String, u32>,
}

/// Checks a share name: non-empty, no '/', '+', '#' (MQTT 5.0 4.8.2).
fn check_group(what: &str, group: &str) -> Result<(), Rejected> {
    if group.is_empty() || group.contains(['/', '+', '#', '\0']) {
        return Err(invalid(format!("{what}: invalid share name {group:?}")));
    }
    Ok(())
}

/// Checks the group, filter and ids of a `SharedAdd`.
pub(super) fn check_add(
    group: &str,
    filter: &str,
    client_id: &str,
    node: &str,
) -> Result<(), Rejected> {
    check_group("SharedAdd", group)?;
    validate_topic_filter(filter)
        .map_err(|e| invalid(format!("SharedAdd: filter {filter:?}: {e}")))?;
    if client_id.is_empty() || node.is_empty() {
        return Err(invalid("SharedAdd: empty client or node id"));
    }
    Ok(())
}

impl SharedGroups {
    /// Number of (group, filter) pairs with members.
    pub(super) fn len(&self) -> usize {
        self.trie.len()
    }

    /// Members of (group, filter) in join order; empty if none.
    pub(super) fn members(&self, group: &str, filter: &str) -> &[(String, String)] {
        self.groups
            .get(group)
            .and_then(|filters| filters.get(filter))
            .map_or(&[], Vec::as_slice)
    }

    /// Calls `f(group, filter, members)` for every group whose filter matches `topic`.
    pub(super) fn groups_matching(
        &self,
        topic: &str,
        mut f: impl FnMut(&str, &str, &[(String, String)]),
    ) {
        self.trie
            .for_each_match_with_filter(topic, |filter, group| {
                let members = self.members(group, filter);
                if !members.is_empty() {
                    f(group, filter, members);
                }
            });
    }

    /// Adds a member (already checked with [`check_add`]); a member that is already there
    /// keeps its place and gets the new node.
    pub(super) fn add(&mut self, group: &str, filter: &str, client_id: &str, node: &str) {
        if !self.groups.contains_key(group) {
            self.groups.insert(group.to_owned(), HashMap::new());
        }
        let Some(filters) = self.groups.get_mut(group) else {
            return;
        };
        if !filters.contains_key(filter) {
            filters.insert(filter.to_owned(), Members::new());
        }
        let Some(members) = filters.get_mut(filter) else {
            return;
        };
        match members.iter_mut().find(|(c, _)| c == client_id) {
            Some((_, member_node)) => node.clone_into(member_node),
            None => {
                members.push((client_id.to_owned(), node.to_owned()));
                *self.memberships.entry(client_id.to_owned()).or_insert(0) += 1;
            }
        }
        self.trie.insert(filter, group.to_owned());
    }

    /// Whether `client_id` is a member of any group.
    pub(super) fn is_member(&self, client_id: &str) -> bool {
        self.memberships.contains_key(client_id)
    }

    /// Counts one membership of `client_id` less.
    fn left(memberships: &mut HashMap<String, u32>, client_id: &str) {
        if let Some(n) = memberships.get_mut(client_id) {
            *n -= 1;
            if *n == 0 {
                memberships.remove(client_id);
            }
        }
    }

    /// Removes a member if present.
    pub(super) fn remove(&mut self, group: &str, filter: &str, client_id: &str) {
        self.retain_in(group, filter, |(c, _)| c != client_id);
    }

    /// Keeps the members of (group, filter) for which `keep` holds, dropping emptied
    /// entries from the maps and the trie.
    fn retain_in(
        &mut self,
        group: &str,
        filter: &str,
        mut keep: impl FnMut(&(String, String)) -> bool,
    ) {
        let Some(filters) = self.groups.get_mut(group) else {
            return;
        };
        let Some(members) = filters.get_mut(filter) else {
            return;
        };
        let memberships = &mut self.memberships;
        members.retain(|m| {
            let stays = keep(m);
            if !stays {
                Self::left(memberships, &m.0);
            }
            stays
        });
        if members.is_empty() {
            filters.remove(filter);
            if filters.is_empty() {
                self.groups.remove(group);
            }
            self.trie.remove(filter, &group.to_owned());
        }
    }

    /// Removes every member on `node`. Scans all groups: purges are rare.
    pub(super) fn purge_node(&mut self, node: &str) {
        let pairs: Vec<(String, String)> = self
            .groups
            .iter()
            .flat_map(|(group, filters)| {
                filters
                    .iter()
                    .filter(|(_, members)| members.iter().any(|(_, n)| n == node))
                    .map(move |(filter, _)| (group.clone(), filter.clone()))
            })
            .collect();
        for (group, filter) in pairs {
            self.retain_in(&group, &filter, |(_, n)| n != node);
        }
    }

    /// The rows, for a snapshot taken later ([`snapshot_rows`]); O(1).
    pub(super) fn rows(&self) -> Rows {
        self.groups.clone()
    }

    /// Loads snapshot rows in order (keeping join order), skipping invalid members.
    pub(super) fn restore(&mut self, rows: &[SharedEntry]) {
        for row in rows {
            for m in &row.members {
                if check_add(&row.group, &row.filter, &m.client_id, &m.node).is_ok() {
                    self.add(&row.group, &row.filter, &m.client_id, &m.node);
                }
            }
        }
    }
}

/// All groups sorted by (group, filter), members in join order.
pub(super) fn snapshot_rows(groups: &Rows) -> Vec<SharedEntry> {
    let mut rows: Vec<SharedEntry> = groups
        .iter()
        .flat_map(|(group, filters)| {
            filters.iter().map(move |(filter, members)| SharedEntry {
                group: group.clone(),
                filter: filter.clone(),
                members: members
                    .iter()
                    .map(|(client_id, node)| SharedMember {
                        client_id: client_id.clone(),
                        node: node.clone(),
                    })
                    .collect(),
            })
        })
        .collect();
    rows.sort_unstable_by(|a, b| (&a.group, &a.filter).cmp(&(&b.group, &b.filter)));
    rows
}
