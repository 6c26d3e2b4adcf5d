//! Tests of the per-node registry counts (`NodeRow::connected_clients` and `sessions`,
//! [`Tables::held_by`]): after every op they equal a scan of the registry, and a restored
//! snapshot recomputes them.

use meshmq_proto::tables::{
    NodePurge, NodeRole, NodeUp, Op, RegistryClaim, RegistryDisconnect, RegistryRemove, SubOptions,
    SubscriptionSet, op::Kind,
};
use proptest::prelude::*;

use super::tests::{apply_ok, op};
use super::{Held, Tables};

pub(super) const NODES: [&str; 3] = ["r1", "r2", "r3"];
const CLIENTS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

pub(super) fn up(node: &str, incarnation: u64) -> Op {
    op(Kind::NodeUp(NodeUp {
        node: node.into(),
        addr: format!("{node}:1883"),
        role: NodeRole::Replicant as i32,
        incarnation,
        peer_addr: String::new(),
        wire: None,
    }))
}

pub(super) fn claim_at(client: &str, node: &str, incarnation: u64, clean: bool, now_ms: u64) -> Op {
    op(Kind::RegistryClaim(RegistryClaim {
        client_id: client.into(),
        node: node.into(),
        incarnation,
        clean_start: clean,
        session_expiry_secs: 60,
        protocol_level: 5,
        now_ms,
        ..Default::default()
    }))
}

pub(super) fn disconnect(client: &str, generation: u64, now_ms: u64) -> Op {
    op(Kind::RegistryDisconnect(RegistryDisconnect {
        client_id: client.into(),
        generation,
        session_expiry_secs: 60,
        now_ms,
    }))
}

fn remove(client: &str, generation: u64) -> Op {
    op(Kind::RegistryRemove(RegistryRemove {
        client_id: client.into(),
        generation,
    }))
}

pub(super) fn purge(node: &str, incarnation: u64) -> Op {
    op(Kind::NodePurge(NodePurge {
        node: node.into(),
        incarnation,
    }))
}

pub(super) fn generation(t: &Tables, client: &str) -> u64 {
    t.registry(client).map_or(0, |r| r.generation)
}

/// (connected clients, sessions) of `node`'s row.
fn row_counts(t: &Tables, node: &str) -> Option<(u64, u64)> {
    t.node(node).map(|r| (r.connected_clients, r.sessions))
}

/// Every node row's counts and every owner's [`Tables::held_by`] equal a scan of the
/// registry; a snapshot round trip keeps them.
fn assert_counts_match_scan(t: &Tables) {
    let scan = t.registry.scan_held();
    for row in t.nodes() {
        let want = scan.get(&row.node).copied().unwrap_or_default();
        assert_eq!(
            (row.connected_clients, row.sessions),
            (want.connected, want.sessions),
            "row of {}",
            row.node
        );
    }
    for node in NODES.iter().chain(&["x"]) {
        let want = scan.get(*node).copied().unwrap_or_default();
        assert_eq!(t.held_by(node), want, "held_by({node})");
    }
    assert_eq!(&Tables::from_snapshot(&t.snapshot()), t);
}

#[test]
fn claims_takeovers_disconnects_removes_and_purges_move_the_counts() {
    let mut t = Tables::new();
    apply_ok(&mut t, &[up("r1", 1), up("r2", 1)]);
    assert_eq!(row_counts(&t, "r1"), Some((0, 0)));
    apply_ok(
        &mut t,
        &[
            claim_at("a", "r1", 1, false, 0),
            claim_at("b", "r1", 1, false, 0),
            claim_at("c", "r2", 1, false, 0),
        ],
    );
    assert_eq!(row_counts(&t, "r1"), Some((2, 2)));
    assert_eq!(row_counts(&t, "r2"), Some((1, 1)));
    // Takeover: b moves to r2.
    apply_ok(&mut t, &[claim_at("b", "r2", 1, false, 10)]);
    assert_eq!(row_counts(&t, "r1"), Some((1, 1)));
    assert_eq!(row_counts(&t, "r2"), Some((2, 2)));
    // Disconnect keeps the session; a second disconnect of the same generation changes
    // nothing more.
    let ga = generation(&t, "a");
    apply_ok(&mut t, &[disconnect("a", ga, 20), disconnect("a", ga, 21)]);
    assert_eq!(row_counts(&t, "r1"), Some((0, 1)));
    // Session expiry ends with its remove.
    apply_ok(&mut t, &[remove("a", ga)]);
    assert_eq!(row_counts(&t, "r1"), Some((0, 0)));
    // A disconnected session taken over by a claim on another node.
    let gc = generation(&t, "c");
    apply_ok(&mut t, &[disconnect("c", gc, 30)]);
    assert_eq!(row_counts(&t, "r2"), Some((1, 2)));
    apply_ok(&mut t, &[claim_at("c", "r1", 1, false, 40)]);
    assert_eq!(row_counts(&t, "r1"), Some((1, 1)));
    assert_eq!(row_counts(&t, "r2"), Some((1, 1)));
    assert_counts_match_scan(&t);
}

#[test]
fn purges_and_restarts_keep_only_the_disconnected_sessions() {
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[
            up("r1", 1),
            claim_at("a", "r1", 1, false, 0),
            claim_at("b", "r1", 1, false, 0),
            claim_at("c", "r1", 1, false, 0),
        ],
    );
    let gb = generation(&t, "b");
    apply_ok(&mut t, &[disconnect("b", gb, 5)]);
    assert_eq!(row_counts(&t, "r1"), Some((2, 3)));
    // A restart drops the connected rows of the old incarnation.
    apply_ok(&mut t, &[up("r1", 2), claim_at("d", "r1", 2, false, 10)]);
    assert_eq!(row_counts(&t, "r1"), Some((1, 2)));
    // A purge drops the row; the disconnected session stays in the registry, counted for
    // the owner without a row, and the row counts it again when the node comes back.
    apply_ok(&mut t, &[purge("r1", 2)]);
    assert_eq!(row_counts(&t, "r1"), None);
    assert_eq!(
        t.held_by("r1"),
        Held {
            connected: 0,
            sessions: 1
        }
    );
    apply_ok(&mut t, &[up("r1", 3)]);
    assert_eq!(row_counts(&t, "r1"), Some((0, 1)));
    // A claim of a node without a row is counted for it too.
    apply_ok(&mut t, &[claim_at("e", "x", 1, false, 20)]);
    assert_eq!(t.held_by("x").connected, 1);
    apply_ok(&mut t, &[up("x", 1)]);
    assert_eq!(row_counts(&t, "x"), Some((1, 1)));
    assert_counts_match_scan(&t);
}

#[test]
fn restore_recomputes_counts_instead_of_trusting_the_snapshot() {
    let mut t = Tables::new();
    apply_ok(
        &mut t,
        &[up("r1", 1), up("r2", 1), claim_at("a", "r1", 1, false, 0)],
    );
    let mut snap = t.snapshot();
    assert_eq!(
        snap.nodes
            .iter()
            .map(|n| (n.connected_clients, n.sessions))
            .collect::<Vec<_>>(),
        vec![(1, 1), (0, 0)],
        "the snapshot carries the counts"
    );
    for row in &mut snap.nodes {
        row.connected_clients = 1_000;
        row.sessions = 7;
    }
    let restored = Tables::from_snapshot(&snap);
    assert_eq!(row_counts(&restored, "r1"), Some((1, 1)));
    assert_eq!(row_counts(&restored, "r2"), Some((0, 0)));
    assert_eq!(restored, t);
}

/// One step of a random history; client and node names are indexes into the lists above.
#[derive(Debug, Clone)]
pub(super) enum Step {
    Up {
        node: usize,
        incarnation: u64,
    },
    Purge {
        node: usize,
        incarnation: u64,
    },
    Claim {
        client: usize,
        node: usize,
        incarnation: u64,
        clean: bool,
    },
    /// `stale`: name an older generation than the row's (rejected).
    Disconnect {
        client: usize,
        stale: bool,
    },
    Remove {
        client: usize,
        stale: bool,
    },
    Subscribe {
        client: usize,
    },
}

pub(super) fn step() -> impl Strategy<Value = Step> {
    let node = 0..NODES.len();
    let client = 0..CLIENTS.len();
    prop_oneof![
        (node.clone(), 1..4u64).prop_map(|(node, incarnation)| Step::Up { node, incarnation }),
        (node.clone(), 1..4u64).prop_map(|(node, incarnation)| Step::Purge { node, incarnation }),
        (client.clone(), node, 1..4u64, any::<bool>()).prop_map(
            |(client, node, incarnation, clean)| Step::Claim {
                client,
                node,
                incarnation,
                clean
            }
        ),
        (client.clone(), any::<bool>())
            .prop_map(|(client, stale)| Step::Disconnect { client, stale }),
        (client.clone(), any::<bool>()).prop_map(|(client, stale)| Step::Remove { client, stale }),
        client.prop_map(|client| Step::Subscribe { client }),
    ]
}

pub(super) fn to_op(t: &Tables, step: &Step, now_ms: u64) -> Op {
    let gen_of = |client: usize, stale: bool| {
        generation(t, CLIENTS[client]).saturating_sub(u64::from(stale))
    };
    match *step {
        Step::Up { node, incarnation } => up(NODES[node], incarnation),
        Step::Purge { node, incarnation } => purge(NODES[node], incarnation),
        Step::Claim {
            client,
            node,
            incarnation,
            clean,
        } => claim_at(CLIENTS[client], NODES[node], incarnation, clean, now_ms),
        Step::Disconnect { client, stale } => {
            disconnect(CLIENTS[client], gen_of(client, stale), now_ms)
        }
        Step::Remove { client, stale } => remove(CLIENTS[client], gen_of(client, stale)),
        Step::Subscribe { client } => op(Kind::SubscriptionSet(SubscriptionSet {
            client_id: CLIENTS[client].into(),
            filter: "t/#".into(),
            options: Some(SubOptions::default()),
        })),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the history (rejected ops included), the counts equal a scan after every op,
    /// and survive a snapshot round trip.
    #[test]
    fn random_histories_keep_counts_equal_to_a_scan(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        let mut t = Tables::new();
        for (i, s) in steps.iter().enumerate() {
            let o = to_op(&t, s, i as u64 * 1_000);
            t.apply(i as u64 + 1, &o);
            assert_counts_match_scan(&t);
        }
    }
}
