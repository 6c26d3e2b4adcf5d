//! The values of the periodic `$SYS/brokers/{node}/stats/...` and `.../metrics/...`
//! topics, named as EMQX names them (`connections.count` is the topic
//! `stats/connections/count`), each a decimal integer payload.
//!
//! - **Stats** are read from this node's state (connections, sessions, subscriptions) and
//!   the local replica (routes, retained messages: cluster-wide tables). Each `.max` is the
//!   highest value seen by [`Maxima::sample`], which the `$SYS` task calls every second
//!   (as EMQX's stats, a high-water mark of samples, not of every change).
//! - **Metrics** are read from the counters `/metrics` exports (the Prometheus recorder),
//!   summed over their labels. That recorder is process-wide, so these are the process's
//!   totals: the node's own in a deployment (one node per process), the sum of every node
//!   in a process that runs several (tests). Nothing on the message path counts twice.
//!
//! Owns the name mapping; it never writes anything.

use std::sync::atomic::Ordering;

use meshmq_shared::metrics as m;

use crate::ctx::Ctx;

/// High-water marks of the stats, since the node started.
#[derive(Debug, Default)]
pub struct Maxima {
    connections: u64,
    sessions: u64,
    subscriptions: u64,
    routes: u64,
    retained: u64,
}

/// The current counts.
struct Counts {
    connections: u64,
    sessions: u64,
    subscriptions: u64,
    routes: u64,
    retained: u64,
}

fn counts(ctx: &Ctx) -> Counts {
    let (routes, retained) = ctx
        .tables
        .core
        .read(|t| (t.route_count() as u64, t.retained_count() as u64));
    Counts {
        connections: ctx.admission.connections.load(Ordering::Relaxed) as u64,
        sessions: ctx.local.sessions.len() as u64,
        subscriptions: ctx.local.router.subscription_count() as u64,
        routes,
        retained,
    }
}

impl Maxima {
    /// Raises each high-water mark to the current value.
    pub fn sample(&mut self, ctx: &Ctx) {
        self.raise(&counts(ctx));
    }

    fn raise(&mut self, c: &Counts) {
        self.connections = self.connections.max(c.connections);
        self.sessions = self.sessions.max(c.sessions);
        self.subscriptions = self.subscriptions.max(c.subscriptions);
        self.routes = self.routes.max(c.routes);
        self.retained = self.retained.max(c.retained);
    }
}

/// `(topic suffix under stats/, value)` for every stat, the maxima raised first.
pub fn stats(ctx: &Ctx, max: &mut Maxima) -> Vec<(&'static str, u64)> {
    let c = counts(ctx);
    max.raise(&c);
    vec![
        ("connections/count", c.connections),
        ("connections/max", max.connections),
        ("sessions/count", c.sessions),
        ("sessions/max", max.sessions),
        ("subscriptions/count", c.subscriptions),
        ("subscriptions/max", max.subscriptions),
        // EMQX: topics.count equals routes.count (rows of the cluster's route table).
        ("topics/count", c.routes),
        ("topics/max", max.routes),
        ("routes/count", c.routes),
        ("routes/max", max.routes),
        ("retained/count", c.retained),
        ("retained/max", max.retained),
    ]
}

/// Packet types as the codec names them, received from clients (CONNECT is read before a
/// connection counts packets: see the docs).
const RECEIVED_TYPES: [&str; 10] = [
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "unsubscribe",
    "pingreq",
    "disconnect",
    "auth",
];
/// Packet types sent to clients (CONNACK is written before a connection counts packets).
const SENT_TYPES: [&str; 10] = [
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "suback",
    "unsuback",
    "pingresp",
    "disconnect",
    "auth",
];

/// `(topic suffix under metrics/, value)` for every metric, read from the Prometheus text
/// `text` (what `/metrics` serves).
pub fn metrics(text: &str) -> Vec<(String, u64)> {
    let sum = |name: &str, label: Option<(&str, &str)>| sum_series(text, name, label);
    let mut out: Vec<(String, u64)> = vec![
        (
            "messages/received".into(),
            sum(m::MESSAGES_RECEIVED_TOTAL, None),
        ),
        (
            "messages/sent".into(),
            sum(m::MESSAGES_DELIVERED_TOTAL, None),
        ),
        (
            "messages/dropped".into(),
            sum(m::MESSAGES_DROPPED_TOTAL, None),
        ),
        (
            "messages/dropped/no_subscribers".into(),
            sum(
                m::MESSAGES_DROPPED_TOTAL,
                Some(("reason", "no_subscribers")),
            ),
        ),
        (
            "messages/dropped/expired".into(),
            sum(m::MESSAGES_DROPPED_TOTAL, Some(("reason", "expired"))),
        ),
        (
            "messages/forward".into(),
            sum(m::MESSAGES_FORWARDED_TOTAL, None),
        ),
        ("bytes/received".into(), sum(m::BYTES_RECEIVED_TOTAL, None)),
        ("bytes/sent".into(), sum(m::BYTES_SENT_TOTAL, None)),
        (
            "packets/received".into(),
            sum(m::PACKETS_RECEIVED_TOTAL, None),
        ),
        ("packets/sent".into(), sum(m::PACKETS_SENT_TOTAL, None)),
        ("packets/connack/sent".into(), sum(m::CONNACK_TOTAL, None)),
    ];
    for q in ["0", "1", "2"] {
        let v = sum(m::MESSAGES_RECEIVED_TOTAL, Some(("qos", q)));
        out.push((format!("messages/qos{q}/received"), v));
    }
    for t in RECEIVED_TYPES {
        let v = sum(m::PACKETS_RECEIVED_TOTAL, Some(("type", t)));
        out.push((format!("packets/{t}/received"), v));
    }
    for t in SENT_TYPES {
        let v = sum(m::PACKETS_SENT_TOTAL, Some(("type", t)));
        out.push((format!("packets/{t}/sent"), v));
    }
    out
}

/// The sum of every series of counter `name` in the Prometheus text `text` (those with
/// `label` = value only, if given); 0 when there is none (a labelled counter has no series
/// before its first event). Values that do not parse count as 0.
pub fn sum_series(text: &str, name: &str, label: Option<(&str, &str)>) -> u64 {
    let mut total = 0u64;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.as_bytes().first() {
            Some(b'{') => match rest.rfind('}') {
                Some(end) => (&rest[..=end], &rest[end + 1..]),
                None => continue,
            },
            Some(b' ') => ("", rest),
            _ => continue, // another metric whose name starts with `name`
        };
        if let Some((k, v)) = label {
            let want = format!("{k}=\"{v}\"");
            let hit = labels
                .trim_matches(['{', '}'])
                .split(',')
                .any(|kv| kv == want);
            if !hit {
                continue;
            }
        }
        let value = value.split_whitespace().next().unwrap_or("0");
        // Counters are whole numbers; the recorder may still print them as floats.
        let v = value
            .parse::<u64>()
            .ok()
            .or_else(|| value.parse::<f64>().ok().map(|f| f.max(0.0) as u64))
            .unwrap_or(0);
        total = total.saturating_add(v);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP meshmq_messages_dropped_total Messages dropped.
# TYPE meshmq_messages_dropped_total counter
meshmq_messages_dropped_total{reason=\"expired\"} 3
meshmq_messages_dropped_total{reason=\"no_subscribers\"} 5
meshmq_messages_dropped_total{reason=\"expired_x\"} 100
meshmq_messages_dropped_totally 7
meshmq_bytes_sent_total 1024
meshmq_packets_received_total{type=\"publish\",x=\"y\"} 2
meshmq_packets_received_total{subtype=\"publish\"} 9
";

    #[test]
    fn sums_series_by_exact_name_and_label() {
        assert_eq!(sum_series(TEXT, "meshmq_messages_dropped_total", None), 108);
        let expired = Some(("reason", "expired"));
        assert_eq!(
            sum_series(TEXT, "meshmq_messages_dropped_total", expired),
            3
        );
        assert_eq!(sum_series(TEXT, "meshmq_bytes_sent_total", None), 1024);
        let publish = Some(("type", "publish"));
        assert_eq!(
            sum_series(TEXT, "meshmq_packets_received_total", publish),
            2
        );
        assert_eq!(sum_series(TEXT, "meshmq_bytes_received_total", None), 0);
    }

    #[test]
    fn metric_topics_are_emqx_names() {
        let out = metrics(TEXT);
        let get = |k: &str| out.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        assert_eq!(get("messages/dropped"), Some(108));
        assert_eq!(get("messages/dropped/no_subscribers"), Some(5));
        assert_eq!(get("bytes/sent"), Some(1024));
        assert_eq!(get("packets/publish/received"), Some(2));
        assert_eq!(get("messages/qos1/received"), Some(0));
    }
}
