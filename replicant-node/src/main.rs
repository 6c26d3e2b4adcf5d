//! `replicant-node`: with no arguments, a standalone broker on 127.0.0.1:1883 (TCP),
//! 127.0.0.1:8083 (WebSocket, `/mqtt`) and 127.0.0.1:18083 (HTTP: `/metrics`, `/health`).
//! `replicant-node ctl ...` talks to a running node's API instead (see `ctl`).
//!
//! A start-up failure (a port in use, an unreadable config, a bad certificate) is one line
//! on stderr, `error: <what> (<setting> / <variable>): <cause>`, and exit code 1; a
//! backtrace only with `RUST_BACKTRACE`. The logger (`[log]`: text or JSON, level,
//! directives; `RUST_LOG` wins when set) is installed once the configuration is loaded, so a
//! configuration error is reported before any log line; dependencies log at `warn` unless
//! the directives name them ([`meshmq_shared::startup::DEFAULT_LOG_FILTER`]).

use std::process::ExitCode;

use clap::Parser;
use core_node::logging;
use meshmq_shared::config::{LogConfig, setting};
use meshmq_shared::startup;
use replicant_node::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => startup::report_failure(&*e, &e),
    }
}

async fn run(mut cli: Cli) -> anyhow::Result<()> {
    let rust_log = std::env::var("RUST_LOG").ok();
    if let Some(replicant_node::cli::Command::Ctl(ctl)) = cli.command.take() {
        let _ = logging::init(&LogConfig::default(), "ctl", rust_log.as_deref());
        let answer = replicant_node::ctl::run(ctl).await?;
        println!("{answer}");
        return Ok(());
    }
    let config = meshmq_shared::config::load(cli.config.as_deref(), &cli.overrides())?;
    logging::init(&config.log, &config.node.name, rust_log.as_deref()).map_err(|e| {
        anyhow::anyhow!(
            "cannot set up logging ({}, {}, RUST_LOG): {e}",
            setting("log.level"),
            setting("log.directives")
        )
    })?;
    // The binary's standalone default: the API always needs a key (generated at first start).
    let broker = replicant_node::Broker::builder(config)
        .generate_api_key(true)
        .start()
        .await?;
    broker.run_until_signal().await;
    Ok(())
}
