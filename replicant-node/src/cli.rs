//! Command-line flags of the `replicant-node` binary.
//!
//! Owns the flag names and their mapping onto [`Overrides`]; loading and layering live in
//! [`meshmq_shared::config`]. It must never read files or the environment itself: every
//! flag is optional and, when given, wins over the file and `MESHMQ_*` variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use meshmq_shared::config::Overrides;

/// meshmq replicant node: an MQTT 3.1/3.1.1/5.0 broker.
///
/// Configuration layers, lowest first: built-in defaults, the `--config` TOML file,
/// `MESHMQ_*` environment variables (`__` between levels, e.g.
/// `MESHMQ_MQTT__SERVER_KEEPALIVE=30`), then these flags.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "replicant-node", version, about, long_about)]
pub struct Cli {
    /// TOML configuration file; it must exist when given.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// MQTT/TCP listen address (`listeners.mqtt_bind`), e.g. 0.0.0.0:1883.
    #[arg(long, value_name = "ADDR")]
    pub mqtt_bind: Option<SocketAddr>,
    /// MQTT/WebSocket listen address (`listeners.ws_bind`), e.g. 0.0.0.0:8083.
    #[arg(long, value_name = "ADDR")]
    pub ws_bind: Option<SocketAddr>,
    /// HTTP listen address for /metrics, /health and the API (`listeners.http_bind`).
    #[arg(long, value_name = "ADDR")]
    pub http_bind: Option<SocketAddr>,
    /// Data directory (`node.data_dir`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Node name (`node.name`), e.g. meshmq@10.0.0.1.
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Core QUIC addresses, comma separated (`cluster.cores`); none: standalone with an
    /// embedded core.
    #[arg(long = "core", value_name = "ADDR,...", value_delimiter = ',')]
    pub cores: Vec<String>,
    /// Directory with `ca.pem` and this node's certificate (`cluster.certs_dir`).
    #[arg(long, value_name = "DIR")]
    pub certs_dir: Option<PathBuf>,
    /// Without a subcommand: run the broker.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands (none: run the broker).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Talk to a running node's HTTP API (clients, subscriptions, publish, retained, bans,
    /// config, stats, metrics, evacuation, traces): `ctl clients list`.
    Ctl(crate::ctl::Ctl),
}

impl Cli {
    /// The flags that were given, as configuration overrides.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            mqtt_bind: self.mqtt_bind,
            ws_bind: self.ws_bind,
            http_bind: self.http_bind,
            data_dir: self.data_dir.clone(),
            node_name: self.node_name.clone(),
            cores: self.cores.clone(),
            certs_dir: self.certs_dir.clone(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_flags_override_nothing() {
        let cli = Cli::try_parse_from(["replicant-node"]).unwrap();
        let o = cli.overrides();
        assert!(cli.config.is_none());
        assert!(o.mqtt_bind.is_none() && o.ws_bind.is_none() && o.http_bind.is_none());
        assert!(o.data_dir.is_none() && o.node_name.is_none());
    }

    #[test]
    fn every_flag_maps_to_its_override() {
        let cli = Cli::try_parse_from([
            "replicant-node",
            "--config",
            "/etc/meshmq.toml",
            "--mqtt-bind",
            "0.0.0.0:1883",
            "--ws-bind",
            "0.0.0.0:8083",
            "--http-bind",
            "127.0.0.1:18083",
            "--data-dir",
            "/var/lib/meshmq",
            "--node-name",
            "meshmq@10.0.0.1",
        ])
        .unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("/etc/meshmq.toml")));
        let o = cli.overrides();
        assert_eq!(o.mqtt_bind, Some("0.0.0.0:1883".parse().unwrap()));
        assert_eq!(o.ws_bind, Some("0.0.0.0:8083".parse().unwrap()));
        assert_eq!(o.http_bind, Some("127.0.0.1:18083".parse().unwrap()));
        assert_eq!(o.data_dir, Some(PathBuf::from("/var/lib/meshmq")));
        assert_eq!(o.node_name.as_deref(), Some("meshmq@10.0.0.1"));
    }

    #[test]
    fn ctl_rebalance_start_parses_the_evacuation_flags() {
        let cli = Cli::try_parse_from([
            "replicant-node",
            "ctl",
            "--api",
            "127.0.0.1:18084",
            "rebalance",
            "start",
            "--evacuation",
            "--node",
            "r1",
            "--conn-evict-rate",
            "200",
            "--migrate-to",
            "r2,r3",
        ])
        .unwrap();
        let Some(Command::Ctl(ctl)) = cli.command else {
            panic!("ctl expected")
        };
        assert_eq!(ctl.api, "127.0.0.1:18084".parse().unwrap());
        let crate::ctl::CtlCommand::Rebalance(crate::ctl::Rebalance::Start(a)) = ctl.command else {
            panic!("rebalance start expected")
        };
        assert!(a.evacuation);
        assert_eq!(a.node.as_deref(), Some("r1"));
        assert_eq!(a.conn_evict_rate, Some(200));
        assert_eq!(a.migrate_to, ["r2", "r3"]);
        let rebalance = Cli::try_parse_from([
            "replicant-node",
            "ctl",
            "rebalance",
            "start",
            "--nodes",
            "r1,r2",
            "--rel-conn-threshold",
            "1.2",
        ])
        .unwrap();
        let Some(Command::Ctl(ctl)) = rebalance.command else {
            panic!("ctl expected")
        };
        let crate::ctl::CtlCommand::Rebalance(crate::ctl::Rebalance::Start(a)) = ctl.command else {
            panic!("rebalance start expected")
        };
        assert!(!a.evacuation);
        assert_eq!(a.nodes, ["r1", "r2"]);
        assert_eq!(a.rel_conn_threshold, Some(1.2));
        assert!(
            Cli::try_parse_from([
                "replicant-node",
                "ctl",
                "rebalance",
                "start",
                "--evacuation",
                "--nodes",
                "r1"
            ])
            .is_err(),
            "--nodes is for a rebalance"
        );
    }

    #[test]
    fn ctl_everyday_commands_parse() {
        let parse = |args: &[&str]| {
            let mut all = vec!["replicant-node", "ctl"];
            all.extend_from_slice(args);
            match Cli::try_parse_from(all).map(|c| c.command) {
                Ok(Some(Command::Ctl(ctl))) => Ok(ctl),
                Ok(None) => panic!("ctl expected"),
                Err(e) => Err(e),
            }
        };
        use crate::ctl::{Banned, Clients, CtlCommand, Subscriptions};
        let c = parse(&["clients", "list", "--node", "r1", "--page", "2"]).unwrap();
        let CtlCommand::Clients(Clients::List(l)) = c.command else {
            panic!("clients list expected")
        };
        assert_eq!((l.node.as_deref(), l.paging.page), (Some("r1"), Some(2)));
        let c = parse(&["subscriptions", "add", "c/1", "t/#", "--qos", "1"]).unwrap();
        let CtlCommand::Subscriptions(Subscriptions::Add { clientid, qos, .. }) = c.command else {
            panic!("subscriptions add expected")
        };
        assert_eq!((clientid.as_str(), qos), ("c/1", 1));
        let c = parse(&["banned", "add", "--username", "u", "--duration", "60"]).unwrap();
        assert!(matches!(c.command, CtlCommand::Banned(Banned::Add(_))));
        assert!(
            parse(&["banned", "add", "--duration", "60"]).is_err(),
            "who is required"
        );
        assert!(parse(&["banned", "add", "--username", "u", "--clientid", "c"]).is_err());
        let t = ["trace", "start", "n", "--topic", "t/#", "--duration", "60"];
        assert!(parse(&t).is_ok(), "{:?}", parse(&t).err());
        assert!(parse(&["trace", "start", "n", "--duration", "60"]).is_err());
        assert!(parse(&["publish", "t", "p", "--retain", "--qos", "2"]).is_ok());
        assert!(parse(&["config", "set", "mqtt.max_inflight", "64"]).is_ok());
        assert!(parse(&["stats", "--aggregate"]).is_ok());
        let both = ["--api-key", "k:s", "--api-key-file", "/f", "stats"];
        let c = parse(&both).unwrap();
        assert_eq!(
            c.api_key_file,
            Some(PathBuf::from("/f")),
            "the file wins in ctl::run"
        );
    }

    #[test]
    fn bad_address_is_rejected() {
        assert!(Cli::try_parse_from(["replicant-node", "--mqtt-bind", "nope"]).is_err());
    }
}
