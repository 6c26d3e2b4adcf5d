//! What a trace is: its name, what it matches (a client id, a topic filter or an IP
//! address), its window and how payloads are written; how the API's create body becomes
//! one ([`TraceSpec::from_request`]) and how it is shown (EMQX's JSON shape).
//!
//! Pure: no clock of its own (callers pass `now`, unix seconds), no I/O.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::banned::rfc3339;

/// Longest trace name (EMQX's bound).
pub const MAX_NAME: usize = 256;
/// Longest client id or topic filter a trace matches.
pub const MAX_MATCH: usize = 65_535;
/// A trace without `end_at` ends this long after its start (EMQX's default).
pub const DEFAULT_LENGTH_SECS: u64 = 10 * 60;
/// Bytes of a payload written into a trace line (EMQX's `payload_limit` default).
pub const PAYLOAD_LIMIT: usize = 1024;

/// What a trace matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum TraceFilter {
    /// Every event of the client with this id.
    Clientid(String),
    /// Publishes whose topic matches this filter, subscriptions to filters it covers.
    Topic(String),
    /// Every event of clients connected from this address.
    IpAddress(IpAddr),
}

impl TraceFilter {
    /// EMQX's `type` label.
    pub fn type_label(&self) -> &'static str {
        match self {
            TraceFilter::Clientid(_) => "clientid",
            TraceFilter::Topic(_) => "topic",
            TraceFilter::IpAddress(_) => "ip_address",
        }
    }

    /// The matched value as text.
    pub fn value(&self) -> String {
        match self {
            TraceFilter::Clientid(s) | TraceFilter::Topic(s) => s.clone(),
            TraceFilter::IpAddress(ip) => ip.to_string(),
        }
    }
}

/// How payloads are written into trace lines (EMQX's `payload_encode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayloadEncode {
    /// As text (invalid UTF-8 replaced), escaped, at most [`PAYLOAD_LIMIT`] bytes.
    Text,
    /// As hex, at most [`PAYLOAD_LIMIT`] bytes.
    Hex,
    /// Not written (`******`): the default here, as payloads may carry secrets.
    #[default]
    Hidden,
}

/// A trace definition, as stored cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceSpec {
    /// Unique name: ASCII letters, digits, `-` and `_`, 1 to [`MAX_NAME`] bytes.
    pub name: String,
    /// What it matches.
    pub filter: TraceFilter,
    /// Unix seconds the recording starts.
    pub start_at: u64,
    /// Unix seconds it ends.
    pub end_at: u64,
    /// How payloads are written.
    pub payload_encode: PayloadEncode,
    /// Unix seconds it was stopped through the API, if it was.
    pub stopped_at: Option<u64>,
    /// Unix milliseconds it was created: tells a trace from an older one of the same name.
    pub created_ms: u64,
}

/// Where a trace stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Before its start.
    Waiting,
    /// Recording.
    Running,
    /// Stopped, or past its end.
    Stopped,
}

impl Status {
    /// EMQX's label.
    pub fn label(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

/// The `POST /api/v5/trace` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Unique name.
    pub name: String,
    /// `clientid`, `topic` or `ip_address`.
    #[serde(rename = "type")]
    pub kind: String,
    /// With `type = clientid`.
    pub clientid: Option<String>,
    /// With `type = topic`.
    pub topic: Option<String>,
    /// With `type = ip_address`.
    pub ip_address: Option<String>,
    /// Unix seconds or RFC 3339 text; default now.
    #[schema(value_type = Option<String>)]
    pub start_at: Option<Value>,
    /// Unix seconds or RFC 3339 text; default 10 minutes after the start.
    #[schema(value_type = Option<String>)]
    pub end_at: Option<Value>,
    /// `text`, `hex` or `hidden` (default).
    pub payload_encode: Option<PayloadEncode>,
    /// Accepted for EMQX compatibility (`debug` only).
    pub formatter: Option<String>,
}

/// Whether `name` is a valid trace name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A time field: unix seconds or RFC 3339 text.
fn time_field(name: &str, v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("{name} must be unix seconds or RFC 3339 text")),
        Value::String(s) => s
            .parse::<u64>()
            .ok()
            .or_else(|| rfc3339::parse(s))
            .ok_or_else(|| format!("{name} is not an RFC 3339 time or unix seconds")),
        _ => Err(format!("{name} must be unix seconds or RFC 3339 text")),
    }
}

impl TraceSpec {
    /// A definition from the create body at `now` (unix seconds; `now_ms` for `created_ms`);
    /// the error is the 400 message.
    pub fn from_request(r: CreateRequest, now: u64, now_ms: u64) -> Result<TraceSpec, String> {
        if !valid_name(&r.name) {
            return Err(format!(
                "name must be 1 to {MAX_NAME} ASCII letters, digits, '-' or '_'"
            ));
        }
        if r.formatter.as_deref().is_some_and(|f| f != "text") {
            return Err("formatter: only text is supported".into());
        }
        let given = [&r.clientid, &r.topic, &r.ip_address]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if given > 1 {
            return Err("give only the field named by type".into());
        }
        let filter = match (r.kind.as_str(), r.clientid, r.topic, r.ip_address) {
            ("clientid", Some(c), None, None) if !c.is_empty() && c.len() <= MAX_MATCH => {
                TraceFilter::Clientid(c)
            }
            ("topic", None, Some(t), None) => {
                meshmq_shared::topic::validate_topic_filter(&t)
                    .map_err(|_| "topic is not a valid topic filter".to_string())?;
                TraceFilter::Topic(t)
            }
            ("ip_address", None, None, Some(ip)) => TraceFilter::IpAddress(
                ip.parse()
                    .map_err(|_| "ip_address is not an IP address".to_string())?,
            ),
            ("clientid" | "topic" | "ip_address", ..) => {
                return Err(format!("type {} needs a non-empty `{}`", r.kind, r.kind));
            }
            _ => return Err("type must be clientid, topic or ip_address".into()),
        };
        let start_at = match &r.start_at {
            Some(v) => time_field("start_at", v)?.max(now),
            None => now,
        };
        let end_at = match &r.end_at {
            Some(v) => time_field("end_at", v)?,
            None => start_at.saturating_add(DEFAULT_LENGTH_SECS),
        };
        if end_at <= now {
            return Err("end_at time has already passed".into());
        }
        if end_at <= start_at {
            return Err("end_at must be after start_at".into());
        }
        if end_at > meshmq_shared::tables::banned::MAX_TIME {
            return Err("end_at is after the year 9999".into());
        }
        Ok(TraceSpec {
            name: r.name,
            filter,
            start_at,
            end_at,
            payload_encode: r.payload_encode.unwrap_or_default(),
            stopped_at: None,
            created_ms: now_ms,
        })
    }

    /// Where it stands at `now`.
    pub fn status(&self, now: u64) -> Status {
        if self.stopped_at.is_some() || now >= self.end_at {
            Status::Stopped
        } else if now < self.start_at {
            Status::Waiting
        } else {
            Status::Running
        }
    }

    /// When it finished (stopped, or its end), if it has by `now`.
    pub fn finished_at(&self, now: u64) -> Option<u64> {
        match self.stopped_at {
            Some(s) => Some(s.min(self.end_at)),
            None => (now >= self.end_at).then_some(self.end_at),
        }
    }

    /// As the API shows it, with `log_size` (node → bytes).
    pub fn to_json(&self, now: u64, log_size: Value) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": self.filter.type_label(),
            "status": self.status(now).label(),
            "start_at": rfc3339::format(self.start_at),
            "end_at": rfc3339::format(self.end_at),
            "payload_encode": self.payload_encode,
            "formatter": "text",
            "log_size": log_size,
        });
        v[self.filter.type_label()] = Value::String(self.filter.value());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: Value) -> CreateRequest {
        serde_json::from_value(body).expect("body")
    }

    #[test]
    fn create_body_defaults_and_errors() {
        let now = 1_800_000_000;
        let t = TraceSpec::from_request(
            req(json!({"name": "t1", "type": "clientid", "clientid": "c1"})),
            now,
            1,
        )
        .expect("valid");
        assert_eq!((t.start_at, t.end_at), (now, now + DEFAULT_LENGTH_SECS));
        assert_eq!(t.payload_encode, PayloadEncode::Hidden);
        assert_eq!(t.status(now), Status::Running);
        assert_eq!(t.status(now + DEFAULT_LENGTH_SECS), Status::Stopped);
        let later = TraceSpec::from_request(
            req(
                json!({"name": "t2", "type": "ip_address", "ip_address": "10.0.0.1",
                "start_at": "2027-01-16T08:00:00Z", "end_at": 1_900_000_000u64}),
            ),
            now,
            1,
        )
        .expect("valid");
        assert_eq!(later.status(now), Status::Waiting);
        for (body, wanted) in [
            (
                json!({"name": "a b", "type": "clientid", "clientid": "c"}),
                "name",
            ),
            (
                json!({"name": "t", "type": "user", "clientid": "c"}),
                "type must be",
            ),
            (
                json!({"name": "t", "type": "topic"}),
                "needs a non-empty `topic`",
            ),
            (
                json!({"name": "t", "type": "topic", "topic": "a/#/b"}),
                "valid topic filter",
            ),
            (
                json!({"name": "t", "type": "ip_address", "ip_address": "x"}),
                "IP address",
            ),
            (
                json!({"name": "t", "type": "clientid", "clientid": "c", "end_at": 5}),
                "passed",
            ),
            (
                json!({"name": "t", "type": "clientid", "clientid": "c", "topic": "a"}),
                "only",
            ),
        ] {
            let e = TraceSpec::from_request(req(body.clone()), now, 1).expect_err("invalid");
            assert!(e.contains(wanted), "{body}: {e}");
        }
    }
}
