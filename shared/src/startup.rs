//! What every meshmq binary does around start-up and exit: the default log filter, and the
//! report of a failure as one line on stderr with a non-zero exit code.
//!
//! Owns [`DEFAULT_LOG_FILTER`] (defined here once for both node binaries) and
//! [`report_failure`]. It must never install a logger or read the configuration itself:
//! the binaries do, with these.

use std::error::Error;
use std::fmt::Debug;
use std::process::ExitCode;

/// The log filter when `RUST_LOG` is unset: meshmq's own lines at `info`, the internals of
/// its dependencies (openraft's state dumps, QUIC, TLS, HTTP, the store) at `warn`, so a
/// newcomer's terminal shows what the broker does. `RUST_LOG` replaces it entirely.
pub const DEFAULT_LOG_FILTER: &str = "info,openraft=warn,quinn=warn,quinn_proto=warn,\
rustls=warn,h2=warn,hyper=warn,hyper_util=warn,tower=warn,tower_http=warn,axum=warn,redb=warn";

/// `err` and its causes on one line, outermost first, joined by `: `. A cause whose text the
/// line already holds (an error that prints its source itself) is not repeated, and line
/// breaks inside a message become spaces.
pub fn one_line(err: &(dyn Error + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let msg = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !msg.is_empty() && !line.contains(&msg) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&msg);
        }
        next = e.source();
    }
    line
}

/// True when the user asked for backtraces (`RUST_BACKTRACE` set and not `0`).
fn backtrace_wanted() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0")
}

/// Reports a failure that ends the process: `error: <what> (<setting>): <cause>` as one line
/// on stderr (the error's contexts name the setting), and exit code 1. Only when
/// `RUST_BACKTRACE` asks for it, `debug` follows (for `anyhow::Error`, the cause chain and
/// the captured backtrace).
pub fn report_failure(err: &(dyn Error + 'static), debug: &dyn Debug) -> ExitCode {
    eprintln!("error: {}", one_line(err));
    if backtrace_wanted() {
        eprintln!("{debug:?}");
    }
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot bind the MQTT listener 127.0.0.1:1883 (listeners.mqtt_bind)")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read x: {source}")]
    struct PrintsItsSource {
        source: std::io::Error,
    }

    #[test]
    fn chain_on_one_line_without_repeats() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        assert_eq!(
            one_line(&Outer(io)),
            "cannot bind the MQTT listener 127.0.0.1:1883 (listeners.mqtt_bind): Address already in use"
        );
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such\nfile");
        assert_eq!(
            one_line(&PrintsItsSource { source: io }),
            "cannot read x: no such file"
        );
    }

    #[test]
    fn the_default_filter_keeps_meshmq_at_info_and_dependencies_at_warn() {
        let directives: Vec<&str> = DEFAULT_LOG_FILTER.split(',').collect();
        assert_eq!(directives.first(), Some(&"info"));
        for dep in [
            "openraft", "quinn", "rustls", "h2", "hyper", "tower", "redb",
        ] {
            assert!(
                directives.contains(&format!("{dep}=warn").as_str()),
                "{dep}"
            );
        }
        assert!(!DEFAULT_LOG_FILTER.contains(char::is_whitespace));
    }
}
