//! Tests of [`Tables::projection`]: a node's projection holds its own clients' registry and
//! subscription rows and every other table whole, and the projections of all nodes
//! partition the registry.

use meshmq_proto::tables::Snapshot;
use proptest::prelude::*;

use super::Tables;
use super::node_counts_tests::{NODES, claim_at, disconnect, generation, purge, step, to_op, up};
use super::tests::{apply_ok, retain, route, subscribe};

fn clients(s: &Snapshot) -> Vec<&str> {
    s.registry.iter().map(|e| e.client_id.as_str()).collect()
}

fn sub_clients(s: &Snapshot) -> Vec<(&str, &str)> {
    s.subscriptions
        .iter()
        .map(|e| (e.client_id.as_str(), e.filter.as_str()))
        .collect()
}

/// The snapshot without its registry and subscriptions rows.
fn whole_part(mut s: Snapshot) -> Snapshot {
    s.registry.clear();
    s.subscriptions.clear();
    s
}

#[test]
fn a_projection_holds_its_own_clients_and_every_other_table() {
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[
            up("r1", 1),
            up("r2", 1),
            up("r3", 1),
            claim_at("a", "r1", 1, false, 0),
            subscribe("a", "a/#", 1),
            claim_at("b", "r1", 1, false, 0),
            claim_at("c", "r2", 1, false, 0),
            subscribe("c", "c/+", 0),
            // d's connected session dies with r3: its subscriptions stay, owned by no one.
            claim_at("d", "r3", 1, false, 0),
            subscribe("d", "d", 2),
            purge("r3", 1),
            route("a/#", "r1"),
            retain("t", b"x", None),
        ],
    );
    let gb = generation(&t, "b");
    apply_ok(&mut t, &[disconnect("b", gb, 5)]);
    let full = t.snapshot();
    let p1 = t.projection("r1");
    assert_eq!(clients(&p1), ["a", "b"]);
    assert_eq!(sub_clients(&p1), [("a", "a/#")]);
    let p2 = t.projection("r2");
    assert_eq!(clients(&p2), ["c"]);
    assert_eq!(sub_clients(&p2), [("c", "c/+")]);
    assert!(clients(&t.projection("r3")).is_empty());
    assert_eq!(sub_clients(&full).len(), 3, "d's rows stay on the cores");
    // Every other table whole, node rows with every node's counts.
    assert_eq!(whole_part(p1.clone()), whole_part(full.clone()));
    let counts: Vec<_> = p1
        .nodes
        .iter()
        .map(|n| (n.node.as_str(), n.connected_clients, n.sessions))
        .collect();
    assert_eq!(counts, [("r1", 1, 2), ("r2", 1, 1)]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever the history, each registry row is in exactly the projection of its owner,
    /// each subscription row with a registry row is in the projection of that row's owner,
    /// and the other tables are whole in every projection.
    #[test]
    fn projections_partition_the_registry(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        let mut t = Tables::new();
        for (i, s) in steps.iter().enumerate() {
            let o = to_op(&t, s, i as u64 * 1_000);
            t.apply(i as u64 + 1, &o);
        }
        let full = t.snapshot();
        let mut registry = Vec::new();
        let mut subscriptions = Vec::new();
        for node in NODES.iter().chain(&["x"]) {
            let p = t.projection(node);
            prop_assert_eq!(whole_part(p.clone()), whole_part(full.clone()));
            prop_assert!(p.registry.iter().all(|e| e.row.as_ref().is_some_and(|r| r.node == *node)));
            registry.extend(p.registry);
            subscriptions.extend(p.subscriptions);
        }
        registry.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        prop_assert_eq!(&registry, &full.registry);
        let owned: Vec<_> = full
            .subscriptions
            .iter()
            .filter(|s| t.registry(&s.client_id).is_some())
            .cloned()
            .collect();
        subscriptions.sort_by(|a, b| (&a.client_id, &a.filter).cmp(&(&b.client_id, &b.filter)));
        prop_assert_eq!(subscriptions, owned);
    }
}
