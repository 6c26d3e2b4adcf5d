//! Retained store at scale (issue 15): fills a [`Tables`] with N retained messages on
//! `site/{s}/device/{d}/temp` (1 000 devices per site; N = 1 000 000 by default: sites
//! 0..999) through `Tables::apply`, then prints the insert rate, the RSS growth per message,
//! and the median / p99 time of lookups that the topic-level index must answer without
//! scanning the store: an exact topic, `site/S/device/+/temp`, `site/S/#`,
//! `+/+/device/D/#`, and the full `#` walk in chunks (`retained_matching_chunk`).
//!
//! Printed figures, not a timed test:
//!
//! ```sh
//! cargo run --release -p meshmq-shared --example retained_scale [-- N [PAYLOAD_BYTES]]
//! ```
//!
//! The same lookups are then timed on a store of N / 10 messages: a lookup whose time grows
//! tenfold with the store (beyond what its own matches grow) is a scan.

use std::time::{Duration, Instant};

use meshmq_proto::tables::{RetainedSet, op::Kind};
use meshmq_shared::tables::{ChunkBudget, Op, RetainedMessage, Tables};

/// Devices per site: topic `site/{n / DEVICES}/device/{n % DEVICES}/temp`.
const DEVICES: u64 = 1_000;
/// Samples per timed lookup.
const SAMPLES: usize = 1_000;
/// The bounds of one `#` chunk (the replicant's retained replay uses chunks of this order).
const CHUNK: ChunkBudget = ChunkBudget {
    max_messages: 1_000,
    max_bytes: 1 << 20,
    max_levels: 10_000,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(1_000_000, |a| a.parse().expect("N"));
    let payload: usize = args
        .next()
        .map_or(16, |a| a.parse().expect("PAYLOAD_BYTES"));
    assert!(n >= DEVICES * 10, "N must be at least {}", DEVICES * 10);
    println!(
        "retained_scale: {n} retained messages on site/{{0..{}}}/device/{{0..{}}}/temp, payload {payload} B",
        n / DEVICES - 1,
        DEVICES - 1
    );

    // N first: its RSS growth is measured in a fresh process (the second store reuses the
    // memory the allocator kept from the first, so its growth is not printed).
    for (label, size) in [("N", n), ("N/10", n / 10)] {
        let rss_before = rss_bytes();
        let mut tables = Tables::new();
        let started = Instant::now();
        for i in 0..size {
            let result = tables.apply(i + 1, &retain(i, payload));
            assert!(
                matches!(
                    result.outcome,
                    Some(meshmq_proto::tables::op_result::Outcome::Ok(_))
                ),
                "op {i}: {result:?}"
            );
        }
        let insert = started.elapsed();
        let rss_after = rss_bytes();
        assert_eq!(tables.retained_count() as u64, size);
        println!();
        print!(
            "== {label}: {size} messages: insert {:.2} s ({:.0} msg/s)",
            insert.as_secs_f64(),
            size as f64 / insert.as_secs_f64(),
        );
        if label == "N" {
            let grown = rss_after.saturating_sub(rss_before) as f64;
            print!(
                "; RSS +{:.1} MiB ({:.0} B/message with a {payload} B payload)",
                grown / (1 << 20) as f64,
                grown / size as f64,
            );
        }
        println!();
        lookups(&tables, size);
        let dropped = Instant::now();
        drop(tables);
        println!("   drop: {:.2} s", dropped.elapsed().as_secs_f64());
    }
}

/// Times every lookup kind and prints one line each.
fn lookups(tables: &Tables, size: u64) {
    let sites = size / DEVICES;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    let exact = time(|| {
        let (s, d) = (next(sites), next(DEVICES));
        usize::from(
            tables
                .retained(&format!("site/{s}/device/{d}/temp"))
                .is_some(),
        )
    });
    report("exact topic site/S/device/D/temp", &exact);
    let plus = time(|| count(tables, &format!("site/{}/device/+/temp", next(sites))));
    report("site/S/device/+/temp", &plus);
    let site = time(|| count(tables, &format!("site/{}/#", next(sites))));
    report("site/S/#", &site);
    let device = time(|| count(tables, &format!("+/+/device/{}/#", next(DEVICES))));
    report("+/+/device/D/#", &device);
    let miss = time(|| count(tables, &format!("site/{}/nothing/+/temp", next(sites))));
    report("site/S/nothing/+/temp (no match)", &miss);
    // What each lookup visits: a chunk that may visit one level visits exactly one, so the
    // number of chunks of a walk is the number of levels it visits (a scan would visit
    // every level of the store: about 2 per message here, plus one per site).
    for filter in [
        "site/17/device/42/temp",
        "site/17/device/+/temp",
        "site/17/#",
        "+/+/device/42/#",
    ] {
        println!(
            "   levels visited by {filter:<24} {:>8} (the store has {size} messages)",
            levels_visited(tables, filter)
        );
    }

    // The full walk, chunk by chunk, each chunk resumed from the previous cursor.
    let mut chunks = Vec::new();
    let mut total = 0usize;
    let started = Instant::now();
    let mut cursor = None;
    loop {
        let t = Instant::now();
        let mut got = 0usize;
        cursor = tables.retained_matching_chunk("#", 0, cursor.as_ref(), CHUNK, |_| got += 1);
        chunks.push((t.elapsed(), got));
        total += got;
        if cursor.is_none() {
            break;
        }
    }
    let whole = started.elapsed();
    assert_eq!(total as u64, size, "the # walk must see every message once");
    report("# walk, one chunk (1 000 messages)", &chunks);
    println!(
        "   # walk whole: {} chunks, {total} messages in {:.3} s ({:.0} msg/s)",
        chunks.len(),
        whole.as_secs_f64(),
        total as f64 / whole.as_secs_f64()
    );
}

/// Levels of the tree the walk of `filter` visits, counted one chunk per level.
fn levels_visited(tables: &Tables, filter: &str) -> usize {
    let one = ChunkBudget {
        max_levels: 1,
        ..ChunkBudget::UNBOUNDED
    };
    let (mut levels, mut cursor) = (0, None);
    loop {
        levels += 1;
        cursor = tables.retained_matching_chunk(filter, 0, cursor.as_ref(), one, |_| {});
        if cursor.is_none() {
            return levels;
        }
    }
}

/// Messages matching `filter`.
fn count(tables: &Tables, filter: &str) -> usize {
    let mut n = 0;
    tables.retained_matching(filter, 0, |_| n += 1);
    n
}

/// `SAMPLES` timings of `f` (which returns how many messages it found).
fn time(mut f: impl FnMut() -> usize) -> Vec<(Duration, usize)> {
    (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            let found = std::hint::black_box(f());
            (t.elapsed(), found)
        })
        .collect()
}

fn report(what: &str, samples: &[(Duration, usize)]) {
    let mut times: Vec<Duration> = samples.iter().map(|s| s.0).collect();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let found = samples.iter().map(|s| s.1).sum::<usize>() / samples.len();
    println!(
        "   {what:<36} median {:>10.1} us  p99 {:>10.1} us  ({found} matches)",
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
    );
}

/// The `RetainedSet` of message `i`.
fn retain(i: u64, payload: usize) -> Op {
    let (s, d) = (i / DEVICES, i % DEVICES);
    Op {
        kind: Some(Kind::RetainedSet(RetainedSet {
            message: Some(RetainedMessage {
                topic: format!("site/{s}/device/{d}/temp"),
                payload: vec![b'7'; payload].into(),
                qos: 1,
                published_at_ms: 1,
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

/// This process's resident set size (Linux `/proc/self/status` VmRSS; 0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
