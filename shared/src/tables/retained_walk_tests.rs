//! Unit tests of the chunked retained walk: walk order, the three budget bounds, resuming
//! from a cursor (also across sets, replacements and deletions between chunks), literal and
//! `+` filters, the `$` rule and expiry within chunks.

use meshmq_proto::tables::{RetainedDelete, op::Kind};

use super::tests::{apply_ok, op, retain};
use super::{ChunkBudget, RetainedCursor, Tables};

fn budget(max_messages: usize) -> ChunkBudget {
    ChunkBudget {
        max_messages,
        ..ChunkBudget::UNBOUNDED
    }
}

/// One chunk: the topics it handed out and the cursor it returned.
fn chunk(
    t: &Tables,
    filter: &str,
    from: Option<&RetainedCursor>,
    b: ChunkBudget,
) -> (Vec<String>, Option<RetainedCursor>) {
    let mut topics = Vec::new();
    let next = t.retained_matching_chunk(filter, 0, from, b, |m| topics.push(m.topic.clone()));
    (topics, next)
}

/// The whole walk in chunks of `b`: the topics of each chunk.
fn chunks(t: &Tables, filter: &str, b: ChunkBudget) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut from = None;
    for _ in 0..10_000 {
        let (topics, next) = chunk(t, filter, from.as_ref(), b);
        out.push(topics);
        match next {
            Some(c) => from = Some(c),
            None => return out,
        }
    }
    panic!("the walk of {filter} did not end: {out:?}");
}

fn store(topics: &[&str]) -> Tables {
    let mut t = Tables::new();
    let ops: Vec<_> = topics
        .iter()
        .map(|topic| retain(topic, b"p", None))
        .collect();
    apply_ok(&mut t, &ops);
    t
}

fn delete(topic: &str) -> meshmq_proto::tables::Op {
    op(Kind::RetainedDelete(RetainedDelete {
        topic: topic.into(),
    }))
}

const TOPICS: [&str; 10] = [
    "b", "a/c", "a", "a/b/c", "a/b", "/a", "a//b", "$SYS/x", "$SYS/x/y", "a-z",
];

#[test]
fn walk_order_is_level_by_level_name_order_a_topic_before_those_below_it() {
    let t = store(&TOPICS);
    let whole = chunks(&t, "#", ChunkBudget::UNBOUNDED);
    assert_eq!(
        whole,
        [["/a", "a", "a//b", "a/b", "a/b/c", "a/c", "a-z", "b"]],
        "one chunk, names compared level by level ('a' < 'a-z' although 'a-z' < 'a/b' as \
         strings), `$` topics left out"
    );
}

#[test]
fn chunks_of_one_message_resume_where_the_last_one_stopped() {
    let t = store(&TOPICS);
    for filter in ["#", "a/#", "+/+", "a/+", "a/b", "$SYS/#", "+/b/#", "a//b"] {
        let mut whole = Vec::new();
        t.retained_matching(filter, 0, |m| whole.push(m.topic.clone()));
        let parts = chunks(&t, filter, budget(1));
        assert!(
            parts.iter().all(|p| p.len() <= 1),
            "{filter}: at most one per chunk: {parts:?}"
        );
        assert_eq!(parts.concat(), whole, "{filter}: same messages, same order");
    }
}

#[test]
fn byte_and_level_budgets_bound_a_chunk() {
    let t = store(&["t/1", "t/2", "t/3", "t/4"]);
    // Each message counts topic + payload = 4 bytes; the one that reaches the bound is in.
    let by_bytes = ChunkBudget {
        max_bytes: 6,
        ..ChunkBudget::UNBOUNDED
    };
    let parts = chunks(&t, "t/+", by_bytes);
    assert_eq!(parts, [vec!["t/1", "t/2"], vec!["t/3", "t/4"], vec![]]);
    // Levels visited: `t` (matches nothing itself) then one per message.
    let by_levels = ChunkBudget {
        max_levels: 2,
        ..ChunkBudget::UNBOUNDED
    };
    let parts = chunks(&t, "t/+", by_levels);
    assert_eq!(parts, [vec!["t/1"], vec!["t/2", "t/3"], vec!["t/4"]]);
}

#[test]
fn levels_that_match_nothing_still_count_so_a_chunk_stays_short() {
    let mut t = Tables::new();
    let mut ops: Vec<_> = (0..50)
        .map(|i| retain(&format!("$x/{i:02}"), b"p", None))
        .collect();
    ops.extend((0..50).map(|i| retain(&format!("e/{i:02}"), b"p", Some(10))));
    ops.push(retain("z", b"p", None));
    apply_ok(&mut t, &ops);
    let b = ChunkBudget {
        max_levels: 8,
        ..ChunkBudget::UNBOUNDED
    };
    let mut from = None;
    let mut seen = Vec::new();
    let mut calls = 0;
    while calls < 1000 {
        let mut topics = Vec::new();
        let next =
            t.retained_matching_chunk("#", 20, from.as_ref(), b, |m| topics.push(m.topic.clone()));
        seen.extend(topics);
        calls += 1;
        match next {
            Some(c) => from = Some(c),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["z"],
        "`$` topics hidden from `#`, expired ones skipped"
    );
    assert!(
        calls >= 7,
        "the 51 visited e-levels took several chunks: {calls}"
    );
}

#[test]
fn changes_between_chunks_after_the_cursor_are_seen_before_it_are_not() {
    let mut t = store(&["m/1", "m/3", "m/5", "m/7"]);
    let (first, cursor) = chunk(&t, "m/+", None, budget(2));
    assert_eq!(first, ["m/1", "m/3"]);
    let cursor = cursor.expect("more to come");
    apply_ok(
        &mut t,
        &[
            retain("m/0", b"new", None),  // before the cursor: missed
            retain("m/1", b"new", None),  // replaced, already seen: not again
            retain("m/4", b"new", None),  // after: seen
            retain("m/5", b"new2", None), // replaced, after: seen once, new value
            delete("m/7"),                // deleted before the walk got there: missed
        ],
    );
    let mut rest = Vec::new();
    let done = t.retained_matching_chunk("m/+", 0, Some(&cursor), budget(10), |m| {
        rest.push((m.topic.clone(), m.payload.to_vec()))
    });
    assert!(done.is_none());
    assert_eq!(
        rest,
        [
            ("m/4".to_owned(), b"new".to_vec()),
            ("m/5".to_owned(), b"new2".to_vec())
        ]
    );
}

#[test]
fn a_cursor_whose_level_was_deleted_resumes_at_the_next_one() {
    let mut t = store(&["d/a/1", "d/a/2", "d/b", "d/c/x/y"]);
    let (first, cursor) = chunk(&t, "d/#", None, budget(1));
    assert_eq!(first, ["d/a/1"]);
    // Delete everything on and around the cursor's path: its level and its parent go.
    apply_ok(&mut t, &[delete("d/a/1"), delete("d/a/2")]);
    let (rest, done) = chunk(&t, "d/#", cursor.as_ref(), budget(10));
    assert_eq!(
        (rest, done),
        (vec!["d/b".to_owned(), "d/c/x/y".to_owned()], None)
    );
}

#[test]
fn a_cursor_on_a_level_with_children_resumes_below_it() {
    let t = store(&["p", "p/q", "p/q/r", "pp"]);
    let (first, cursor) = chunk(&t, "#", None, budget(1));
    assert_eq!(first, ["p"]);
    let (second, cursor) = chunk(&t, "#", cursor.as_ref(), budget(1));
    assert_eq!(second, ["p/q"]);
    let (rest, done) = chunk(&t, "#", cursor.as_ref(), budget(10));
    assert_eq!(
        (rest, done),
        (vec!["p/q/r".to_owned(), "pp".to_owned()], None)
    );
}

#[test]
fn a_cursor_from_another_filter_or_a_garbage_cursor_never_panics() {
    let t = store(&TOPICS);
    let (_, cursor) = chunk(&t, "a/#", None, budget(3));
    let cursor = cursor.expect("more to come");
    // Resuming another filter's walk from it only skips what lies before it.
    let (rest, _) = chunk(&t, "#", Some(&cursor), ChunkBudget::UNBOUNDED);
    assert_eq!(rest, ["a/b/c", "a/c", "a-z", "b"]);
    for filter in ["", "#/a", "a/#/b", "+", "$SYS", "//", "a/b/c/d/e"] {
        let _ = chunks(&t, filter, budget(1));
    }
}

#[test]
fn a_walk_of_one_chunk_per_message_over_many_topics_sees_each_once() {
    let topics: Vec<String> = (0..300).map(|i| format!("n/{}/{}", i % 7, i)).collect();
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let t = store(&refs);
    let mut seen = chunks(&t, "n/#", budget(1)).concat();
    assert_eq!(seen.len(), 300);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 300, "no topic twice");
    assert!(chunks(&t, "n/+/+", budget(7)).iter().all(|c| c.len() <= 7));
}
