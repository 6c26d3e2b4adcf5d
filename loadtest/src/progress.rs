//! The live progress line (indicatif, on stderr, hidden when stderr is not a terminal):
//! connections open and the connect rate, publish and receive rates, errors by reason.
//! Fed once a second with a [`Progress`] snapshot (this process's, or the sum of the
//! workers'), it computes the rates itself.
//!
//! Display only: it never changes what is counted.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::figures::Progress;

/// How often the line is refreshed (and workers report).
pub const PERIOD: Duration = Duration::from_secs(1);

/// The progress line of one run.
#[derive(Debug)]
pub struct Line {
    bar: ProgressBar,
    last: Progress,
    last_at: Instant,
}

impl Line {
    /// A line labelled `label`; drawn only if `show` and stderr is a terminal.
    pub fn new(label: &str, show: bool) -> Line {
        let target = if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {prefix} {elapsed:>4} {wide_msg}")
        {
            bar.set_style(style);
        }
        bar.set_prefix(label.to_owned());
        Line {
            bar,
            last: Progress::default(),
            last_at: Instant::now(),
        }
    }

    /// Shows `now`, with rates since the previous update.
    pub fn update(&mut self, now: &Progress) {
        let dt = self.last_at.elapsed().as_secs_f64();
        self.bar.set_message(render(now, &self.last, dt));
        self.bar.tick();
        self.last = now.clone();
        self.last_at = Instant::now();
    }

    /// Removes the line.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The text of the line: `now`, and rates from `before` over `dt` seconds.
pub fn render(now: &Progress, before: &Progress, dt: f64) -> String {
    let rate = |a: u64, b: u64| {
        if dt > 0.0 {
            a.saturating_sub(b) as f64 / dt
        } else {
            0.0
        }
    };
    let mut text = format!(
        "open {} ({:.0} conn/s) | pub {:.0}/s | recv {:.0}/s",
        now.open,
        rate(now.connected, before.connected),
        rate(now.published, before.published),
        rate(now.received, before.received),
    );
    if !now.errors.is_empty() {
        let errs: Vec<String> = now.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
        text.push_str(" | errors ");
        text.push_str(&errs.join(" "));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_errors() {
        let before = Progress {
            connected: 10,
            published: 100,
            ..Progress::default()
        };
        let mut now = Progress {
            open: 30,
            connected: 30,
            published: 300,
            received: 50,
            ..Progress::default()
        };
        now.errors.insert("timeout".into(), 2);
        assert_eq!(
            render(&now, &before, 2.0),
            "open 30 (10 conn/s) | pub 100/s | recv 25/s | errors timeout=2"
        );
    }
}
