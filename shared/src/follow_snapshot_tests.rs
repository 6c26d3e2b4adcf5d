use super::*;
use meshmq_proto::tables::{NodeRow, RetainedMessage, SettingRow};

fn retained(topic: &str, size: usize) -> RetainedMessage {
    RetainedMessage {
        topic: topic.into(),
        payload: vec![b'x'; size].into(),
        ..RetainedMessage::default()
    }
}

fn sample() -> Snapshot {
    Snapshot {
        applied_index: 42,
        authz_epoch: 3,
        nodes: (0..5)
            .map(|i| NodeRow {
                node: format!("n{i}"),
                ..NodeRow::default()
            })
            .collect(),
        retained: (0..100)
            .map(|i| retained(&format!("t/{i}"), 1_000))
            .collect(),
        settings: (0..20)
            .map(|i| SettingRow {
                ns: "test".into(),
                key: format!("k{i:02}"),
                value: vec![b'v'; 700].into(),
                version: 1,
            })
            .collect(),
        ..Snapshot::default()
    }
}

fn stage(chunks: &Chunks, index: u64) -> Result<(u64, Snapshot), StagingError> {
    let mut staging = Staging::begin(chunks.begin(index), u64::MAX)?;
    for (seq, rows) in chunks.chunks.iter().enumerate() {
        staging.absorb(FollowSnapshotChunk {
            index,
            seq: seq as u64,
            rows: Some(rows.clone()),
        })?;
    }
    staging.finish(chunks.end(index))
}

#[test]
fn chunks_are_bounded_and_reassemble_to_the_snapshot() {
    let chunks = split(sample(), 10_000);
    assert!(chunks.chunks.len() >= 10, "{} chunks", chunks.chunks.len());
    assert_eq!(chunks.rows, 125, "5 nodes, 100 retained, 20 settings");
    let mut total = 0;
    for c in &chunks.chunks {
        assert!(c.encoded_len() <= 10_000, "chunk of {}", c.encoded_len());
        total += c.encoded_len() as u64;
    }
    assert_eq!(total, chunks.bytes);
    assert_eq!(stage(&chunks, 42), Ok((42, sample())));
}

#[test]
fn a_row_over_the_bound_goes_alone_and_an_empty_snapshot_is_one_chunk() {
    let mut s = sample();
    s.retained.insert(3, retained("big", 50_000));
    let chunks = split(s.clone(), 10_000);
    let alone = chunks
        .chunks
        .iter()
        .find(|c| c.retained.iter().any(|r| r.topic == "big"))
        .expect("the big row is sent");
    assert_eq!(alone.retained.len(), 1);
    assert_eq!(stage(&chunks, 42).map(|(_, s)| s), Ok(s));

    let empty = split(Snapshot::default(), 10_000);
    assert_eq!(empty.chunks.len(), 1);
    assert_eq!(stage(&empty, 7), Ok((7, Snapshot::default())));
}

#[test]
fn staging_refuses_what_was_not_announced() {
    let chunks = split(sample(), 10_000);
    let too_large = Staging::begin(chunks.begin(42), chunks.bytes - 1).map(|_| ());
    assert!(matches!(too_large, Err(StagingError::TooLarge { .. })));

    let chunk = |seq: usize| FollowSnapshotChunk {
        index: 42,
        seq: seq as u64,
        rows: Some(chunks.chunks[seq].clone()),
    };
    // Out of order.
    let mut st = Staging::begin(chunks.begin(42), u64::MAX).expect("begin");
    assert!(st.absorb(chunk(1)).is_err());
    // Another snapshot's chunk.
    let mut st = Staging::begin(chunks.begin(42), u64::MAX).expect("begin");
    let mut other = chunk(0);
    other.index = 41;
    assert!(st.absorb(other).is_err());
    // More bytes than announced.
    let mut small = chunks.begin(42);
    small.bytes = 100;
    let mut st = Staging::begin(small, u64::MAX).expect("begin");
    assert!(st.absorb(chunk(0)).is_err());
    // An end before every chunk arrived.
    let mut st = Staging::begin(chunks.begin(42), u64::MAX).expect("begin");
    st.absorb(chunk(0)).expect("first chunk");
    assert!(st.finish(chunks.end(42)).is_err());
    // An end whose counts differ from the begin's.
    let mut end = chunks.end(42);
    end.rows += 1;
    let mut st = Staging::begin(chunks.begin(42), u64::MAX).expect("begin");
    for seq in 0..chunks.chunks.len() {
        st.absorb(chunk(seq)).expect("chunk");
    }
    assert!(st.finish(end).is_err());
}

#[test]
fn chunks_cut_from_a_source_are_the_chunks_of_its_snapshot() {
    let tables = crate::tables::Tables::from_snapshot(&sample());
    let source = tables.snapshot_source();
    let whole = source.snapshot();
    assert_eq!(whole.retained.len(), 100);
    assert_eq!(whole.settings.len(), 20);
    let chunks = split_source(&source, 10_000);
    assert!(chunks.chunks.len() >= 10, "{} chunks", chunks.chunks.len());
    assert!(
        chunks == split(whole.clone(), 10_000),
        "not the chunks of the snapshot"
    );
    assert!(stage(&chunks, 42) == Ok((42, whole)), "does not reassemble");
}
