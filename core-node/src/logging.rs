//! The process-wide logger of both node binaries: text or JSON lines on stdout, each with an
//! RFC 3339 UTC timestamp and the node's name, filtered by a level plus per-module
//! directives (`RUST_LOG` syntax) that can be replaced at run time ([`set_log_filter`],
//! behind `PUT /api/v5/log/level` on replicants).
//!
//! Owns the subscriber, its reload handle and the two line formats (the JSON one in
//! [`json`]). It must never read the configuration file itself (the binary hands in a
//! [`LogConfig`]) and never panic: a bad directive is an error for the caller to report.

mod json;

use std::fmt;
use std::sync::OnceLock;

use meshmq_shared::config::{LogConfig, LogFormat};
use meshmq_shared::startup::DEFAULT_LOG_FILTER;
use parking_lot::Mutex;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

pub use json::{JsonFields, JsonFormat};

/// Why the logger could not be installed or its filter changed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The directives do not parse (`RUST_LOG` syntax).
    #[error("invalid log directives {directives:?}: {reason}")]
    Directives {
        /// What was given (bounded: the caller checked its length).
        directives: String,
        /// The parser's reason.
        reason: String,
    },
    /// The level is not one of trace, debug, info, warn, error, off.
    #[error("invalid log level {0:?}: expected trace, debug, info, warn, error or off")]
    Level(String),
    /// No logger of ours is installed in this process (an embedder or a test).
    #[error("the node's logger is not installed in this process")]
    NotInstalled,
    /// A logger was already installed.
    #[error("a logger is already installed: {0}")]
    Install(String),
}

/// What [`set_log_filter`] changes: the reload handle and the filter now in force.
struct Installed {
    /// Swaps the filter of the installed subscriber.
    handle: reload::Handle<EnvFilter, Registry>,
    /// The level and directives in force (what `GET /api/v5/log/level` shows).
    current: Mutex<(String, String)>,
}

/// Set once, by [`init`].
static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// The `warn` floor for dependencies, from [`DEFAULT_LOG_FILTER`] (its first element is
/// the level of meshmq's own lines).
fn dependency_directives() -> impl Iterator<Item = &'static str> {
    DEFAULT_LOG_FILTER.split(',').skip(1)
}

/// The filter text for `level` and `directives`: the level, the dependencies' `warn` floor
/// except for targets the directives name, then the directives.
pub fn filter_text(level: &str, directives: &str) -> Result<String, LogError> {
    let level = level.trim().to_ascii_lowercase();
    if !meshmq_shared::config::LOG_LEVELS.contains(&level.as_str()) {
        return Err(LogError::Level(level));
    }
    let named: Vec<&str> = directives
        .split(',')
        .filter_map(|d| d.split('=').next())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let mut parts = vec![level];
    for dep in dependency_directives() {
        let target = dep.split('=').next().unwrap_or(dep);
        if !named.contains(&target) {
            parts.push(dep.to_owned());
        }
    }
    parts.extend(
        directives
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_owned),
    );
    Ok(parts.join(","))
}

/// Parses a filter, with its text in the error.
fn parse_filter(text: &str) -> Result<EnvFilter, LogError> {
    EnvFilter::builder()
        .parse(text)
        .map_err(|e| LogError::Directives {
            directives: text.chars().take(512).collect(),
            reason: e.to_string(),
        })
}

/// The line format of `format` for node `node`, as a boxed layer over the filtered registry.
fn format_layer<S, W>(format: LogFormat, node: &str, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => layer
            .event_format(TextFormat::new(node))
            .with_ansi(false)
            .boxed(),
        LogFormat::Json => layer
            .fmt_fields(JsonFields)
            .event_format(JsonFormat::new(node))
            .boxed(),
    }
}

/// Installs the process-wide logger for node `node` from `config`; `RUST_LOG`, when set
/// (`rust_log`), replaces `config.level` and `config.directives`. Lines go to stdout.
pub fn init(config: &LogConfig, node: &str, rust_log: Option<&str>) -> Result<(), LogError> {
    let (level, directives) = match rust_log {
        Some(text) => (String::new(), text.to_owned()),
        None => (config.level.clone(), config.directives.clone()),
    };
    let text = match rust_log {
        Some(t) => t.to_owned(),
        None => filter_text(&level, &directives)?,
    };
    let (filter, handle) = reload::Layer::new(parse_filter(&text)?);
    let layer = format_layer(config.format, node, std::io::stdout);
    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init()
        .map_err(|e| LogError::Install(e.to_string()))?;
    let _ = INSTALLED.set(Installed {
        handle,
        current: Mutex::new((level, directives)),
    });
    Ok(())
}

/// Replaces the filter of the installed logger with `level` plus `directives` (`RUST_LOG`
/// syntax, e.g. `replicant_node::peer=debug`); the change holds until the next start.
pub fn set_log_filter(level: &str, directives: &str) -> Result<(), LogError> {
    let installed = INSTALLED.get().ok_or(LogError::NotInstalled)?;
    let filter = parse_filter(&filter_text(level, directives)?)?;
    installed
        .handle
        .reload(filter)
        .map_err(|e| LogError::Install(e.to_string()))?;
    *installed.current.lock() = (level.trim().to_ascii_lowercase(), directives.to_owned());
    tracing::info!(level, directives, "log filter changed");
    Ok(())
}

/// The level and directives in force (`None` without an installed logger). The level is
/// empty when `RUST_LOG` set the filter at start-up (it is then in the directives).
pub fn current_filter() -> Option<(String, String)> {
    INSTALLED.get().map(|i| i.current.lock().clone())
}

/// A subscriber writing `format` lines for `node` to `writer` with `filter`, for tests and
/// embedders that install their own (`tracing::subscriber::with_default`).
pub fn subscriber<W>(
    format: LogFormat,
    node: &str,
    filter: &str,
    writer: W,
) -> Result<impl Subscriber + Send + Sync, LogError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = parse_filter(filter)?;
    Ok(tracing_subscriber::registry()
        .with(filter)
        .with(format_layer(format, node, writer)))
}

/// Now as RFC 3339 UTC with microseconds (`2026-01-02T03:04:05.678901Z`).
pub fn rfc3339_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let micros = now.nanosecond() / 1000 * 1000;
    let now = now.replace_nanosecond(micros).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// The text format: timestamp, level, node, target, message and fields.
pub struct TextFormat {
    /// Written after the timestamp on every line.
    node: String,
    /// tracing-subscriber's full format without its own timestamp.
    inner: Format<Full, ()>,
}

impl TextFormat {
    /// Lines for node `node`.
    pub fn new(node: &str) -> Self {
        TextFormat {
            node: node.to_owned(),
            inner: tracing_subscriber::fmt::format().without_time(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "{} [{}] ", rfc3339_now(), self.node)?;
        // Formatted whole, then escaped: a field may hold what a client sent (a client id,
        // a topic), and a line break or a terminal escape in it must not forge a line.
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.strip_suffix('\n').unwrap_or(&line);
        writer.write_str(&escape_controls(body))?;
        writer.write_char('\n')
    }
}

/// `text` with every control character but tab, the Unicode line and paragraph
/// separators and the bidirectional formatting marks written as an escape (`\n`, `\r`,
/// `\u{1b}`, `\u{202e}` ...), so one event is one line, no terminal sequence reaches the
/// log, and no client id can reorder what a reader sees.
pub(crate) fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(escaped) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if escaped(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether `c` is written escaped in a text log line.
fn escaped(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

#[cfg(test)]
mod tests;
