//! `tables-bench`: fills the tables of a running multi-process cluster (started by
//! `scripts/dev-cluster up --release`, see `loadtest/bench/tables.sh`) through the cores'
//! `Transact` with synthetic rows, then prints what they cost: commit rate, core and
//! replicant RSS per registry row, per subscription and per retained byte, snapshot size
//! and build time (an on-demand snapshot with log purge on every core), the time a fresh
//! replicant takes to become ready from that snapshot, and the latency of a light
//! Transact probe idle, while filling, while the snapshots are built and while the fresh
//! replicant joins.
//!
//! Sizes come from flags or `TABLES_*` environment variables. The fill stops early (and
//! says so) when the machine's `MemAvailable` drops under `--min-available-mib`.

mod fill;
mod link;
mod probe;
mod report;
mod sys;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::link::Link;
use crate::probe::Probe;
use crate::report::{Report, Rss};

/// Fills a dev-cluster's tables and measures what they cost.
#[derive(Parser, Debug, Clone)]
struct Args {
    /// The dev-cluster directory (pids, api-key, certs, logs, data).
    #[arg(long, env = "TABLES_DIR")]
    dir: PathBuf,
    /// The dev-cluster base port.
    #[arg(long, env = "TABLES_BASE_PORT", default_value_t = 24000)]
    base_port: u16,
    /// Cores of the cluster (their pids come first in DIR/pids).
    #[arg(long, default_value_t = 3)]
    cores: usize,
    /// Replicants of the cluster (their pids follow the cores').
    #[arg(long, default_value_t = 2)]
    replicants: usize,
    /// Registry rows (clients).
    #[arg(long, env = "TABLES_ROWS", default_value_t = 200_000)]
    rows: u64,
    /// Share of the rows that are disconnected persistent sessions.
    #[arg(long, env = "TABLES_PERSISTENT_SHARE", default_value_t = 0.1)]
    persistent_share: f64,
    /// Subscriptions per persistent session.
    #[arg(long, env = "TABLES_SUBS", default_value_t = 5)]
    subs: u64,
    /// Retained messages.
    #[arg(long, env = "TABLES_RETAINED", default_value_t = 10_000)]
    retained: u64,
    /// Payload bytes of each retained message.
    #[arg(long, env = "TABLES_RETAINED_SIZE", default_value_t = 1024)]
    retained_size: usize,
    /// Clients per batch (at most 10 000: one claim batch must be one log entry).
    #[arg(long, env = "TABLES_BATCH", default_value_t = 1_000)]
    batch: u64,
    /// Transacts in flight while filling.
    #[arg(long, env = "TABLES_IN_FLIGHT", default_value_t = 8)]
    in_flight: usize,
    /// Stop filling when MemAvailable is under this many MiB.
    #[arg(long, env = "TABLES_MIN_AVAILABLE_MIB", default_value_t = 3072)]
    min_available_mib: u64,
    /// Probe Transacts per second.
    #[arg(long, env = "TABLES_PROBE_HZ", default_value_t = 20)]
    probe_hz: u64,
    /// Seconds of each idle probe window.
    #[arg(long, env = "TABLES_IDLE_SECS", default_value_t = 10)]
    idle_secs: u64,
    /// Compact the cores one after the other instead of all at once: each core holds its
    /// encoded snapshot and one table's sorted rows while it builds, which at 10 M rows on a
    /// 23 GiB box does not fit three times over.
    #[arg(long, env = "TABLES_COMPACT_IN_TURN", default_value_t = false)]
    compact_in_turn: bool,
    /// The replicant binary started fresh after the compaction (none: skip that step).
    #[arg(long, env = "TABLES_REPLICANT_BIN")]
    replicant_bin: Option<PathBuf>,
    /// Node name of the fresh replicant (its certificate must be in DIR/certs).
    #[arg(long, default_value = "r-fresh")]
    fresh_name: String,
    /// Longest wait for the fresh replicant to become ready, in seconds.
    #[arg(long, default_value_t = 900)]
    fresh_timeout_secs: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.batch == 0 || args.batch > 10_000 {
        bail!("--batch must be 1..=10000");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(args))
}

fn loopback(port: u32) -> Result<SocketAddr> {
    let port = u16::try_from(port).context("port out of range")?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

async fn run(args: Args) -> Result<()> {
    let base = u32::from(args.base_port);
    let pids: Vec<u32> = std::fs::read_to_string(args.dir.join("pids"))
        .context("reading DIR/pids (is the cluster up?)")?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if pids.len() < args.cores + args.replicants {
        bail!(
            "DIR/pids has {} pids, expected {}",
            pids.len(),
            args.cores + args.replicants
        );
    }
    let (core_pids, rep_pids) = (
        pids[..args.cores].to_vec(),
        pids[args.cores..args.cores + args.replicants].to_vec(),
    );
    let key = std::fs::read_to_string(args.dir.join("api-key"))?
        .trim()
        .to_owned();
    let core_http: Vec<SocketAddr> = (1..=args.cores as u32)
        .map(|i| loopback(base + 100 + i))
        .collect::<Result<_>>()?;
    let certs = args.dir.join("certs");

    let (_, body) = sys::http(core_http[0], "GET", "/health", None, Duration::from_secs(5)).await?;
    let health: serde_json::Value = serde_json::from_str(&body).context("core /health")?;
    let leader = health["leader_id"]
        .as_u64()
        .context("no leader_id in /health")?;
    let leader_quic = loopback(base + leader as u32)?;
    let link = Link::connect(&certs, "bench", leader_quic).await?;
    let probe_link = Link::connect(&certs, "bench", leader_quic).await?;
    let probe = Probe::start(
        probe_link,
        Duration::from_micros(1_000_000 / args.probe_hz.max(1)),
    );
    let guard = fill::Guard::new(args.min_available_mib << 20);
    let mut rep = Report::new(&args.dir, args.rows, args.retained, args.retained_size);
    let rss = |label: &str| Rss::measure(label, &core_pids, &rep_pids);

    eprintln!(
        "tables-bench: leader core {leader}; idle probe {} s",
        args.idle_secs
    );
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    rep.probe("idle, empty tables", probe.take());
    rep.rss(rss("start")?);

    // Registry: every client claims; persistent ones keep their generation.
    let persistent = ((args.rows as f64) * args.persistent_share).round() as u64;
    let gens: Arc<Vec<AtomicU64>> = Arc::new((0..persistent).map(|_| AtomicU64::new(0)).collect());
    let per = args.batch;
    let claim_batches = args.rows.div_ceil(per);
    let phase = fill::run(
        "claims",
        &link,
        claim_batches,
        args.in_flight,
        &guard,
        fill::claims(args.rows, persistent, per),
        fill::keep_generations(gens.clone(), per),
    )
    .await?;
    rep.phase("registry claims", &phase);
    rep.rss(rss("after claims")?);
    let claimed = phase.applied;

    let p_batches = persistent.div_ceil(per);
    let phase = fill::run(
        "disconnects",
        &link,
        p_batches,
        args.in_flight,
        &guard,
        fill::disconnects(gens.clone(), per),
        fill::nothing(),
    )
    .await?;
    rep.phase("registry disconnects (persistent sessions)", &phase);
    rep.rss(rss("after disconnects")?);

    let persistent_claimed = persistent.min(claimed);
    let phase = fill::run(
        "subscriptions",
        &link,
        persistent_claimed.div_ceil(per),
        args.in_flight,
        &guard,
        fill::subscriptions(persistent_claimed, args.subs, per),
        fill::nothing(),
    )
    .await?;
    rep.phase("subscriptions", &phase);
    rep.rss(rss("after subscriptions")?);

    let r_per = (per / 4).max(1);
    let phase = fill::run(
        "retained",
        &link,
        args.retained.div_ceil(r_per),
        args.in_flight,
        &guard,
        fill::retained(args.retained, args.retained_size, r_per),
        fill::nothing(),
    )
    .await?;
    rep.phase("retained messages", &phase);
    rep.rss(rss("after retained")?);
    rep.probe("while filling", probe.take());
    if guard.tripped() {
        rep.note("the fill STOPPED EARLY: MemAvailable fell under the floor");
    }

    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    rep.probe("idle, full tables", probe.take());

    // Compaction on every core at once (as `snapshot_every` would do), or in turn.
    let started = Instant::now();
    let mut calls = Vec::new();
    for &addr in &core_http {
        let key = key.clone();
        let call = tokio::spawn(async move {
            sys::http(
                addr,
                "POST",
                "/api/v5/cluster/snapshot?purge=true",
                Some(&key),
                Duration::from_secs(700),
            )
            .await
        });
        let call = if args.compact_in_turn {
            let done = call.await;
            tokio::spawn(async move { done? })
        } else {
            call
        };
        calls.push(call);
    }
    if args.compact_in_turn {
        rep.note("the cores were compacted one after the other (--compact-in-turn)");
    }
    for (i, c) in calls.into_iter().enumerate() {
        let (status, body) = c.await??;
        let log = args.dir.join(format!("logs/core-{}.log", i + 1));
        rep.snapshot(i + 1, status, &body, sys::last_snapshot_bytes(&log));
    }
    rep.compaction_seconds(started.elapsed().as_secs_f64());
    rep.probe("while every core builds a snapshot", probe.take());
    rep.rss(rss("after snapshots")?);

    if let Some(bin) = &args.replicant_bin {
        fresh_replicant(&args, bin, &mut rep, &probe, &core_pids, &rep_pids).await?;
    }
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    rep.probe("idle, after all", probe.take());
    probe.stop();
    let page = |addr| sys::http(addr, "GET", "/metrics", None, Duration::from_secs(10));
    let mut pages = Vec::new();
    for &addr in &core_http {
        pages.push(page(addr).await?.1);
    }
    rep.core_metrics(&pages);
    rep.print();
    Ok(())
}

/// Starts a replicant with an empty data dir, times it until its MQTT port opens, measures
/// its RSS, and stops it.
async fn fresh_replicant(
    args: &Args,
    bin: &std::path::Path,
    rep: &mut Report,
    probe: &Probe,
    core_pids: &[u32],
    rep_pids: &[u32],
) -> Result<()> {
    let base = u32::from(args.base_port);
    let slot = args.replicants as u32 + 1;
    let cores: Vec<String> = (1..=args.cores as u32)
        .map(|i| format!("127.0.0.1:{}", base + i))
        .collect();
    let data = args.dir.join(format!("data/{}", args.fresh_name));
    let _ = std::fs::remove_dir_all(&data);
    let log = std::fs::File::create(args.dir.join(format!("logs/{}.log", args.fresh_name)))?;
    let (mqtt, http) = (loopback(base + 200 + slot)?, loopback(base + 400 + slot)?);
    let started = Instant::now();
    let child = std::process::Command::new(bin)
        .env(
            "MESHMQ_CLUSTER__PEER_BIND",
            format!("127.0.0.1:{}", base + 500 + slot),
        )
        .args(["--node-name", &args.fresh_name, "--core", &cores.join(",")])
        .arg("--certs-dir")
        .arg(args.dir.join("certs"))
        .args([
            "--mqtt-bind",
            &mqtt.to_string(),
            "--http-bind",
            &http.to_string(),
        ])
        .args(["--ws-bind", &format!("127.0.0.1:{}", base + 300 + slot)])
        .arg("--data-dir")
        .arg(&data)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the fresh replicant")?;
    let mut child = KillOnDrop(child);
    let deadline = started + Duration::from_secs(args.fresh_timeout_secs);
    let mut http_ready = None;
    let ready = loop {
        if let Some(st) = child.0.try_wait()? {
            rep.note(&format!(
                "the fresh replicant EXITED ({st}) after {:.1} s without becoming ready; see logs/{}.log",
                started.elapsed().as_secs_f64(),
                args.fresh_name
            ));
            rep.probe("while a fresh replicant tries to join", probe.take());
            return Ok(());
        }
        if http_ready.is_none()
            && sys::http(http, "GET", "/health", None, Duration::from_secs(1))
                .await
                .is_ok_and(|(s, _)| s == 200)
        {
            http_ready = Some(started.elapsed());
        }
        if sys::port_open(mqtt).await {
            let at = started.elapsed();
            // The port and /health open together: the poll above may have just missed it.
            if http_ready.is_none()
                && sys::http(http, "GET", "/health", None, Duration::from_secs(1))
                    .await
                    .is_ok_and(|(s, _)| s == 200)
            {
                http_ready = Some(started.elapsed());
            }
            break Some(at);
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    rep.probe("while a fresh replicant joins", probe.take());
    let pid = child.0.id();
    let mut r = Rss::measure("fresh replicant ready", core_pids, rep_pids)?;
    r.extra = Some(sys::rss(pid)?);
    rep.rss(r);
    let metrics = sys::http(http, "GET", "/metrics", None, Duration::from_secs(10))
        .await
        .map(|(_, b)| b)
        .unwrap_or_default();
    rep.fresh(ready, http_ready, &metrics);
    drop(child);
    Ok(())
}

/// A child process stopped (and reaped) when dropped, even on an early return.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
