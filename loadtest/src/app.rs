//! Runs the `conn`, `sub`, `pub`, `storm` and `scenario` subcommands from their parsed
//! flags: plans the phases for this process, then either runs them here (with the live
//! progress line), or as the parent of `--workers` processes (merging their figures), or as
//! one of those workers (reporting JSON lines on stdout); prints the summary and writes
//! `--json`.
//!
//! It owns the runtime, Ctrl-C and the output. Every run ends by itself: phases are bounded
//! (see `args`), Ctrl-C only ends them sooner.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::args::{CommonArgs, Seat, random_tag};
use crate::broker_usage::Sampler;
use crate::cli::Command;
use crate::counters::{Stop, stop_signal};
use crate::figures::{Figures, Progress};
use crate::live::Live;
use crate::plan::share;
use crate::progress::{Line, PERIOD};
use crate::run_report::PhaseReport;
use crate::scenario::{self, Phase, info_of};
use crate::workers::{self, Launch, WorkerLine};

/// What this invocation runs, planned for this process.
#[derive(Debug)]
pub struct Job {
    /// The phases (one for a single subcommand).
    pub phases: Vec<Phase>,
    /// Where this process stands.
    pub seat: Seat,
    /// `--workers`.
    pub workers: usize,
    /// `--threads`.
    pub threads: usize,
    /// `--json`.
    pub json: Option<PathBuf>,
    /// The run tag shared by every process.
    pub run_tag: u64,
    /// A scenario (its JSON holds a list of phases).
    pub scenario: bool,
    /// Clients per phase of the whole run (to split them between workers).
    pub counts: Vec<usize>,
    /// `--broker-pid`: broker processes to sample over the run.
    pub broker_pids: Vec<u32>,
}

fn single(common: &CommonArgs, plan: anyhow::Result<crate::plan::Plan>) -> anyhow::Result<Job> {
    let plan = plan?;
    let seat = common.seat()?;
    let run_tag = plan.run_tag;
    let name = plan.job.name().to_owned();
    Ok(Job {
        counts: vec![common.count],
        phases: vec![Phase {
            info: info_of(&name, &plan),
            plan,
            parallel: false,
            delay: Duration::ZERO,
        }],
        seat,
        workers: common.workers,
        threads: common.threads,
        json: common.json.clone(),
        run_tag,
        scenario: false,
        broker_pids: common.broker_pid.clone(),
    })
}

impl Job {
    /// Plans `command` (a client subcommand or `scenario`); `None` for the others.
    pub fn from_command(command: &Command) -> Option<anyhow::Result<Job>> {
        Some(match command {
            Command::Conn(a) => single(&a.common, a.plan()),
            Command::Sub(a) => single(&a.common, a.plan()),
            Command::Pub(a) => single(&a.common, a.plan()),
            Command::Storm(a) => single(&a.common, a.plan()),
            Command::Scenario(a) => (|| {
                anyhow::ensure!(a.workers >= 1, "--workers must be at least 1");
                let seat = match a.worker_of {
                    Some(k) => {
                        anyhow::ensure!(k < a.workers, "--worker-of {k} of {}", a.workers);
                        Seat { k, n: a.workers }
                    }
                    None => Seat::ALONE,
                };
                let run_tag = a.run_tag.unwrap_or_else(random_tag);
                let phases = scenario::load(&a.file, seat, run_tag)?;
                let counts = phases.iter().map(|p| p.plan.total_clients).collect();
                Ok(Job {
                    phases,
                    seat,
                    workers: a.workers,
                    threads: a.threads,
                    json: a.json.clone(),
                    run_tag,
                    scenario: true,
                    counts,
                    broker_pids: Vec::new(),
                })
            })(),
            _ => return None,
        })
    }

    fn is_worker(&self) -> bool {
        self.seat.n > 1
    }
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .context("building the tokio runtime")
}

fn sum_progress(lives: &[Arc<Live>]) -> Progress {
    let mut sum = Progress::default();
    for live in lives {
        sum.add(&live.progress());
    }
    sum
}

/// Runs `phases` in this process until they end or `stop` fires, calling `tick` with the
/// summed progress every [`PERIOD`].
pub async fn run_here(
    phases: &[Phase],
    stop: Stop,
    mut tick: impl FnMut(&Progress),
) -> Vec<Figures> {
    let lives: Vec<Arc<Live>> = phases.iter().map(|_| Arc::new(Live::new())).collect();
    let run = scenario::run_phases(phases, &lives, stop);
    tokio::pin!(run);
    let mut ticker = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            figures = &mut run => return figures,
            _ = ticker.tick() => tick(&sum_progress(&lives)),
        }
    }
}

/// Runs a planned job to the end and prints (or, in a worker, reports) what it counted.
pub fn run(job: Job) -> anyhow::Result<()> {
    let rt = runtime(job.threads)?;
    let (trigger, stop) = stop_signal();
    if job.is_worker() {
        let figures = rt.block_on(async {
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    trigger.fire();
                }
            });
            run_here(&job.phases, stop, |p| {
                workers::emit(&WorkerLine::Progress(p.clone()))
            })
            .await
        });
        workers::emit(&WorkerLine::Done(figures));
        return Ok(());
    }
    let label = job
        .phases
        .iter()
        .map(|p| p.info.name.as_str())
        .collect::<Vec<_>>()
        .join("+");
    let mut line = Line::new(&label, true);
    let sampler = rt.block_on(async { Sampler::start(&job.broker_pids) });
    let figures = if job.workers > 1 {
        let launch = launch(&job)?;
        let n = job.phases.len();
        rt.block_on(async {
            // Ctrl-C reaches the workers too: they stop and report, and the parent merges.
            tokio::spawn(async {
                while tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("stopping: the workers finish and report");
                }
            });
            workers::run_parent(&launch, n, |p| line.update(p)).await
        })?
    } else {
        rt.block_on(async {
            let ctrl_c = tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    trigger.fire();
                }
            });
            let figures = run_here(&job.phases, stop, |p| line.update(p)).await;
            ctrl_c.abort();
            figures
        })
    };
    line.finish();
    let broker = sampler.map(|s| rt.block_on(s.finish()));
    let reports: Vec<PhaseReport> = job
        .phases
        .iter()
        .zip(figures)
        .map(|(phase, f)| {
            let mut r = PhaseReport::new(phase.info.clone(), f);
            r.broker = broker.clone();
            r
        })
        .collect();
    for r in &reports {
        print!("{}", r.to_text());
    }
    if let Some(path) = &job.json {
        let json = if job.scenario {
            serde_json::to_string_pretty(&serde_json::json!({ "phases": reports }))?
        } else {
            serde_json::to_string_pretty(&reports[0])?
        };
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// How the parent starts its workers: this executable and command line, plus each
/// worker's seat, client range (single subcommands) and the shared run tag.
fn launch(job: &Job) -> anyhow::Result<Launch> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let per_worker = (0..job.workers)
        .map(|k| {
            let mut extra = vec![
                "--worker-of".to_owned(),
                k.to_string(),
                "--run-tag".to_owned(),
                job.run_tag.to_string(),
            ];
            if !job.scenario {
                let r = share(job.counts[0], k, job.workers);
                extra.push("--worker-range".to_owned());
                extra.push(format!("{}..{}", r.start, r.end));
            }
            extra
        })
        .collect();
    Ok(Launch {
        exe,
        args,
        per_worker,
    })
}
