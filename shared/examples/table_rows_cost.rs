//! Prints what a registry row costs in the map the tables keep it in, and how long a
//! snapshot holds the state machine's lock, for `ROWS` rows (default 1 000 000).
//!
//! `cargo run --release -p meshmq-shared --example table_rows_cost -- KIND [ROWS]` with KIND:
//! - `hashbrown`, `imbl-hash`, `imbl-hash-arc`, `imbl-ord`: resident bytes per row (from
//!   /proc/self/statm, so run one kind per process) and nanoseconds per lookup of a client id,
//!   for each map kind;
//! - `hashbrown-arc`: bytes per row with rows and keys behind `Arc`, and the time to copy
//!   their pointers (the lock hold of that alternative to persistent maps);
//! - `snapshot`: with that many registry rows applied to `Tables`, the time to take the
//!   whole canonical snapshot (what the state machine did under its lock before streamed
//!   snapshots), to capture a [`SnapshotSource`] (what it does under the lock now) and to
//!   build the snapshot from the source (now outside the lock).
//!
//! A figures printer, not a test: numbers depend on the machine.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use meshmq_proto::tables::{Batch, Op, RegistryClaim, RegistryRow, op::Kind};
use meshmq_shared::tables::Tables;
use prost::Message;

/// Resident set size of this process in bytes (Linux), 0 when unknown.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Client id of row `i` (like a device id: 20-odd bytes).
fn client_id(i: usize) -> String {
    format!("device-{i:08}-sensor")
}

/// A row as a claim stores it.
fn row(i: usize) -> RegistryRow {
    RegistryRow {
        node: format!("replicant-{}", i % 8),
        incarnation: 1,
        generation: 1,
        connected: true,
        session_expiry_secs: 3600,
        protocol_level: 5,
        connected_at_ms: 1_700_000_000_000 + i as u64,
        disconnected_at_ms: 0,
    }
}

/// Lookup order: a fixed pseudo-random walk over the ids (no cache-friendly order).
fn probe_ids(rows: usize) -> Vec<String> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..rows.min(1_000_000))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            client_id((x % rows as u64) as usize)
        })
        .collect()
}

/// Fills a map with `put`, then prints bytes per row and ns per lookup with `get`.
fn measure<M>(
    kind: &str,
    rows: usize,
    mut map: M,
    put: impl Fn(&mut M, String, RegistryRow),
    get: impl Fn(&M, &str) -> bool,
) {
    let probes = probe_ids(rows);
    let before = rss_bytes();
    for i in 0..rows {
        put(&mut map, client_id(i), row(i));
    }
    let after = rss_bytes();
    let started = Instant::now();
    let mut found = 0usize;
    for id in &probes {
        found += usize::from(get(&map, black_box(id)));
    }
    let lookup_ns = started.elapsed().as_nanos() as f64 / probes.len() as f64;
    println!(
        "{kind:10} rows={rows} bytes/row={:.0} lookup_ns={lookup_ns:.0} (found {found})",
        after.saturating_sub(before) as f64 / rows as f64
    );
    black_box(map);
}

/// Applies `rows` claims, then times the old and the new lock hold.
fn snapshot_hold(rows: usize) {
    let mut tables = Tables::new();
    for (index, chunk) in (0..rows).collect::<Vec<_>>().chunks(10_000).enumerate() {
        let batch = Batch {
            ops: chunk
                .iter()
                .map(|&i| Op {
                    kind: Some(Kind::RegistryClaim(RegistryClaim {
                        client_id: client_id(i),
                        node: format!("replicant-{}", i % 8),
                        incarnation: 1,
                        clean_start: false,
                        session_expiry_secs: 3600,
                        protocol_level: 5,
                        now_ms: 1_700_000_000_000,
                        ..Default::default()
                    })),
                })
                .collect(),
        };
        tables.apply_batch(index as u64 + 1, &batch);
    }
    let started = Instant::now();
    let whole = tables.snapshot();
    let whole_ms = started.elapsed().as_secs_f64() * 1e3;
    drop(whole);
    let started = Instant::now();
    let source = tables.snapshot_source();
    let capture_us = started.elapsed().as_secs_f64() * 1e6;
    let started = Instant::now();
    let bytes = source.snapshot().encode_to_vec();
    let build_ms = started.elapsed().as_secs_f64() * 1e3;
    println!(
        "snapshot rows={rows}: whole snapshot (old lock hold) {whole_ms:.1} ms; \
         capture (new lock hold) {capture_us:.1} us; build+encode outside the lock \
         {build_ms:.1} ms ({} bytes)",
        bytes.len()
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "snapshot".into());
    let rows: usize = args
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000_000)
        .max(1);
    match kind.as_str() {
        "hashbrown" => measure(
            "hashbrown",
            rows,
            hashbrown::HashMap::<String, RegistryRow>::new(),
            |m, k, v| {
                m.insert(k, v);
            },
            |m, k| m.contains_key(k),
        ),
        "imbl-hash" => measure(
            "imbl-hash",
            rows,
            imbl::HashMap::<String, RegistryRow>::new(),
            |m, k, v| {
                m.insert(k, v);
            },
            |m, k| m.contains_key(k),
        ),
        "imbl-ord" => measure(
            "imbl-ord",
            rows,
            imbl::OrdMap::<String, RegistryRow>::new(),
            |m, k, v| {
                m.insert(k, v);
            },
            |m, k| m.contains_key(k),
        ),
        "imbl-hash-arc" => measure(
            "imbl-hash-arc",
            rows,
            imbl::HashMap::<String, Arc<RegistryRow>>::new(),
            |m, k, v| {
                m.insert(k, Arc::new(v));
            },
            |m, k| m.contains_key(k),
        ),
        "hashbrown-arc" => {
            // The alternative to persistent maps: rows (and keys) behind Arc, copied as
            // pointers under the lock: O(rows), but each a pointer and a count bump.
            let mut map = hashbrown::HashMap::<Arc<str>, Arc<RegistryRow>>::new();
            let before = rss_bytes();
            for i in 0..rows {
                map.insert(Arc::from(client_id(i).as_str()), Arc::new(row(i)));
            }
            let after = rss_bytes();
            let started = Instant::now();
            let copy: Vec<(Arc<str>, Arc<RegistryRow>)> = map
                .iter()
                .map(|(k, v)| (Arc::clone(k), Arc::clone(v)))
                .collect();
            let copy_ms = started.elapsed().as_secs_f64() * 1e3;
            println!(
                "hashbrown-arc rows={rows} bytes/row={:.0} pointer copy (its lock hold) {copy_ms:.1} ms",
                after.saturating_sub(before) as f64 / rows as f64
            );
            black_box((map, copy));
        }
        "snapshot" => snapshot_hold(rows),
        other => eprintln!(
            "unknown kind {other:?}: hashbrown, imbl-hash, imbl-hash-arc, imbl-ord, \
             hashbrown-arc, snapshot"
        ),
    }
}
