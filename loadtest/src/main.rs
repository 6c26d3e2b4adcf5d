//! `loadtest`: parses the command line, builds the tokio runtime the flags ask for (a
//! current_thread runtime by default, to leave the most CPU to the broker on a shared box),
//! and runs the chosen subcommand. All logic lives in the library (`conn`, `sub`, `pub`,
//! `storm` and `scenario` in `loadtest::app`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use loadtest::cli::{Cli, Command, FanoutArgs, SummarizeArgs};
use loadtest::{FanoutReport, summary};

/// A failure is one `error: ...` line on stderr and exit code 1 (a backtrace only with
/// `RUST_BACKTRACE`), as for the node binaries.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => meshmq_shared::startup::report_failure(&*e, &e),
    }
}

fn run() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    if let Some(job) = loadtest::app::Job::from_command(&command) {
        return loadtest::app::run(job?);
    }
    match command {
        Command::Fanout(args) => fanout(&args),
        Command::Summarize(args) => summarize(&args),
        Command::RetainedReplay(args) => retained_replay(&args),
        _ => anyhow::bail!("unhandled subcommand"),
    }
}

fn fanout(args: &FanoutArgs) -> anyhow::Result<()> {
    let cfg = args.to_config()?;
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("building the tokio runtime")?;
    let report = runtime.block_on(loadtest::run_fanout(&cfg))?;
    print!("{}", report.to_text());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn retained_replay(args: &loadtest::retained_replay::RetainedReplayArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let report = runtime.block_on(loadtest::retained_replay::run(args))?;
    print!("{}", report.to_text());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn summarize(args: &SummarizeArgs) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    for path in &args.reports {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let report: FanoutReport =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        reports.push(report);
    }
    let rows = summary::rows(&reports, &args.baseline);
    print!("{}", summary::table(&rows, &args.baseline));
    Ok(())
}
