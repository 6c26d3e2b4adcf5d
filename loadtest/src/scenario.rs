//! `scenario FILE`: a TOML list of phases, each a `conn`, `sub`, `pub` or `storm` with its
//! flags, run in order; consecutive phases marked `parallel = true` run together as one
//! group. A `[defaults]` table gives flags every phase gets unless it sets them itself.
//!
//! ```toml
//! [defaults]
//! host = "127.0.0.1"
//! port = 1883
//!
//! [[phase]]
//! run = "sub"             # conn | sub | pub | storm
//! name = "subscribers"    # optional
//! parallel = true         # runs together with the next parallel phases
//! count = 10
//! topic = "bench/#"
//! qos = 1
//! duration = 12
//!
//! [[phase]]
//! run = "pub"
//! parallel = true
//! delay = 1.0             # seconds after the group starts
//! count = 10
//! topic = "bench/%i"
//! interval-of-msg = 10
//! limit = 1000
//! ```
//!
//! Keys are the subcommands' long flag names (`_` may stand for `-`); each phase is parsed
//! and validated exactly like its command line, so every phase is bounded too. `json`,
//! `workers` and `threads` belong to the `scenario` command itself.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::{CommandFactory, Parser};
use serde::Deserialize;
use tokio::task::JoinSet;

use crate::args::{CommonArgs, Seat};
use crate::cli::{Cli, Command};
use crate::counters::Stop;
use crate::figures::Figures;
use crate::live::Live;
use crate::plan::Plan;
use crate::run_report::PhaseInfo;
use crate::runner::run_plan;

/// Keys of a phase that are not flags.
const META: [&str; 4] = ["run", "name", "parallel", "delay"];

/// Flags a phase may not set.
const FORBIDDEN: [&str; 7] = [
    "json",
    "workers",
    "threads",
    "worker-of",
    "worker-range",
    "run-tag",
    "help",
];

/// One phase, planned for this process.
#[derive(Debug, Clone)]
pub struct Phase {
    /// What the report calls it.
    pub info: PhaseInfo,
    /// What it does.
    pub plan: Plan,
    /// Runs together with its parallel neighbours.
    pub parallel: bool,
    /// Wait after its group starts.
    pub delay: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    defaults: toml::Table,
    phase: Vec<toml::Table>,
}

fn flag_name(key: &str) -> String {
    key.replace('_', "-")
}

fn value_text(key: &str, value: &toml::Value) -> anyhow::Result<String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(|v| value_text(key, v))
            .collect::<anyhow::Result<Vec<_>>>()?
            .join(","),
        other => bail!("{key}: unsupported value {other}"),
    })
}

/// The command line of a phase: `loadtest <run> --key value ...`.
pub fn phase_argv(run: &str, table: &toml::Table) -> anyhow::Result<Vec<String>> {
    ensure!(
        ["conn", "sub", "pub", "storm"].contains(&run),
        "run = {run:?}: expected conn, sub, pub or storm"
    );
    let cli = Cli::command();
    let sub = cli
        .find_subcommand(run)
        .with_context(|| format!("no subcommand {run}"))?;
    let mut argv = vec!["loadtest".to_owned(), run.to_owned()];
    for (key, value) in table {
        if META.contains(&key.as_str()) {
            continue;
        }
        let flag = flag_name(key);
        ensure!(
            !FORBIDDEN.contains(&flag.as_str()),
            "{key} is a flag of `scenario` itself, not of a phase"
        );
        let arg = sub
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()))
            .with_context(|| format!("{run} has no flag --{flag}"))?;
        if arg.get_action().takes_values() {
            argv.push(format!("--{flag}={}", value_text(key, value)?));
        } else {
            match value {
                toml::Value::Boolean(true) => argv.push(format!("--{flag}")),
                toml::Value::Boolean(false) => {}
                other => bail!("{key} is a switch: true or false, not {other}"),
            }
        }
    }
    Ok(argv)
}

fn seat_into(common: &mut CommonArgs, seat: Seat, run_tag: u64) {
    common.workers = seat.n;
    common.worker_of = (seat.n > 1).then_some(seat.k);
    common.worker_range = None;
    common.run_tag = Some(run_tag);
}

/// Parses and plans every phase of `text` for `seat`.
pub fn parse(text: &str, seat: Seat, run_tag: u64) -> anyhow::Result<Vec<Phase>> {
    let file: ScenarioFile = toml::from_str(text).context("parsing the scenario")?;
    ensure!(!file.phase.is_empty(), "the scenario has no [[phase]]");
    let mut phases = Vec::new();
    for (i, table) in file.phase.iter().enumerate() {
        let mut merged = file.defaults.clone();
        for (k, v) in table {
            merged.insert(k.clone(), v.clone());
        }
        let run = merged
            .get("run")
            .and_then(toml::Value::as_str)
            .with_context(|| format!("phase {i}: run = \"conn\" | \"sub\" | \"pub\" | \"storm\""))?
            .to_owned();
        let name = match merged.get("name") {
            Some(v) => v.as_str().context("name is a string")?.to_owned(),
            None => format!("{i}:{run}"),
        };
        let parallel = match merged.get("parallel") {
            Some(v) => v.as_bool().context("parallel is true or false")?,
            None => false,
        };
        let delay = match merged.get("delay") {
            Some(v) => {
                let secs = v
                    .as_float()
                    .or_else(|| v.as_integer().map(|i| i as f64))
                    .context("delay is a number of seconds")?;
                Duration::try_from_secs_f64(secs).context("delay")?
            }
            None => Duration::ZERO,
        };
        let argv = phase_argv(&run, &merged).with_context(|| format!("phase {name}"))?;
        let cli = Cli::try_parse_from(&argv).with_context(|| format!("phase {name}"))?;
        let plan = match cli.command {
            Command::Conn(mut a) => {
                seat_into(&mut a.common, seat, run_tag);
                a.plan()
            }
            Command::Sub(mut a) => {
                seat_into(&mut a.common, seat, run_tag);
                a.plan()
            }
            Command::Pub(mut a) => {
                seat_into(&mut a.common, seat, run_tag);
                a.plan()
            }
            Command::Storm(mut a) => {
                seat_into(&mut a.common, seat, run_tag);
                a.plan()
            }
            _ => bail!("phase {name}: not a client command"),
        }
        .with_context(|| format!("phase {name}"))?;
        phases.push(Phase {
            info: info_of(&name, &plan),
            plan,
            parallel,
            delay,
        });
    }
    Ok(phases)
}

/// Reads and plans the scenario file at `path`.
pub fn load(path: &Path, seat: Seat, run_tag: u64) -> anyhow::Result<Vec<Phase>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text, seat, run_tag)
}

/// The report header of a plan.
pub fn info_of(name: &str, plan: &Plan) -> PhaseInfo {
    PhaseInfo {
        name: name.to_owned(),
        command: plan.job.name().to_owned(),
        transport: plan.opts.transport.name().to_owned(),
        mqtt_version: plan.opts.version.level(),
        hosts: plan.endpoints.iter().map(|e| e.to_string()).collect(),
    }
}

/// The groups of `phases`: index ranges run together.
pub fn groups(phases: &[Phase]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < phases.len() {
        let mut j = i + 1;
        if phases[i].parallel {
            while j < phases.len() && phases[j].parallel {
                j += 1;
            }
        }
        out.push(i..j);
        i = j;
    }
    out
}

/// Runs `phases` group by group, phase `i` counting into `lives[i]`; returns each phase's
/// figures in order. A phase that fails to start has empty figures and its error counted.
pub async fn run_phases(phases: &[Phase], lives: &[Arc<Live>], stop: Stop) -> Vec<Figures> {
    let mut results: Vec<Figures> = vec![Figures::default(); phases.len()];
    for group in groups(phases) {
        if stop.is_set() {
            break;
        }
        let mut set = JoinSet::new();
        for i in group {
            let plan = Arc::new(phases[i].plan.clone());
            let live = lives[i].clone();
            let stop = stop.clone();
            let delay = phases[i].delay;
            set.spawn(async move {
                tokio::select! {
                    _ = stop.clone().wait() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
                let clients = plan.clients.len() as u64;
                let figures = match run_plan(plan, live.clone(), stop).await {
                    Ok(f) => f,
                    Err(err) => {
                        live.error("phase", crate::failure::reason_of(&err), &err);
                        let mut f = live.figures();
                        f.clients = clients;
                        f
                    }
                };
                (i, figures)
            });
        }
        while let Some(joined) = set.join_next().await {
            if let Ok((i, f)) = joined {
                results[i] = f;
            }
        }
    }
    results
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::plan::Job;

    const TEXT: &str = r#"
        [defaults]
        host = "127.0.0.1"
        port = 1999

        [[phase]]
        run = "sub"
        name = "subs"
        parallel = true
        count = 4
        topic = "t/#"
        qos = 1
        duration = 3

        [[phase]]
        run = "pub"
        parallel = true
        delay = 0.5
        count = 2
        topic = "t/%i"
        interval_of_msg = 0
        limit = 100
        clean = false

        [[phase]]
        run = "storm"
        count = 4
        cycles = 2
        no-redirect = true
    "#;

    #[test]
    fn phases_parse_like_their_command_lines() {
        let phases = parse(TEXT, Seat::ALONE, 7).unwrap();
        assert_eq!(phases.len(), 3);
        assert_eq!(phases[0].info.name, "subs");
        assert_eq!(phases[1].info.name, "1:pub");
        assert_eq!(phases[0].plan.endpoints[0].to_string(), "127.0.0.1:1999");
        assert!(matches!(&phases[0].plan.job, Job::Sub(s) if s.qos == 1));
        assert!(matches!(&phases[1].plan.job, Job::Pub(p) if p.limit == Some(100)));
        assert!(!phases[1].plan.opts.clean_start);
        assert_eq!(phases[1].delay, Duration::from_millis(500));
        assert!(!phases[2].plan.opts.follow_redirects);
        assert_eq!(phases[1].plan.run_tag, 7);
        assert_eq!(groups(&phases), vec![0..2, 2..3]);
        let halves = parse(TEXT, Seat { k: 1, n: 2 }, 7).unwrap();
        assert_eq!(halves[0].plan.clients, 2..4);
    }

    #[test]
    fn bad_phases_are_refused() {
        for bad in [
            "[[phase]]\nrun = \"conn\"\ncount = 1\n",
            "[[phase]]\nrun = \"fanout\"\nduration = 1\n",
            "[[phase]]\nrun = \"conn\"\nduration = 1\nnope = 1\n",
            "[[phase]]\nrun = \"conn\"\nduration = 1\njson = \"x\"\n",
            "[[phase]]\nrun = \"conn\"\nduration = 1\ntls = 3\n",
            "[[phase]]\nrun = \"conn\"\nduration = 1\nhost = \"10.0.0.1\"\n",
            "nothing = 1\n",
        ] {
            assert!(parse(bad, Seat::ALONE, 1).is_err(), "{bad}");
        }
    }
}
