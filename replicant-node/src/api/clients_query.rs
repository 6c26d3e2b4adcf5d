//! The clients of this node as the REST API shows them: the query's filters (EMQX's names),
//! the JSON of one client, and the node-local selection (sorted by client id, then cut to
//! `offset`/`limit`).
//!
//! Reads sessions under their own locks, one at a time and briefly; never holds the session
//! map's lock while locking a session. A session that is ending, or leaving for another
//! node that claimed its client id, is not shown (its new node shows it).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::{MAX_FILTER_LEN, bad, boolean, rfc3339_ms};
use crate::ctx::Ctx;
use crate::http::api::ApiError;
use crate::sessions::{Leaving, SessionSlot};

/// Most exact `clientid` / `username` values in one query.
pub const MAX_EXACT: usize = 100;

/// The filters of a clients query (all must hold).
#[derive(Debug, Default, Clone)]
pub struct ClientFilter {
    /// Exact client ids (any of them).
    pub clientid: Vec<String>,
    /// Exact usernames (any of them).
    pub username: Vec<String>,
    /// The client's address.
    pub ip_address: Option<IpAddr>,
    /// Connected (true) or not.
    pub connected: Option<bool>,
    /// Clean Start of the latest connection.
    pub clean_start: Option<bool>,
    /// Protocol level (3, 4, 5).
    pub proto_ver: Option<u8>,
    /// A substring of the client id.
    pub like_clientid: Option<String>,
    /// A substring of the username.
    pub like_username: Option<String>,
    /// Bounds on the session's creation, unix ms (inclusive).
    pub created_at: (Option<u64>, Option<u64>),
    /// Bounds on the latest connection's time, unix ms (inclusive).
    pub connected_at: (Option<u64>, Option<u64>),
    /// Only this node (cluster-wide lists).
    pub node: Option<String>,
}

/// A time filter: unix milliseconds or RFC 3339 text (as EMQX takes them).
fn time(name: &str, v: &str) -> Result<u64, ApiError> {
    if let Ok(ms) = v.parse::<u64>() {
        return Ok(ms);
    }
    crate::banned::rfc3339::parse(v)
        .map(|s| s.saturating_mul(1000))
        .ok_or_else(|| {
            bad(
                "clients",
                format!("{name} must be unix ms or RFC 3339 text"),
            )
        })
}

impl ClientFilter {
    /// Reads one query pair; false when `key` is not a filter of this query.
    pub fn take(&mut self, key: &str, v: &str) -> Result<bool, ApiError> {
        if v.len() > MAX_FILTER_LEN {
            return Err(bad(
                "clients",
                format!("{key} is longer than {MAX_FILTER_LEN} bytes"),
            ));
        }
        match key {
            "clientid" | "username" => {
                let list = if key == "clientid" {
                    &mut self.clientid
                } else {
                    &mut self.username
                };
                if list.len() >= MAX_EXACT {
                    return Err(bad("clients", format!("at most {MAX_EXACT} {key} values")));
                }
                list.push(v.to_owned());
            }
            "ip_address" => {
                let ip = v
                    .parse::<IpAddr>()
                    .map_err(|_| bad("clients", "ip_address is not an IP address"))?;
                self.ip_address = Some(ip.to_canonical());
            }
            "conn_state" => {
                self.connected = Some(match v {
                    "connected" => true,
                    "disconnected" => false,
                    _ => {
                        return Err(bad(
                            "clients",
                            "conn_state must be connected or disconnected",
                        ));
                    }
                });
            }
            "clean_start" => self.clean_start = boolean("clients", key, Some(v))?,
            "proto_ver" => {
                let ver = v.parse::<u8>().ok().filter(|p| (3..=5).contains(p));
                self.proto_ver =
                    Some(ver.ok_or_else(|| bad("clients", "proto_ver must be 3, 4 or 5"))?);
            }
            "proto_name" if v.eq_ignore_ascii_case("MQTT") => {}
            "proto_name" => return Err(bad("clients", "proto_name: only MQTT is served")),
            "like_clientid" => self.like_clientid = Some(v.to_owned()),
            "like_username" => self.like_username = Some(v.to_owned()),
            "gte_created_at" => self.created_at.0 = Some(time(key, v)?),
            "lte_created_at" => self.created_at.1 = Some(time(key, v)?),
            "gte_connected_at" => self.connected_at.0 = Some(time(key, v)?),
            "lte_connected_at" => self.connected_at.1 = Some(time(key, v)?),
            "node" => self.node = Some(v.to_owned()),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Whether a client id passes the client-id filters (checked without the session).
    pub fn id_matches(&self, id: &str) -> bool {
        (self.clientid.is_empty() || self.clientid.iter().any(|c| c == id))
            && self.like_clientid.as_deref().is_none_or(|l| id.contains(l))
    }

    /// Whether a session passes every other filter (under its lock).
    fn slot_matches(&self, slot: &SessionSlot, v: &SlotView) -> bool {
        let within = |t: u64, (lo, hi): (Option<u64>, Option<u64>)| {
            lo.is_none_or(|lo| t >= lo) && hi.is_none_or(|hi| t <= hi)
        };
        let user = v.username.as_deref();
        (self.username.is_empty() || user.is_some_and(|u| self.username.iter().any(|x| x == u)))
            && self
                .like_username
                .as_deref()
                .is_none_or(|l| user.is_some_and(|u| u.contains(l)))
            && self.ip_address.is_none_or(|ip| v.ip == Some(ip))
            && self.connected.is_none_or(|c| c == v.connected)
            && self.clean_start.is_none_or(|c| c == v.clean_start)
            && self.proto_ver.is_none_or(|p| p == v.proto_ver)
            && within(slot.created_at_ms, self.created_at)
            && (self.connected_at == (None, None) || within(v.connected_at_ms, self.connected_at))
    }
}

/// What the filters read of a session.
struct SlotView {
    username: Option<Arc<str>>,
    ip: Option<IpAddr>,
    connected: bool,
    clean_start: bool,
    proto_ver: u8,
    connected_at_ms: u64,
}

/// The filter view of a live session (`None`: ended or leaving).
fn view(slot: &SessionSlot) -> Option<SlotView> {
    let inner = slot.inner.lock();
    if inner.ended || inner.leaving != Leaving::No {
        return None;
    }
    let info = inner.conn_info.as_deref();
    Some(SlotView {
        username: info.and_then(|i| i.username.clone()),
        ip: info.map(|i| i.peer.ip().to_canonical()),
        connected: inner.owner.is_some(),
        clean_start: info.is_some_and(|i| i.clean_start),
        proto_ver: info.map_or_else(|| inner.session.version().level(), |i| i.proto_ver),
        connected_at_ms: info.map_or(0, |i| i.connected_at_ms),
    })
}

/// This node's sessions that pass `f`, sorted by client id.
pub fn select(ctx: &Ctx, f: &ClientFilter) -> Vec<Arc<SessionSlot>> {
    let mut slots = ctx.local.sessions.select(|id| f.id_matches(id));
    slots.retain(|s| view(s).is_some_and(|v| f.slot_matches(s, &v)));
    slots.sort_unstable_by(|a, b| a.client_id.cmp(&b.client_id));
    slots
}

/// A bound as EMQX writes it: a number, or `"infinity"` for none (0).
fn bound(n: usize) -> Value {
    if n == 0 {
        Value::from("infinity")
    } else {
        Value::from(n)
    }
}

/// The client of `slot` as EMQX's API shows it (`None` once the session ended or left).
pub fn client_json(ctx: &Ctx, slot: &SessionSlot) -> Option<Value> {
    let (queued, _) = slot.mailbox.usage();
    let inner = slot.inner.lock();
    if inner.ended || inner.leaving != Leaving::No {
        return None;
    }
    let s = &inner.session;
    let info = inner.conn_info.clone();
    let connected = inner.owner.is_some();
    let limits = s.limits();
    let mut v = json!({
        "clientid": &*slot.client_id,
        "node": ctx.node(),
        "connected": connected,
        "proto_name": "MQTT",
        "proto_ver": info.as_ref().map_or_else(|| s.version().level(), |i| i.proto_ver),
        "expiry_interval": inner.expiry_secs,
        "created_at": rfc3339_ms(slot.created_at_ms),
        "subscriptions_cnt": s.subscriptions.len(),
        "subscriptions_max": bound(ctx.runtime.current().config.mqtt.max_subscriptions),
        "inflight_cnt": s.inflight_len(),
        "inflight_max": s.inflight_max(),
        "mqueue_len": s.pending_len() + queued,
        "mqueue_max": limits.max_queue,
        "mqueue_dropped": slot.stats.mqueue_dropped.load(Ordering::Relaxed),
        "awaiting_rel_cnt": s.awaiting_rel_len(),
        "awaiting_rel_max": limits.max_awaiting_rel,
        "recv_msg": slot.stats.recv_msg.load(Ordering::Relaxed),
        "send_msg": slot.stats.send_msg.load(Ordering::Relaxed),
        "is_bridge": false,
    });
    let disconnected_at = inner.disconnected_at_ms;
    drop(inner);
    if let (Value::Object(o), Some(i)) = (&mut v, info) {
        o.insert(
            "username".into(),
            i.username.as_deref().map_or(Value::Null, Value::from),
        );
        o.insert(
            "ip_address".into(),
            i.peer.ip().to_canonical().to_string().into(),
        );
        o.insert("port".into(), i.peer.port().into());
        o.insert("keepalive".into(), i.keepalive.into());
        o.insert("clean_start".into(), i.clean_start.into());
        o.insert("connected_at".into(), rfc3339_ms(i.connected_at_ms).into());
        o.insert("listener".into(), i.listener.to_string().into());
    }
    if let Value::Object(o) = &mut v
        && !connected
        && disconnected_at > 0
    {
        o.insert("disconnected_at".into(), rfc3339_ms(disconnected_at).into());
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_emqx_names_and_refuse_bad_values() {
        let mut f = ClientFilter::default();
        for (k, v) in [
            ("clientid", "a"),
            ("like_username", "sen"),
            ("conn_state", "connected"),
            ("proto_ver", "5"),
            ("ip_address", "::ffff:127.0.0.1"),
            ("gte_connected_at", "1970-01-01T00:00:01Z"),
        ] {
            assert_eq!(f.take(k, v).ok(), Some(true), "{k}");
        }
        assert_eq!(f.ip_address, Some("127.0.0.1".parse().expect("ip")));
        assert_eq!(f.connected_at.0, Some(1000));
        assert!(f.id_matches("a") && !f.id_matches("b"));
        assert_eq!(f.take("page", "1").ok(), Some(false));
        for (k, v) in [
            ("conn_state", "idle"),
            ("proto_ver", "6"),
            ("ip_address", "x"),
            ("clean_start", "yes"),
            ("gte_created_at", "yesterday"),
            ("proto_name", "CoAP"),
        ] {
            assert!(f.take(k, v).is_err(), "{k}={v}");
        }
        let long = "x".repeat(MAX_FILTER_LEN + 1);
        assert!(f.take("like_clientid", &long).is_err());
    }
}
