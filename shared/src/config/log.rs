//! `[log]`: how a node writes its log lines (text or JSON), and which lines (a level and
//! per-module directives in `RUST_LOG` syntax). The logger itself is installed by the
//! binaries (`core_node::logging`); this module only holds the settings and their check.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Log output: format, level and per-module directives. `RUST_LOG`, when set, replaces
/// `level` and `directives` at start-up (the format still applies); a run-time change
/// through the API (`PUT /api/v5/log/level`) replaces both until the next start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text`: one human-readable line per event; `json`: one JSON object per line
    /// (`timestamp` in RFC 3339 UTC, `level`, `node`, `target`, `message`, `fields`,
    /// `span`).
    pub format: LogFormat,
    /// The level of meshmq's own lines: `trace`, `debug`, `info`, `warn`, `error` or `off`.
    /// Dependencies stay at `warn` unless `directives` names them.
    pub level: String,
    /// Per-module levels, comma separated, in `RUST_LOG` syntax, applied over `level`
    /// (e.g. `replicant_node::peer=debug,openraft=info`). Empty: none.
    pub directives: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
            directives: String::new(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// `2026-01-02T03:04:05.678901Z  INFO node target: message key=value`.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The levels `log.level` accepts.
pub const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

impl LogConfig {
    /// The key and the reason of the first invalid setting. The directives' syntax is
    /// checked when the logger is installed (the filter parser lives with it).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !LOG_LEVELS.contains(&self.level.to_ascii_lowercase().as_str()) {
            return Err((
                "log.level",
                format!("{:?} is not one of {}", self.level, LOG_LEVELS.join(", ")),
            ));
        }
        if self.directives.len() > 4096 {
            return Err(("log.directives", "longer than 4096 bytes".into()));
        }
        Ok(())
    }
}
