//! The broker's running totals under EMQX's metric names (`messages.received`,
//! `packets.connect.received`, `client.connected`, ...): the values of the periodic
//! `$SYS/brokers/{node}/metrics/...` topics (the name with `/` for `.`) and of
//! `GET /api/v5/metrics`.
//!
//! They are read from the counters `/metrics` exports (the Prometheus recorder), summed
//! over their labels or over the labels that make EMQX's metric. That recorder is
//! process-wide, so these are the process's totals: the node's own in a deployment (one
//! node per process), the sum of every node in a process that runs several (tests).
//! Nothing on the message path counts twice: this module only reads the text.
//!
//! Owns the name mapping; it never writes anything.

use meshmq_shared::metrics as m;

/// Packet types as the codec names them, received from clients (CONNECT is read before a
/// connection counts packets: `packets.connect.received` is counted from the CONNACKs).
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

/// The CONNACK reason label of a success.
const CONNACK_OK: (&str, &str) = ("reason", "0x00");
/// CONNACK reason labels of refused credentials (bad user name or password, not authorized).
const CONNACK_AUTH: [&str; 2] = ["0x86", "0x87"];

/// One EMQX metric: its name and how it is read from the exported counters.
type Row = (&'static str, u64);

/// `(EMQX name, value)` for every metric, read from the Prometheus text `text` (what
/// `/metrics` serves).
pub fn metrics(text: &str) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::with_capacity(96);
    let mut push = |rows: Vec<Row>| out.extend(rows.into_iter().map(|(k, v)| (k.to_owned(), v)));
    push(traffic(text));
    push(messages(text));
    push(clients(text));
    push(access(text));
    for q in ["0", "1", "2"] {
        let v = sum_series(text, m::MESSAGES_RECEIVED_TOTAL, Some(("qos", q)));
        out.push((format!("messages.qos{q}.received"), v));
        let v = sum_series(text, m::MESSAGES_DELIVERED_TOTAL, Some(("qos", q)));
        out.push((format!("messages.qos{q}.sent"), v));
    }
    for t in RECEIVED_TYPES {
        let v = sum_series(text, m::PACKETS_RECEIVED_TOTAL, Some(("type", t)));
        out.push((format!("packets.{t}.received"), v));
    }
    for t in SENT_TYPES {
        let v = sum_series(text, m::PACKETS_SENT_TOTAL, Some(("type", t)));
        out.push((format!("packets.{t}.sent"), v));
    }
    out
}

/// Bytes and packets.
fn traffic(text: &str) -> Vec<Row> {
    let sum = |name: &str, label: Option<(&str, &str)>| sum_series(text, name, label);
    let connacks = sum(m::CONNACK_TOTAL, None);
    let auth_errors = CONNACK_AUTH
        .iter()
        .map(|r| sum(m::CONNACK_TOTAL, Some(("reason", r))))
        .sum();
    let denied = |action| sum(m::AUTHZ_DENIED_TOTAL, Some(("action", action)));
    vec![
        ("bytes.received", sum(m::BYTES_RECEIVED_TOTAL, None)),
        ("bytes.sent", sum(m::BYTES_SENT_TOTAL, None)),
        ("packets.received", sum(m::PACKETS_RECEIVED_TOTAL, None)),
        ("packets.sent", sum(m::PACKETS_SENT_TOTAL, None)),
        // Every CONNECT read is answered by one CONNACK, success or refusal.
        ("packets.connect.received", connacks),
        ("packets.connack.sent", connacks),
        (
            "packets.connack.error",
            connacks.saturating_sub(sum(m::CONNACK_TOTAL, Some(CONNACK_OK))),
        ),
        ("packets.connack.auth_error", auth_errors),
        ("packets.publish.auth_error", denied("publish")),
        ("packets.subscribe.auth_error", denied("subscribe")),
        (
            "packets.subscribe.error",
            sum(m::SUBSCRIBE_FAILURES_TOTAL, None),
        ),
        (
            "packets.unsubscribe.error",
            sum(m::UNSUBSCRIBE_FAILURES_TOTAL, None),
        ),
    ]
}

/// Messages routed, delivered and dropped.
fn messages(text: &str) -> Vec<Row> {
    let sum = |name: &str, label: Option<(&str, &str)>| sum_series(text, name, label);
    let dropped = |reason| sum(m::MESSAGES_DROPPED_TOTAL, Some(("reason", reason)));
    let delivered = sum(m::MESSAGES_DELIVERED_TOTAL, None);
    vec![
        ("messages.received", sum(m::MESSAGES_RECEIVED_TOTAL, None)),
        ("messages.sent", delivered),
        ("messages.delivered", delivered),
        ("messages.dropped", sum(m::MESSAGES_DROPPED_TOTAL, None)),
        ("messages.dropped.no_subscribers", dropped("no_subscribers")),
        ("messages.dropped.expired", dropped("expired")),
        (
            "messages.dropped.await_pubrel_timeout",
            sum(m::AWAITING_REL_EXPIRED_TOTAL, None),
        ),
        ("messages.forward", sum(m::MESSAGES_FORWARDED_TOTAL, None)),
        (
            "delivery.dropped.queue_full",
            dropped("queue_full") + dropped("node_queue_full"),
        ),
        (
            "delivery.dropped.too_large",
            dropped("too_large_for_client"),
        ),
    ]
}

/// Client life cycle and sessions.
fn clients(text: &str) -> Vec<Row> {
    let sum = |name: &str, label: Option<(&str, &str)>| sum_series(text, name, label);
    let connacks = sum(m::CONNACK_TOTAL, None);
    vec![
        ("client.connect", connacks),
        ("client.connack", connacks),
        ("client.connected", sum(m::CONNACK_TOTAL, Some(CONNACK_OK))),
        ("client.disconnected", sum(m::DISCONNECTS_TOTAL, None)),
        ("session.takenover", sum(m::TAKEOVERS_TOTAL, None)),
    ]
}

/// Authentication and authorization outcomes.
fn access(text: &str) -> Vec<Row> {
    let sum = |name: &str, label: Option<(&str, &str)>| sum_series(text, name, label);
    let authn = |result| sum(m::AUTHN_RESULTS_TOTAL, Some(("result", result)));
    let authz = |k, v| sum(m::AUTHZ_DECISIONS_TOTAL, Some((k, v)));
    let cache = |result| sum(m::AUTHZ_CACHE_TOTAL, Some(("result", result)));
    vec![
        ("client.authenticate", sum(m::AUTHN_RESULTS_TOTAL, None)),
        ("client.auth.anonymous", authn("success_anonymous")),
        (
            "authentication.success",
            authn("success") + authn("success_anonymous"),
        ),
        (
            "authentication.success.anonymous",
            authn("success_anonymous"),
        ),
        ("authentication.failure", authn("failure")),
        ("client.authorize", sum(m::AUTHZ_DECISIONS_TOTAL, None)),
        ("authorization.allow", authz("result", "allow")),
        ("authorization.deny", authz("result", "deny")),
        ("authorization.superuser", authz("source", "superuser")),
        ("authorization.nomatch", authz("source", "no_match")),
        ("authorization.cache_hit", cache("hit")),
        ("authorization.cache_miss", cache("miss")),
    ]
}

/// The sum of every series of counter `name` in the Prometheus text `text` (those with
/// `label` = value only, if given); 0 when there is none (a labelled counter has no series
/// before its first event). Values that do not parse count as 0.
pub fn sum_series(text: &str, name: &str, label: Option<(&str, &str)>) -> u64 {
    let want = label.map(|(k, v)| format!("{k}=\"{v}\""));
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
        if let Some(want) = &want {
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
meshmq_connack_total{reason=\"0x00\"} 4
meshmq_connack_total{reason=\"0x86\"} 1
meshmq_connack_total{reason=\"0x9c\"} 2
meshmq_authentication_results_total{result=\"success_anonymous\"} 4
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
    fn metrics_are_emqx_names() {
        let out = metrics(TEXT);
        let get = |k: &str| out.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        assert_eq!(get("messages.dropped"), Some(108));
        assert_eq!(get("messages.dropped.no_subscribers"), Some(5));
        assert_eq!(get("bytes.sent"), Some(1024));
        assert_eq!(get("packets.publish.received"), Some(2));
        assert_eq!(get("messages.qos1.received"), Some(0));
        assert_eq!(get("packets.connect.received"), Some(7));
        assert_eq!(get("client.connected"), Some(4));
        assert_eq!(get("packets.connack.error"), Some(3));
        assert_eq!(get("packets.connack.auth_error"), Some(1));
        assert_eq!(get("authentication.success"), Some(4));
        assert_eq!(get("authentication.success.anonymous"), Some(4));
        let mut names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "every name once");
    }
}
