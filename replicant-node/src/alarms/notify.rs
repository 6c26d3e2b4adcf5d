//! What an alarm's activation or deactivation causes, whoever caused it (a check, or an
//! operator deactivating by hand): a log line (warn when activated, info when cleared), the
//! `meshmq_alarms_active{name}` gauge, a `$SYS/brokers/{node}/alarms/activate` or
//! `.../deactivate` message to this node's subscribers (QoS 0, not retained, EMQX's
//! payload), and a notification queued for the webhook.
//!
//! Owns the `$SYS` and webhook payloads. Never blocks: delivery pushes into mailboxes and
//! the webhook only queues (a full queue drops, counted).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use meshmq_shared::codec::{Properties, QoS};
use meshmq_shared::metrics as m;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::{Alarm, Event, rfc3339_us};
use crate::ctx::Ctx;
use crate::message::Message;

/// Logs, counts, publishes and queues for the webhook one change.
pub fn changed(ctx: &Ctx, event: &Event) {
    let (alarm, topic, active) = match event {
        Event::Activated(a) => {
            warn!(alarm = %a.name, severity = ?a.severity, message = %a.message, "alarm activated");
            (a, "activate", 1.0)
        }
        Event::Deactivated(a) => {
            info!(alarm = %a.name, "alarm deactivated");
            (a, "deactivate", 0.0)
        }
    };
    metrics::gauge!(m::ALARMS_ACTIVE, "name" => alarm.name.clone()).set(active);
    let node = ctx.node();
    let msg = Message::new(
        Instant::now(),
        format!("$SYS/brokers/{node}/alarms/{topic}"),
        Bytes::from(sys_payload(alarm).to_string()),
        QoS::AtMostOnce,
        false,
        Properties {
            content_type: Some("application/json".into()),
            ..Properties::default()
        },
    );
    // Nobody subscribed is normal: not counted as a drop.
    crate::publish::route(ctx, &Arc::new(msg));
    if ctx.alarms.webhook.is_enabled() {
        let body = webhook_body(node, event).to_string();
        ctx.alarms.webhook.push(Bytes::from(body));
    }
}

/// The `$SYS` payload, as EMQX publishes it: times in Unix microseconds, `deactivate_at`
/// `"infinity"` while active.
pub fn sys_payload(a: &Alarm) -> Value {
    json!({
        "name": a.name,
        "severity": a.severity,
        "details": a.details,
        "message": a.message,
        "activate_at": a.activate_at_us,
        "deactivate_at": a.deactivate_at_us.map_or(Value::from("infinity"), Value::from),
        "activated": a.deactivate_at_us.is_none(),
    })
}

/// The webhook's JSON body: `event` (`alarm.activated` or `alarm.deactivated`), `node`,
/// `name`, `severity`, `message`, `details`, `activate_at` and `deactivate_at` (RFC 3339
/// with milliseconds; `deactivate_at` null while active).
pub fn webhook_body(node: &str, event: &Event) -> Value {
    let (kind, a) = match event {
        Event::Activated(a) => ("alarm.activated", a),
        Event::Deactivated(a) => ("alarm.deactivated", a),
    };
    json!({
        "event": kind,
        "node": node,
        "name": a.name,
        "severity": a.severity,
        "message": a.message,
        "details": a.details,
        "activate_at": rfc3339_us(a.activate_at_us),
        "deactivate_at": a.deactivate_at_us.map(rfc3339_us),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::Severity;

    #[test]
    fn payloads_carry_the_alarm() {
        let mut a = Alarm::new(
            "core_link_down",
            Severity::Critical,
            "m".into(),
            json!({"k": 1}),
        );
        a.activate_at_us = 2_000_000;
        let sys = sys_payload(&a);
        assert_eq!(sys["deactivate_at"], "infinity");
        assert_eq!(sys["activated"], true);
        assert_eq!(sys["activate_at"], 2_000_000);
        let hook = webhook_body("r1", &Event::Activated(a.clone()));
        assert_eq!(hook["event"], "alarm.activated");
        assert_eq!(hook["severity"], "critical");
        assert_eq!(hook["deactivate_at"], Value::Null);
        assert_eq!(hook["details"]["k"], 1);
        a.deactivate_at_us = Some(3_000_000);
        let hook = webhook_body("r1", &Event::Deactivated(a.clone()));
        assert_eq!(hook["event"], "alarm.deactivated");
        assert_eq!(hook["deactivate_at"], "1970-01-01T00:00:03.000Z");
        assert_eq!(sys_payload(&a)["activated"], false);
    }
}
