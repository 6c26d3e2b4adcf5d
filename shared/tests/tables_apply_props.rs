//! Property tests of `Tables::apply`: it is deterministic (two fresh tables fed the same
//! random ops give identical results and identical, byte-equal snapshots), total (arbitrary
//! ops, strings and generations never panic), snapshots round-trip, and the retained and
//! route indexes agree with the reference `topic::matches`.
//!
//! Ids, filters and topics mostly come from small alphabets so that ops collide on the same
//! rows (claims bump generations, routes match, purges hit); a share of them are arbitrary.

use meshmq_proto::tables::{
    BannedAdd, BannedDelete, BannedPurge, BannedRow, Batch, NodePurge, NodeStatus, NodeUp, Op,
    OpResult, RegistryClaim, RegistryDisconnect, RegistryRemove, RetainedDelete, RetainedExpire,
    RetainedMessage, RetainedSet, RouteAdd, RouteRemove, SettingDelete, SettingRow, SettingSet,
    SharedAdd, SharedRemove, SubOptions, SubscriptionClear, SubscriptionRemove, SubscriptionSet,
    op::Kind,
};
use meshmq_shared::tables::{ChunkBudget, Tables};
use meshmq_shared::topic::{matches, validate_topic_filter, validate_topic_name};
use proptest::prelude::*;
use prost::Message;

fn pick(names: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        8 => proptest::sample::select(names).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
    .boxed()
}

fn client() -> BoxedStrategy<String> {
    pick(&["c1", "c2", "c3", ""])
}

fn node() -> BoxedStrategy<String> {
    pick(&["n1", "n2", "n3", ""])
}

/// Topics or filters of 1-4 levels over an alphabet with wildcards, `$SYS` and "".
fn path() -> BoxedStrategy<String> {
    let level = proptest::sample::select(&["a", "b", "", "+", "#", "$SYS", "$share"][..]);
    prop_oneof![
        8 => proptest::collection::vec(level, 1..5).prop_map(|levels| levels.join("/")),
        1 => any::<String>(),
    ]
    .boxed()
}

fn small() -> BoxedStrategy<u64> {
    prop_oneof![8 => 0u64..5, 1 => any::<u64>()].boxed()
}

fn small32() -> BoxedStrategy<u32> {
    prop_oneof![8 => 0u32..6, 1 => any::<u32>()].boxed()
}

fn now() -> BoxedStrategy<u64> {
    prop_oneof![8 => 0u64..20_000, 1 => any::<u64>()].boxed()
}

fn options() -> impl Strategy<Value = Option<SubOptions>> {
    proptest::option::of(
        (
            small32(),
            any::<bool>(),
            any::<bool>(),
            small32(),
            proptest::option::of(small32()),
        )
            .prop_map(
                |(qos, no_local, retain_as_published, retain_handling, subscription_id)| {
                    SubOptions {
                        qos,
                        no_local,
                        retain_as_published,
                        retain_handling,
                        subscription_id,
                    }
                },
            ),
    )
}

fn retained_message() -> impl Strategy<Value = RetainedMessage> {
    let payload = prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(any::<u8>(), 1..4)
    ];
    let expires = proptest::option::of(now());
    (path(), payload, small32(), expires, now()).prop_map(
        |(topic, payload, qos, expires_at_ms, published_at_ms)| RetainedMessage {
            topic,
            payload: payload.into(),
            qos,
            expires_at_ms,
            published_at_ms,
            ..Default::default()
        },
    )
}

fn node_ops() -> BoxedStrategy<Kind> {
    prop_oneof![
        (node(), small32(), small()).prop_map(|(node, role, incarnation)| Kind::NodeUp(NodeUp {
            peer_addr: String::new(),
            wire: None,
            addr: format!("{node}:1883"),
            node,
            role: role as i32,
            incarnation,
        })),
        (node(), small32(), small32()).prop_map(|(node, s, expect)| {
            Kind::NodeStatus(NodeStatus {
                node,
                status: s as i32,
                expect: (expect % 4) as i32,
                expect_started_ms: u64::from(expect % 2),
                evacuation: (s == 2).then(|| meshmq_proto::tables::Evacuation {
                    started_ms: u64::from(expect),
                    ..Default::default()
                }),
            })
        }),
        (node(), small())
            .prop_map(|(node, incarnation)| Kind::NodePurge(NodePurge { node, incarnation })),
    ]
    .boxed()
}

fn registry_ops() -> BoxedStrategy<Kind> {
    prop_oneof![
        (
            client(),
            node(),
            small(),
            any::<bool>(),
            small32(),
            3u32..7,
            now(),
            // An expected owner ("" is one of the picks: unconditional) and its disconnected flag.
            (node(), any::<bool>()),
        )
            .prop_map(
                |(
                    client_id,
                    node,
                    incarnation,
                    clean_start,
                    session_expiry_secs,
                    protocol_level,
                    now_ms,
                    (expect_node, expect_disconnected),
                )| {
                    Kind::RegistryClaim(RegistryClaim {
                        client_id,
                        node,
                        incarnation,
                        clean_start,
                        session_expiry_secs,
                        protocol_level,
                        now_ms,
                        expect_node,
                        expect_disconnected,
                    })
                }
            ),
        (client(), small(), small32(), now()).prop_map(
            |(client_id, generation, session_expiry_secs, now_ms)| {
                Kind::RegistryDisconnect(RegistryDisconnect {
                    client_id,
                    generation,
                    session_expiry_secs,
                    now_ms,
                })
            }
        ),
        (client(), small()).prop_map(|(client_id, generation)| Kind::RegistryRemove(
            RegistryRemove {
                client_id,
                generation
            }
        )),
    ]
    .boxed()
}

fn subscription_ops() -> BoxedStrategy<Kind> {
    prop_oneof![
        (client(), path(), options()).prop_map(|(client_id, filter, options)| {
            Kind::SubscriptionSet(SubscriptionSet {
                client_id,
                filter,
                options,
            })
        }),
        (client(), path()).prop_map(|(client_id, filter)| Kind::SubscriptionRemove(
            SubscriptionRemove { client_id, filter }
        )),
        client().prop_map(|client_id| Kind::SubscriptionClear(SubscriptionClear { client_id })),
        (path(), node(), 0u64..4).prop_map(|(filter, node, seq)| Kind::RouteAdd(RouteAdd {
            filter,
            node,
            seq
        })),
        (path(), node(), 0u64..4).prop_map(|(filter, node, seq)| Kind::RouteRemove(RouteRemove {
            filter,
            node,
            seq
        })),
        (pick(&["g", "h", ""]), path(), client(), node()).prop_map(
            |(group, filter, client_id, node)| {
                Kind::SharedAdd(SharedAdd {
                    group,
                    filter,
                    client_id,
                    node,
                })
            }
        ),
        (pick(&["g", "h", ""]), path(), client(), 0u64..4).prop_map(
            |(group, filter, client_id, generation)| {
                Kind::SharedRemove(SharedRemove {
                    group,
                    filter,
                    client_id,
                    generation,
                })
            }
        ),
    ]
    .boxed()
}

fn retained_ops() -> BoxedStrategy<Kind> {
    prop_oneof![
        // Limits small enough to be hit (0: none): quota rejections must be as deterministic
        // as everything else.
        (proptest::option::of(retained_message()), 0..4u64, 0..64u64).prop_map(
            |(message, max_messages, max_bytes)| Kind::RetainedSet(RetainedSet {
                message,
                max_messages,
                max_bytes,
            })
        ),
        path().prop_map(|topic| Kind::RetainedDelete(RetainedDelete { topic })),
        now().prop_map(|now_ms| Kind::RetainedExpire(RetainedExpire { now_ms })),
    ]
    .boxed()
}

fn banned_ops() -> BoxedStrategy<Kind> {
    // Kinds 0..6 (0 and 5 invalid), ids that collide, addresses and networks valid or not,
    // small times so that ends, duplicates and purges meet.
    let who = pick(&[
        "c1",
        "u1",
        "10.0.0.1",
        "::1",
        "10.0.0.0/8",
        "10.0.0.1/8",
        "",
    ]);
    let row =
        (0..6i32, who.clone(), 0..8u64, 0..8u64).prop_map(|(kind, who, at, until)| BannedRow {
            kind,
            who,
            by: "p".into(),
            reason: String::new(),
            at,
            until,
        });
    prop_oneof![
        (proptest::option::of(row), 0..8u64)
            .prop_map(|(row, now_s)| Kind::BannedAdd(BannedAdd { row, now_s })),
        (0..6i32, who, any::<bool>())
            .prop_map(|(kind, who, all)| Kind::BannedDelete(BannedDelete { kind, who, all })),
        (0..8u64).prop_map(|now_s| Kind::BannedPurge(BannedPurge { now_s })),
    ]
    .boxed()
}

fn setting_ops() -> BoxedStrategy<Kind> {
    // Namespaces and keys valid or not, values small, compare-and-set versions that meet.
    let ns = pick(&["a", "b.c", "", "Bad"]);
    let key = pick(&["k1", "k2", "", "ctl\u{1}"]);
    let expect = proptest::option::of(0..3u64);
    let row = (
        ns.clone(),
        key.clone(),
        proptest::collection::vec(any::<u8>(), 0..8),
        any::<u64>(),
    )
        .prop_map(|(ns, key, value, version)| SettingRow {
            ns,
            key,
            value: value.into(),
            version,
        });
    prop_oneof![
        (proptest::option::of(row), expect.clone()).prop_map(|(row, expect_version)| {
            Kind::SettingSet(SettingSet {
                row,
                expect_version,
            })
        }),
        (ns, key, expect).prop_map(|(ns, key, expect_version)| {
            Kind::SettingDelete(SettingDelete {
                ns,
                key,
                expect_version,
            })
        }),
    ]
    .boxed()
}

fn any_op() -> impl Strategy<Value = Op> {
    proptest::option::of(prop_oneof![
        node_ops(),
        registry_ops(),
        subscription_ops(),
        retained_ops(),
        banned_ops(),
        setting_ops()
    ])
    .prop_map(|kind| Op { kind })
}

/// Log entries: batches of 1-4 ops.
fn log() -> impl Strategy<Value = Vec<Batch>> {
    proptest::collection::vec(
        proptest::collection::vec(any_op(), 1..5).prop_map(|ops| Batch { ops }),
        0..40,
    )
}

fn run(log: &[Batch]) -> (Tables, Vec<Vec<OpResult>>) {
    let mut tables = Tables::new();
    let results = log
        .iter()
        .enumerate()
        .map(|(i, batch)| tables.apply_batch(i as u64 + 1, batch))
        .collect();
    (tables, results)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn same_ops_give_same_state_and_results(log in log()) {
        let (a, results_a) = run(&log);
        let (b, results_b) = run(&log);
        prop_assert_eq!(results_a, results_b);
        let (snap_a, snap_b) = (a.snapshot(), b.snapshot());
        prop_assert_eq!(snap_a.encode_to_vec(), snap_b.encode_to_vec());
        prop_assert_eq!(&snap_a, &snap_b);
    }

    #[test]
    fn snapshot_round_trips_and_replay_continues_identically(log in log(), tail in log()) {
        let (mut live, _) = run(&log);
        let mut restored = Tables::from_snapshot(&live.snapshot());
        prop_assert_eq!(restored.snapshot(), live.snapshot());
        let base = live.applied_index();
        for (i, batch) in tail.iter().enumerate() {
            let index = base + i as u64 + 1;
            prop_assert_eq!(live.apply_batch(index, batch), restored.apply_batch(index, batch));
        }
        prop_assert_eq!(restored.snapshot(), live.snapshot());
    }

    #[test]
    fn reads_agree_with_the_reference_matcher(log in log(), filter in path(), topic in path(), now_ms in now()) {
        let (t, _) = run(&log);
        let snapshot = t.snapshot();
        let mut found = Vec::new();
        t.retained_matching(&filter, now_ms, |m| found.push(m.topic.clone()));
        found.sort();
        if validate_topic_filter(&filter).is_ok() {
            let expected: Vec<String> = snapshot
                .retained
                .iter()
                .filter(|m| matches(&filter, &m.topic) && m.expires_at_ms.is_none_or(|at| at > now_ms))
                .map(|m| m.topic.clone())
                .collect();
            prop_assert_eq!(found, expected);
        }
        let mut nodes = Vec::new();
        t.route_nodes_matching(&topic, |n| nodes.push(n.to_owned()));
        nodes.sort();
        if validate_topic_name(&topic).is_ok() {
            let mut expected: Vec<String> = snapshot
                .routes
                .iter()
                .filter(|r| matches(&r.filter, &topic))
                .map(|r| r.node.clone())
                .collect();
            expected.sort();
            expected.dedup();
            prop_assert_eq!(nodes, expected);
        }
        t.shared_groups_matching(&topic, |_, _, members| assert!(!members.is_empty()));
        let _ = (t.registry(&topic), t.retained(&topic), t.shared_members(&filter, &topic));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The chunked retained walk (what a subscriber's replay uses): without changes its
    /// chunks add up to the whole walk, in order; with random sets, deletes and expiries
    /// between chunks, no topic is seen twice and every message left alone is seen once.
    #[test]
    fn chunked_retained_walk_keeps_its_promise(
        log in log(),
        store in proptest::collection::vec((retained_topic(), proptest::option::of(now())), 0..40),
        filter in path(),
        now_ms in now(),
        max_messages in 1usize..4,
        max_levels in 1usize..6,
        changes in proptest::collection::vec(proptest::collection::vec(retained_ops(), 0..3), 0..30),
    ) {
        let (mut t, _) = run(&log);
        for (topic, expires_at_ms) in store {
            let message = RetainedMessage { topic, payload: b"p".to_vec().into(), expires_at_ms, ..Default::default() };
            let index = t.applied_index() + 1;
            t.apply(index, &Op { kind: Some(Kind::RetainedSet(RetainedSet { message: Some(message), ..Default::default() })) });
        }
        let budget = ChunkBudget { max_messages, max_bytes: usize::MAX, max_levels };
        let mut whole = Vec::new();
        t.retained_matching(&filter, now_ms, |m| whole.push(m.topic.clone()));
        let unchanged = chunked_walk(&mut t, &filter, now_ms, budget, &[]);
        prop_assert_eq!(&unchanged, &whole);

        let mut touched: Vec<String> = Vec::new();
        let mut expiry_ran = false;
        for kind in changes.iter().flatten() {
            match kind {
                Kind::RetainedSet(RetainedSet { message: Some(m), .. }) => touched.push(m.topic.clone()),
                Kind::RetainedDelete(d) => touched.push(d.topic.clone()),
                Kind::RetainedExpire(_) => expiry_ran = true,
                _ => {}
            }
        }
        let may_expire: Vec<String> = whole
            .iter()
            .filter(|topic| t.retained(topic).is_some_and(|m| m.expires_at_ms.is_some()))
            .cloned()
            .collect();
        let seen = chunked_walk(&mut t, &filter, now_ms, budget, &changes);
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(sorted.len(), seen.len(), "a topic seen twice: {:?}", seen);
        for topic in &whole {
            if touched.contains(topic) || (expiry_ran && may_expire.contains(topic)) {
                continue;
            }
            prop_assert!(seen.contains(topic), "untouched {} missed: {:?}", topic, seen);
        }
        if validate_topic_filter(&filter).is_ok() {
            prop_assert!(seen.iter().all(|topic| matches(&filter, topic)));
        }
    }
}

/// Valid topic names of 1-4 levels over a small alphabet: many share prefixes, so a walk
/// stops on levels with children and resumes below them.
fn retained_topic() -> impl Strategy<Value = String> {
    let level = proptest::sample::select(&["a", "b", "", "$SYS"][..]);
    proptest::collection::vec(level, 1..5).prop_map(|levels| levels.join("/"))
}

/// Walks `filter` in chunks of `budget`, applying `changes[i]` after chunk `i`; returns the
/// topics seen in order.
fn chunked_walk(
    t: &mut Tables,
    filter: &str,
    now_ms: u64,
    budget: ChunkBudget,
    changes: &[Vec<Kind>],
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut from = None;
    for i in 0..100_000 {
        let next = t.retained_matching_chunk(filter, now_ms, from.as_ref(), budget, |m| {
            seen.push(m.topic.clone())
        });
        for kind in changes.get(i).into_iter().flatten() {
            let index = t.applied_index() + 1;
            t.apply(
                index,
                &Op {
                    kind: Some(kind.clone()),
                },
            );
        }
        match next {
            Some(cursor) => from = Some(cursor),
            None => return seen,
        }
    }
    panic!("the walk did not end");
}

/// Guards against vacuous properties: the generator must reach the interesting states
/// (applied ops, routes, retained messages, re-claims, stale generations, purges).
#[test]
fn generator_reaches_interesting_states() {
    use meshmq_proto::tables::{RejectReason, op_result::Outcome};
    use meshmq_shared::tables::rejection;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let (mut applied, mut routes, mut retained, mut reclaims, mut stale) = (0, 0, 0, 0, 0);
    for _ in 0..200 {
        let Ok(tree) = log().new_tree(&mut runner) else {
            continue;
        };
        let (t, results) = run(&tree.current());
        routes += t.route_count();
        retained += t.retained_count();
        for r in results.iter().flatten() {
            match (&r.outcome, rejection(r)) {
                (Some(Outcome::Claimed(c)), _) if c.generation > 1 => reclaims += 1,
                (_, Some((RejectReason::StaleGeneration, _))) => stale += 1,
                (_, None) => applied += 1,
                _ => {}
            }
        }
    }
    let counts = [applied, routes, retained, reclaims, stale];
    assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
}
