//! `[log]`: how a node writes its log lines (text or JSON), and which lines (a level and
//! per-module directives in `RUST_LOG` syntax). The logger itself is installed by the
//! binaries (`core_node::logging`); this module only holds the settings and their check.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Log output: format, level and per-module directives. `RUST_LOG`, when set, replaces
/// `level` and `directives` at start-up (the format still applies). On replicants `level`
/// and `directives` are run-time keys (`PUT /api/v5/configs/log`, every replicant, kept
/// across restarts; applied over `RUST_LOG` when set); `PUT /api/v5/log/level` changes one
/// node's filter until its next start or the next change of these keys.
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
    /// The key and the reason of the first invalid setting; the directives are parsed as
    /// the logger parses them (`RUST_LOG` syntax).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !LOG_LEVELS.contains(&self.level.to_ascii_lowercase().as_str()) {
            return Err((
                "log.level",
                format!("{:?} is not one of {}", self.level, LOG_LEVELS.join(", ")),
            ));
        }
        if self.directives.len() > MAX_DIRECTIVES_LEN {
            return Err(("log.directives", "longer than 4096 bytes".into()));
        }
        check_directives(&self.directives).map_err(|e| ("log.directives", e))
    }
}

/// Longest `log.directives`, in bytes.
pub const MAX_DIRECTIVES_LEN: usize = 4096;

/// Whether `directives` (comma separated, `RUST_LOG` syntax) parse; the first one that does
/// not, with the parser's reason.
pub fn check_directives(directives: &str) -> Result<(), String> {
    for d in directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        if let Err(e) = d.parse::<tracing_subscriber::filter::Directive>() {
            let shown: String = d.chars().take(128).collect();
            return Err(format!("{shown:?} is not a log directive ({e})"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_are_checked() {
        let ok = LogConfig {
            level: "DEBUG".into(),
            directives: "replicant_node::peer=trace, openraft=info,warn".into(),
            ..LogConfig::default()
        };
        assert_eq!(ok.check(), Ok(()));
        for (level, directives, key) in [
            ("loud", "", "log.level"),
            ("info", "a=b=c", "log.directives"),
            ("info", "x=loud", "log.directives"),
        ] {
            let c = LogConfig {
                level: level.into(),
                directives: directives.into(),
                ..LogConfig::default()
            };
            assert_eq!(c.check().map_err(|e| e.0), Err(key), "{level} {directives}");
        }
    }
}
