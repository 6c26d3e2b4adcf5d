//! `replicant-node`: with no arguments, a standalone broker on 127.0.0.1:1883 (TCP),
//! 127.0.0.1:8083 (WebSocket, `/mqtt`) and 127.0.0.1:18083 (HTTP: `/metrics`, `/health`).
//! `replicant-node ctl ...` talks to a running node's API instead (see `ctl`).

use clap::Parser;
use replicant_node::cli::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut cli = Cli::parse();
    if let Some(replicant_node::cli::Command::Ctl(ctl)) = cli.command.take() {
        let answer = replicant_node::ctl::run(ctl).await?;
        println!("{answer}");
        return Ok(());
    }
    let config = meshmq_shared::config::load(cli.config.as_deref(), &cli.overrides())?;
    let broker = replicant_node::start(config).await?;
    broker.run_until_signal().await;
    Ok(())
}
