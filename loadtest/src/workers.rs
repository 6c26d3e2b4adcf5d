//! `--workers N`: the parent re-executes this binary N times with a hidden `--worker-of K`
//! (plus its client-index range and the shared run tag); each worker runs its share and
//! writes JSON lines on stdout: a [`WorkerLine::Progress`] every second, then one
//! [`WorkerLine::Done`] with its figures. The parent sums the progress for its own line and
//! merges the final figures (exactly: counters summed, histograms added).
//!
//! This is how a run goes past the per-process open-file limit. The parent never waits
//! forever: a worker silent for [`SILENCE`] is killed and the run fails; workers are killed
//! if the parent goes away first (`kill_on_drop`).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::figures::{Figures, Progress};
use crate::progress::PERIOD;

/// A worker that prints nothing for this long is considered hung.
pub const SILENCE: Duration = Duration::from_secs(30);

/// One line a worker writes on stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerLine {
    /// The worker's counters so far.
    Progress(Progress),
    /// The worker's final figures, one per phase.
    Done(Vec<Figures>),
}

/// Writes `line` on stdout (a worker's only output there).
pub fn emit(line: &WorkerLine) {
    if let Ok(text) = serde_json::to_string(line) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// How to start the workers: this executable, the arguments of this run, and what each
/// worker adds.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The executable to start.
    pub exe: PathBuf,
    /// The command line of this run (without the program name).
    pub args: Vec<OsString>,
    /// The extra (hidden) arguments of each worker.
    pub per_worker: Vec<Vec<String>>,
}

enum Event {
    Line(usize, WorkerLine),
    Bad(usize, String),
    Eof(usize),
}

fn start(launch: &Launch, k: usize, tx: mpsc::Sender<Event>) -> anyhow::Result<Child> {
    let mut child = Command::new(&launch.exe)
        .args(&launch.args)
        .args(&launch.per_worker[k])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting worker {k} ({})", launch.exe.display()))?;
    let stdout = child.stdout.take().context("worker stdout")?;
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let event = match lines.next_line().await {
                Ok(Some(text)) => match serde_json::from_str::<WorkerLine>(&text) {
                    Ok(line) => Event::Line(k, line),
                    Err(e) => Event::Bad(k, format!("{e}: {text:.200}")),
                },
                Ok(None) | Err(_) => Event::Eof(k),
            };
            let eof = matches!(event, Event::Eof(_));
            if tx.send(event).await.is_err() || eof {
                break;
            }
        }
    });
    Ok(child)
}

/// Runs the workers of `launch` to the end; calls `on_progress` with their summed
/// progress about once a second; returns their figures merged per phase (`phases` long).
pub async fn run_parent(
    launch: &Launch,
    phases: usize,
    mut on_progress: impl FnMut(&Progress),
) -> anyhow::Result<Vec<Figures>> {
    let n = launch.per_worker.len();
    let (tx, mut rx) = mpsc::channel(64);
    let mut children = Vec::with_capacity(n);
    for k in 0..n {
        children.push(start(launch, k, tx.clone())?);
    }
    drop(tx);
    let mut progress = vec![Progress::default(); n];
    let mut done: Vec<Option<Vec<Figures>>> = vec![None; n];
    let mut ended = 0;
    let mut ticker = tokio::time::interval(PERIOD);
    let mut last_heard = tokio::time::Instant::now();
    while ended < n {
        tokio::select! {
            event = rx.recv() => {
                last_heard = tokio::time::Instant::now();
                match event {
                    Some(Event::Line(k, WorkerLine::Progress(p))) => progress[k] = p,
                    Some(Event::Line(k, WorkerLine::Done(f))) => done[k] = Some(f),
                    Some(Event::Bad(k, why)) => eprintln!("worker {k}: unreadable line: {why}"),
                    Some(Event::Eof(k)) => {
                        ended += 1;
                        if done[k].is_none() {
                            eprintln!("worker {k} closed its output without a report");
                        }
                    }
                    None => break,
                }
            }
            _ = ticker.tick() => {
                if last_heard.elapsed() > SILENCE {
                    bail!("a worker printed nothing for {SILENCE:?}; stopping them all");
                }
                let mut sum = Progress::default();
                for p in &progress {
                    sum.add(p);
                }
                on_progress(&sum);
            }
        }
    }
    for (k, child) in children.iter_mut().enumerate() {
        match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => eprintln!("worker {k} exited with {status}"),
            _ => eprintln!("worker {k} did not exit"),
        }
    }
    let mut merged = vec![Figures::default(); phases];
    for (k, figures) in done.into_iter().enumerate() {
        let figures = figures.with_context(|| format!("worker {k} ended without a report"))?;
        for (i, f) in figures.iter().enumerate().take(phases) {
            merged[i].merge(f);
        }
    }
    Ok(merged)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let mut f = Figures::default();
        f.e2e_latency.record(42);
        let line = WorkerLine::Done(vec![f]);
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.starts_with("{\"done\":"));
        assert_eq!(serde_json::from_str::<WorkerLine>(&text).unwrap(), line);
    }
}
