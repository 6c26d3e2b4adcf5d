//! Tests of the projected replica (`projected.rs`) against the definition of a projection
//! (`projection.rs`): whatever the history, a replica that applies each entry with the
//! core's notes equals the projection of the core's tables for its node after every entry,
//! whether it started empty or from a projected snapshot; and noting an entry changes
//! nothing the core computes.

use meshmq_proto::tables::{
    Batch, EntryNotes, Op, SettingDelete, SettingRow, SettingSet, SharedRemove, Snapshot,
    SubscriptionClear, SubscriptionRemove, op::Kind,
};
use proptest::prelude::*;
use prost::Message;

use super::node_counts_tests::{NODES, Step, generation, step, to_op};
use super::tests::{apply_ok, claim, node_up, op, shared_add, subscribe};
use super::{NotesError, Tables};

const CLIENTS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
const GROUPS: [&str; 2] = ["g1", "g2"];

/// One op of a generated entry: a registry, subscription or node step, or a shared-group
/// or subscription change.
#[derive(Debug, Clone)]
enum PStep {
    Core(Step),
    Join {
        client: usize,
        group: usize,
    },
    /// `stale`: name the generation before the row's (rejected when the row is newer).
    Leave {
        client: usize,
        group: usize,
        stale: bool,
    },
    Unsubscribe {
        client: usize,
    },
    Clear {
        client: usize,
    },
    Subscribe {
        client: usize,
        filter: usize,
    },
    /// An adoption: a claim by `node` on condition that `from` holds the session offline.
    Adopt {
        client: usize,
        from: usize,
        node: usize,
    },
    /// A write of the `settings` table (kept whole on every replica); `expect`: a
    /// compare-and-set version (often wrong: rejected).
    Setting {
        key: usize,
        expect: Option<u64>,
        delete: bool,
    },
}

fn pstep() -> impl Strategy<Value = PStep> {
    let client = 0..CLIENTS.len();
    let group = 0..GROUPS.len();
    let join =
        (client.clone(), group.clone()).prop_map(|(client, group)| PStep::Join { client, group });
    let leave =
        (client.clone(), group, any::<bool>()).prop_map(|(client, group, stale)| PStep::Leave {
            client,
            group,
            stale,
        });
    let unsubscribe = client
        .clone()
        .prop_map(|client| PStep::Unsubscribe { client });
    let clear = client.clone().prop_map(|client| PStep::Clear { client });
    let subscribe = (client.clone(), 0..2usize)
        .prop_map(|(client, filter)| PStep::Subscribe { client, filter });
    let adopt = (client, 0..NODES.len(), 0..NODES.len())
        .prop_map(|(client, from, node)| PStep::Adopt { client, from, node });
    let setting = (0..3usize, proptest::option::of(0..3u64), any::<bool>()).prop_map(
        |(key, expect, delete)| PStep::Setting {
            key,
            expect,
            delete,
        },
    );
    prop_oneof![
        4 => step().prop_map(PStep::Core),
        1 => join,
        1 => leave,
        1 => unsubscribe,
        1 => clear,
        1 => subscribe,
        1 => adopt,
        1 => setting,
    ]
}

/// The op of `s`, named from the state `t` before its entry; a member joins on the node
/// that owns its client (or r1).
fn to_pop(t: &Tables, s: &PStep, now_ms: u64) -> Op {
    match s {
        PStep::Core(s) => to_op(t, s, now_ms),
        PStep::Join { client, group } => {
            let c = CLIENTS[*client];
            let node = t.registry(c).map_or("r1".to_owned(), |r| r.node.clone());
            shared_add(GROUPS[*group], "s/#", c, &node)
        }
        PStep::Leave {
            client,
            group,
            stale,
        } => {
            let c = CLIENTS[*client];
            op(Kind::SharedRemove(SharedRemove {
                group: GROUPS[*group].into(),
                filter: "s/#".into(),
                client_id: c.into(),
                generation: generation(t, c).saturating_sub(u64::from(*stale)),
            }))
        }
        PStep::Unsubscribe { client } => op(Kind::SubscriptionRemove(SubscriptionRemove {
            client_id: CLIENTS[*client].into(),
            filter: "t/#".into(),
        })),
        PStep::Clear { client } => op(Kind::SubscriptionClear(SubscriptionClear {
            client_id: CLIENTS[*client].into(),
        })),
        PStep::Subscribe { client, filter } => {
            subscribe(CLIENTS[*client], ["t/#", "u/+"][*filter], 1)
        }
        PStep::Adopt { client, from, node } => {
            let mut o = claim(CLIENTS[*client], NODES[*node], false, 60, now_ms);
            if let Some(Kind::RegistryClaim(c)) = &mut o.kind {
                c.expect_node = NODES[*from].into();
                c.expect_disconnected = true;
            }
            o
        }
        PStep::Setting {
            key,
            expect,
            delete,
        } => {
            let (ns, key) = ("test", ["a", "b", "c"][*key].to_owned());
            if *delete {
                op(Kind::SettingDelete(SettingDelete {
                    ns: ns.into(),
                    key,
                    expect_version: *expect,
                }))
            } else {
                let value = now_ms.to_be_bytes().to_vec().into();
                op(Kind::SettingSet(SettingSet {
                    row: Some(SettingRow {
                        ns: ns.into(),
                        key,
                        value,
                        version: 0,
                    }),
                    expect_version: *expect,
                }))
            }
        }
    }
}

/// What a core sends a follower `node`: the subscriptions of its own claims only.
fn for_node(notes: &EntryNotes, node: &str) -> EntryNotes {
    let mut notes = notes.clone();
    notes.subscriptions.retain(|s| s.node == node);
    notes
}

#[test]
fn a_member_of_another_node_and_own_clients_are_held_the_rest_is_not() {
    let mut core = Tables::new();
    let mut r1 = Tables::new_projected("r1");
    let entries = [
        vec![node_up("r1", 1), node_up("r2", 1)],
        vec![claim("a", "r1", false, 60, 0), subscribe("a", "a/#", 1)],
        vec![claim("b", "r2", false, 60, 0), subscribe("b", "b/#", 1)],
        vec![shared_add("g", "s/#", "b", "r2")],
        vec![claim("c", "r2", false, 60, 0)],
        // a moves to r2: its rows leave r1.
        vec![claim("a", "r2", false, 60, 10)],
        // c comes to r1 with its session: its subscriptions come with the notes.
        vec![subscribe("c", "c/+", 0), claim("c", "r1", false, 60, 20)],
    ];
    for (i, ops) in entries.iter().enumerate() {
        let batch = Batch { ops: ops.clone() };
        let (_, notes) = core.apply_batch_noted(i as u64 + 1, &batch);
        r1.apply_projected(i as u64 + 1, &batch, &for_node(&notes, "r1"))
            .expect("notes fit");
        assert_eq!(
            r1.snapshot(),
            core.projection("r1"),
            "after entry {}",
            i + 1
        );
    }
    let held: Vec<_> = r1
        .snapshot()
        .registry
        .into_iter()
        .map(|e| e.client_id)
        .collect();
    assert_eq!(held, ["b", "c"], "b as a shared member, c as its own");
    assert_eq!(r1.subscriptions("c").count(), 1);
    assert_eq!(r1.registry_count(), 2);
    assert_eq!(core.registry_count(), 3);
    let r2 = r1.node("r2").expect("r2 row");
    assert_eq!(
        (r2.connected_clients, r2.sessions),
        (2, 2),
        "the cores' counts"
    );
}

#[test]
fn notes_that_do_not_fit_change_nothing() {
    let mut core = Tables::new();
    let mut replica = Tables::new_projected("r1");
    let batch = Batch {
        ops: vec![node_up("r1", 1), claim("a", "r1", false, 60, 0)],
    };
    let (_, notes) = core.apply_batch_noted(1, &batch);
    let mut short = notes.clone();
    short.results.pop();
    assert_eq!(
        replica.apply_projected(1, &batch, &short),
        Err(NotesError::Count { results: 1, ops: 2 })
    );
    let mut swapped = notes.clone();
    swapped.results.swap(0, 1);
    assert_eq!(
        replica.apply_projected(1, &batch, &swapped),
        Err(NotesError::Claim(1))
    );
    assert_eq!(replica, Tables::new_projected("r1"));
    replica.apply_projected(1, &batch, &notes).expect("fits");
    assert_eq!(replica.snapshot(), core.projection("r1"));
}

#[test]
fn a_whole_snapshot_installed_as_a_projection_is_cut_to_it() {
    let mut core = Tables::new();
    apply_ok(
        &mut core,
        &[
            node_up("r1", 1),
            node_up("r2", 1),
            claim("a", "r1", false, 60, 0),
            claim("b", "r2", false, 60, 0),
            subscribe("b", "b/#", 1),
        ],
    );
    let replica = Tables::from_projection(&core.snapshot(), "r1");
    assert_eq!(replica.snapshot(), core.projection("r1"));
    assert_eq!(replica.registry_count(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// Whatever the history (rejected ops, takeovers, purges, restarts, shared groups), each
    /// node's projected replica equals the core's projection for it after every entry, and
    /// returns the core's results; a replica that starts from a projected snapshot midway
    /// does too; noting changes nothing on the core.
    #[test]
    fn projected_replicas_equal_the_projection_after_every_entry(
        entries in proptest::collection::vec(proptest::collection::vec(pstep(), 1..4), 1..40),
        join_at in 0..40usize,
    ) {
        let mut core = Tables::new();
        let mut plain = Tables::new();
        let mut replicas: Vec<(&str, Tables)> =
            NODES.iter().map(|n| (*n, Tables::new_projected(n))).collect();
        let mut late: Option<Tables> = None;
        for (i, steps) in entries.iter().enumerate() {
            let index = i as u64 + 1;
            // 5 s per entry: 60 s sessions expire within a history.
            let ops = steps.iter().map(|s| to_pop(&core, s, index * 5_000)).collect();
            let batch = Batch { ops };
            let (results, notes) = core.apply_batch_noted(index, &batch);
            // As the follow stream carries them.
            let notes = EntryNotes::decode(notes.encode_to_vec().as_slice()).expect("decodes");
            prop_assert_eq!(&results, &plain.apply_batch(index, &batch));
            prop_assert_eq!(&core, &plain);
            for (node, replica) in &mut replicas {
                let got = replica.apply_projected(index, &batch, &for_node(&notes, node));
                prop_assert_eq!(got.as_ref().map(Vec::len), Ok(results.len()));
                prop_assert_eq!(replica.snapshot(), core.projection(node), "{} after {}", node, index);
            }
            if let Some(replica) = &mut late {
                replica.apply_projected(index, &batch, &for_node(&notes, "r2")).expect("fits");
                prop_assert_eq!(replica.snapshot(), core.projection("r2"));
            }
            if i == join_at {
                // A projected snapshot as a core cuts and sends it.
                let mut source = core.snapshot_source();
                source.project("r2");
                let sent = Snapshot::decode(source.encode().as_slice()).expect("decodes");
                late = Some(Tables::from_projection(&sent, "r2"));
            }
        }
    }
}

#[test]
fn a_replica_of_every_row_is_unchanged() {
    let mut t = Tables::new();
    apply_ok(&mut t, &[node_up("r1", 1), claim("a", "r1", false, 60, 0)]);
    assert_eq!(t.projected_for(), None);
    assert_eq!(Tables::new_projected("r1").projected_for(), Some("r1"));
}
