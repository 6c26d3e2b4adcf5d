//! Alarms, as EMQX users know them: raised and cleared per node, each with a name, a
//! severity, a message and details, listed at `/api/v5/alarms` (active ones, and a bounded
//! history of deactivated ones).
//!
//! - [`Alarms`] (this file) owns the node's alarm state: the active alarms by name and the
//!   history (at most `alarms.history_size`, the oldest dropped first). Its methods are
//!   synchronous and never wait on anything but its own lock; each change they make is
//!   returned as an [`Event`], which the caller hands to [`notify::changed`].
//! - [`checks`] evaluates the conditions every `alarms.check_interval` (readings from
//!   [`readings`]) and activates or deactivates alarms to match.
//! - [`notify`] does what a change causes: a log line, the `meshmq_alarms_active` gauge, a
//!   `$SYS/brokers/{node}/alarms/activate|deactivate` message, a webhook notification.
//! - [`webhook`] POSTs notifications to the configured URLs, from bounded queues, with
//!   retries; it never blocks the checker.
//! - [`api`] serves the REST routes.
//!
//! Nothing here must ever block a connection task, log a webhook header value, or let an
//! alarm be active twice under one name.

pub mod api;
pub mod checks;
pub mod notify;
pub mod readings;
pub mod webhook;

use std::collections::{BTreeMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};

/// How serious an alarm is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The node cannot do part of its job (no core link, no Raft leader).
    Critical,
    /// Worth a look before it becomes critical.
    Warning,
}

/// One alarm, active or deactivated.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// Unique among the node's active alarms (`core_link_down`, `peer_link_down:r2`).
    pub name: String,
    /// How serious.
    pub severity: Severity,
    /// For people.
    pub message: String,
    /// Readings and thresholds behind it (a JSON object).
    pub details: Value,
    /// When it was activated, Unix microseconds (as EMQX keeps it).
    pub activate_at_us: u64,
    /// When it was deactivated, Unix microseconds; `None` while active.
    pub deactivate_at_us: Option<u64>,
}

impl Alarm {
    /// A new active alarm, activated now.
    pub fn new(
        name: impl Into<String>,
        severity: Severity,
        message: String,
        details: Value,
    ) -> Self {
        Alarm {
            name: name.into(),
            severity,
            message,
            details,
            activate_at_us: now_us(),
            deactivate_at_us: None,
        }
    }

    /// As the REST API shows it (EMQX's fields, plus `severity`): `duration` in ms, times
    /// as RFC 3339 text with milliseconds; `deactivate_at` only once deactivated.
    pub fn to_api_json(&self, node: &str, now_us: u64) -> Value {
        let end = self.deactivate_at_us.unwrap_or(now_us);
        let mut v = json!({
            "node": node,
            "name": self.name,
            "severity": self.severity,
            "message": self.message,
            "details": self.details,
            "duration": end.saturating_sub(self.activate_at_us) / 1000,
            "activate_at": rfc3339_us(self.activate_at_us),
        });
        if let Some(at) = self.deactivate_at_us {
            v["deactivate_at"] = Value::from(rfc3339_us(at));
        }
        v
    }
}

/// An activation or a deactivation.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The alarm became active.
    Activated(Alarm),
    /// The alarm was deactivated (its `deactivate_at_us` is set).
    Deactivated(Alarm),
}

/// The node's alarms: active by name, and the history of deactivated ones; and the webhook
/// their changes go to.
#[derive(Debug)]
pub struct Alarms {
    /// Both tables, under one lock.
    inner: Mutex<Inner>,
    /// Most deactivated alarms kept.
    history_cap: usize,
    /// Where [`notify::changed`] queues notifications.
    pub webhook: webhook::Webhook,
}

#[derive(Debug, Default)]
struct Inner {
    /// Active alarms by name.
    active: BTreeMap<String, Alarm>,
    /// Deactivated alarms, oldest first.
    history: VecDeque<Alarm>,
}

impl Alarms {
    /// No alarm, a history of at most `history_cap` (at least 1), changes notified to
    /// `webhook`.
    pub fn new(history_cap: usize, webhook: webhook::Webhook) -> Self {
        Alarms {
            inner: Mutex::new(Inner::default()),
            history_cap: history_cap.max(1),
            webhook,
        }
    }

    /// Activates `alarm` unless one of its name is active; the event if it was not.
    pub fn activate(&self, alarm: Alarm) -> Option<Event> {
        let mut inner = self.inner.lock();
        if inner.active.contains_key(&alarm.name) {
            return None;
        }
        inner.active.insert(alarm.name.clone(), alarm.clone());
        Some(Event::Activated(alarm))
    }

    /// Deactivates the active alarm `name` (into the history); the event, or `None` when no
    /// such alarm is active.
    pub fn deactivate(&self, name: &str) -> Option<Event> {
        let mut inner = self.inner.lock();
        let mut alarm = inner.active.remove(name)?;
        alarm.deactivate_at_us = Some(now_us().max(alarm.activate_at_us));
        if inner.history.len() >= self.history_cap {
            inner.history.pop_front();
        }
        inner.history.push_back(alarm.clone());
        Some(Event::Deactivated(alarm))
    }

    /// Whether `name` is active.
    pub fn is_active(&self, name: &str) -> bool {
        self.inner.lock().active.contains_key(name)
    }

    /// Names of the active alarms, sorted.
    pub fn active_names(&self) -> Vec<String> {
        self.inner.lock().active.keys().cloned().collect()
    }

    /// The active alarms (`activated`) or the history, newest activation first.
    pub fn list(&self, activated: bool) -> Vec<Alarm> {
        let inner = self.inner.lock();
        let mut out: Vec<Alarm> = if activated {
            inner.active.values().cloned().collect()
        } else {
            inner.history.iter().cloned().collect()
        };
        out.sort_by(|a, b| {
            b.activate_at_us
                .cmp(&a.activate_at_us)
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| b.deactivate_at_us.cmp(&a.deactivate_at_us))
        });
        out
    }

    /// Empties the history; how many alarms it held.
    pub fn clear_history(&self) -> usize {
        let mut inner = self.inner.lock();
        let n = inner.history.len();
        inner.history.clear();
        n
    }
}

/// Now as Unix microseconds.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Unix microseconds as RFC 3339 text in UTC with milliseconds
/// (`2026-12-03T16:21:54.123Z`).
pub fn rfc3339_us(us: u64) -> String {
    let secs = crate::banned::rfc3339::format(us / 1_000_000);
    let ms = (us / 1000) % 1000;
    match secs.strip_suffix('Z') {
        Some(base) => format!("{base}.{ms:03}Z"),
        None => secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(name: &str) -> Alarm {
        Alarm::new(name, Severity::Warning, format!("{name}!"), json!({}))
    }

    #[test]
    fn an_alarm_is_active_once_and_goes_to_the_history_when_deactivated() {
        let a = Alarms::new(10, webhook::Webhook::disabled());
        assert!(matches!(a.activate(alarm("x")), Some(Event::Activated(_))));
        assert_eq!(a.activate(alarm("x")), None, "already active");
        assert!(a.is_active("x"));
        assert_eq!(a.deactivate("y"), None);
        let Some(Event::Deactivated(d)) = a.deactivate("x") else {
            panic!("deactivated");
        };
        assert!(d.deactivate_at_us.is_some_and(|t| t >= d.activate_at_us));
        assert!(!a.is_active("x"));
        assert_eq!(a.list(false), vec![d]);
        assert!(a.activate(alarm("x")).is_some(), "may be raised again");
        assert_eq!(a.clear_history(), 1);
        assert!(a.list(false).is_empty());
        assert_eq!(a.active_names(), vec!["x".to_owned()]);
    }

    #[test]
    fn the_history_keeps_the_newest() {
        let a = Alarms::new(3, webhook::Webhook::disabled());
        for i in 0..5 {
            a.activate(alarm(&format!("a{i}")));
            a.deactivate(&format!("a{i}"));
        }
        let mut names: Vec<String> = a.list(false).into_iter().map(|x| x.name).collect();
        names.sort();
        assert_eq!(names, ["a2", "a3", "a4"]);
    }

    #[test]
    fn api_json_has_emqx_s_fields() {
        let mut x = alarm("core_link_down");
        x.activate_at_us = 1_500_000;
        let v = x.to_api_json("r1", 4_000_000);
        assert_eq!(v["activate_at"], "1970-01-01T00:00:01.500Z");
        assert_eq!(v["duration"], 2500);
        assert_eq!(v["severity"], "warning");
        assert!(v.get("deactivate_at").is_none());
        x.deactivate_at_us = Some(2_000_000);
        let v = x.to_api_json("r1", 4_000_000);
        assert_eq!(v["deactivate_at"], "1970-01-01T00:00:02.000Z");
        assert_eq!(v["duration"], 500);
        assert_eq!(v["node"], "r1");
    }
}
