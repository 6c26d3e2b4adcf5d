//! What the bench measured, and the figures derived from it, printed as a Markdown list
//! (ready to paste into `loadtest/bench/RESULTS.md`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::fill::Phase;
use crate::probe::Samples;
use crate::sys::{self, mib};

/// RSS of every node at one moment.
#[derive(Debug, Clone)]
pub struct Rss {
    /// When.
    pub label: String,
    /// Each core's RSS in bytes.
    pub cores: Vec<u64>,
    /// Each replicant's RSS in bytes.
    pub reps: Vec<u64>,
    /// The fresh replicant's, once it runs.
    pub extra: Option<u64>,
}

impl Rss {
    /// Reads the RSS of `cores` and `reps` now.
    pub fn measure(label: &str, cores: &[u32], reps: &[u32]) -> Result<Self> {
        Ok(Self {
            label: label.to_owned(),
            cores: cores.iter().map(|&p| sys::rss(p)).collect::<Result<_>>()?,
            reps: reps.iter().map(|&p| sys::rss(p)).collect::<Result<_>>()?,
            extra: None,
        })
    }

    fn mean_core(&self) -> f64 {
        mean(&self.cores)
    }

    fn mean_rep(&self) -> f64 {
        mean(&self.reps)
    }
}

fn mean(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / (v.len().max(1) as f64)
}

/// Everything measured in one run.
pub struct Report {
    dir: PathBuf,
    rows: u64,
    retained: u64,
    retained_size: usize,
    phases: Vec<(String, Phase)>,
    rss: Vec<Rss>,
    probes: Vec<(String, Samples)>,
    lines: Vec<String>,
    notes: Vec<String>,
    snapshot_bytes: Vec<u64>,
    build_seconds: Vec<f64>,
}

impl Report {
    /// An empty report for the asked sizes.
    pub fn new(dir: &Path, rows: u64, retained: u64, retained_size: usize) -> Self {
        Self {
            dir: dir.to_owned(),
            rows,
            retained,
            retained_size,
            phases: Vec::new(),
            rss: Vec::new(),
            probes: Vec::new(),
            lines: Vec::new(),
            notes: Vec::new(),
            snapshot_bytes: Vec::new(),
            build_seconds: Vec::new(),
        }
    }

    /// A fill phase's outcome.
    pub fn phase(&mut self, name: &str, p: &Phase) {
        eprintln!(
            "tables-bench: {name}: {} applied, {} rejected in {:.1} s ({:.0} ops/s)",
            p.applied,
            p.rejected,
            p.seconds,
            p.rate()
        );
        self.phases.push((name.to_owned(), p.clone()));
    }

    /// RSS at one moment.
    pub fn rss(&mut self, r: Rss) {
        eprintln!(
            "tables-bench: RSS {}: cores {:?} MiB, replicants {:?} MiB{}",
            r.label,
            r.cores.iter().map(|b| b >> 20).collect::<Vec<_>>(),
            r.reps.iter().map(|b| b >> 20).collect::<Vec<_>>(),
            r.extra
                .map_or(String::new(), |b| format!(", fresh {} MiB", b >> 20)),
        );
        self.rss.push(r);
    }

    /// Probe latencies of one window.
    pub fn probe(&mut self, label: &str, s: Samples) {
        eprintln!("tables-bench: probe {label}: {}", s.line());
        self.probes.push((label.to_owned(), s));
    }

    /// A free-form note.
    pub fn note(&mut self, n: &str) {
        eprintln!("tables-bench: NOTE {n}");
        self.notes.push(n.to_owned());
    }

    /// One core's answer to the snapshot request and the snapshot's size from its log.
    pub fn snapshot(&mut self, core: usize, status: u16, body: &str, bytes: Option<u64>) {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let secs = v["build_seconds"].as_f64();
        let line = format!(
            "core {core} snapshot: HTTP {status}, index {}, built in {}, {} bytes ({}), purged to {}",
            v["snapshot_index"],
            secs.map_or("?".into(), |s| format!("{s:.2} s")),
            bytes.map_or("?".into(), |b| b.to_string()),
            bytes.map_or("?".into(), |b| mib(b as f64)),
            v["purged_index"],
        );
        eprintln!("tables-bench: {line}");
        self.lines.push(line);
        if status != 200 {
            self.notes
                .push(format!("core {core} snapshot failed: {body}"));
        }
        if let Some(s) = secs {
            self.build_seconds.push(s);
        }
        if let Some(b) = bytes {
            self.snapshot_bytes.push(b);
        }
    }

    /// Wall time of the compaction of every core.
    pub fn compaction_seconds(&mut self, s: f64) {
        self.lines
            .push(format!("compaction of every core (concurrent): {s:.2} s"));
    }

    /// The fresh replicant's readiness and what it received.
    pub fn fresh(&mut self, ready: Option<Duration>, http: Option<Duration>, metrics: &str) {
        let bytes = sys::metric_sum(metrics, "meshmq_replica_snapshot_bytes_received_total");
        let chunks = sys::metric_sum(metrics, "meshmq_replica_snapshot_chunks_received_total");
        let installs = sys::metric_sum(metrics, "meshmq_replica_snapshot_installs_total");
        let line = format!(
            "fresh replicant: MQTT port open after {}, /health 200 after {}; snapshot installs {installs}, \
             {chunks} chunks, {} of rows ({} per chunk on average)",
            ready.map_or("NEVER (timeout)".into(), |d| format!(
                "{:.2} s",
                d.as_secs_f64()
            )),
            http.map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64())),
            mib(bytes),
            mib(bytes / chunks.max(1.0)),
        );
        eprintln!("tables-bench: {line}");
        self.lines.push(line);
    }

    /// Follow-snapshot traffic the cores sent.
    pub fn core_metrics(&mut self, pages: &[String]) {
        let sum = |n| pages.iter().map(|p| sys::metric_sum(p, n)).sum::<f64>();
        let bytes = sum("meshmq_core_follow_snapshot_bytes_sent_total");
        let chunks = sum("meshmq_core_follow_snapshot_chunks_sent_total");
        let sent = sum("meshmq_core_follow_snapshots_sent_total");
        self.lines.push(format!(
            "cores sent {sent} follow snapshots, {chunks} chunks, {} ({} per chunk on average; bound 4 MiB of rows per chunk)",
            mib(bytes),
            mib(bytes / chunks.max(1.0)),
        ));
    }

    fn at(&self, label: &str) -> Option<&Rss> {
        self.rss.iter().find(|r| r.label == label)
    }

    fn applied(&self, i: usize) -> u64 {
        self.phases.get(i).map_or(0, |p| p.1.applied)
    }

    /// Prints the whole report on stdout.
    pub fn print(&self) {
        println!("## tables-bench ({})", self.dir.display());
        println!(
            "- asked: {} registry rows, {} retained x {} B",
            self.rows, self.retained, self.retained_size
        );
        for (name, p) in &self.phases {
            println!(
                "- {name}: {} applied, {} rejected, {:.1} s, {:.0} ops/s",
                p.applied,
                p.rejected,
                p.seconds,
                p.rate()
            );
        }
        let (rows, subs, ret) = (self.applied(0), self.applied(2), self.applied(3));
        let delta = |a: &str, b: &str, core: bool| -> Option<f64> {
            let (a, b) = (self.at(a)?, self.at(b)?);
            Some(if core {
                b.mean_core() - a.mean_core()
            } else {
                b.mean_rep() - a.mean_rep()
            })
        };
        let per = |d: Option<f64>, n: u64| {
            d.map_or("?".into(), |d| format!("{:.0} B", d / n.max(1) as f64))
        };
        for (who, core) in [("core", true), ("replicant", false)] {
            println!(
                "- {who} RSS per registry row: {}; per subscription: {}; per retained payload byte: {:.2}",
                per(delta("start", "after disconnects", core), rows),
                per(
                    delta("after disconnects", "after subscriptions", core),
                    subs
                ),
                delta("after subscriptions", "after retained", core).map_or(f64::NAN, |d| d
                    / (ret.max(1) as f64 * self.retained_size as f64)),
            );
        }
        if let (Some(start), Some(f)) = (self.at("start"), self.at("fresh replicant ready")) {
            let fresh = f.extra.unwrap_or(0) as f64;
            println!(
                "- fresh replicant RSS when ready: {} = {:.0} B per cluster-wide registry row (start RSS of a replicant {})",
                mib(fresh),
                (fresh - start.mean_rep()) / rows.max(1) as f64,
                mib(start.mean_rep()),
            );
        }
        for r in &self.rss {
            println!(
                "- RSS {}: cores {} / replicants {}{}",
                r.label,
                r.cores
                    .iter()
                    .map(|b| mib(*b as f64))
                    .collect::<Vec<_>>()
                    .join(", "),
                r.reps
                    .iter()
                    .map(|b| mib(*b as f64))
                    .collect::<Vec<_>>()
                    .join(", "),
                r.extra
                    .map_or(String::new(), |b| format!(" / fresh {}", mib(b as f64))),
            );
        }
        if let (Some(b), Some(s)) = (self.snapshot_bytes.first(), self.build_seconds.first()) {
            let all = (rows + subs + ret).max(1) as f64;
            println!(
                "- snapshot: {} ({:.0} B per row of any table), built in {s:.2} s by core 1 ({:.2} us per row)",
                mib(*b as f64),
                *b as f64 / all,
                s * 1e6 / all,
            );
        }
        for l in &self.lines {
            println!("- {l}");
        }
        for (label, s) in &self.probes {
            println!("- probe Transact latency, {label}: {}", s.line());
        }
        for n in &self.notes {
            println!("- NOTE: {n}");
        }
    }
}
