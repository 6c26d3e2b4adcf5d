//! The events a trace records and their one-line text form:
//!
//! ```text
//! 2026-12-03T16:21:54.123456Z node=r1 clientid="c1" peer=127.0.0.1 event=publish_in topic="a/b" qos=1 size=5 retain=false payload=******
//! ```
//!
//! Strings are written escaped and quoted (a client id or topic with a line break stays on
//! its line), cut at [`TEXT_LIMIT`] bytes (then `<key>_omitted_bytes=N` follows); payloads
//! only as the trace's `payload_encode` says, cut at [`PAYLOAD_LIMIT`] bytes.

use std::fmt::Write as _;

use super::Subject;
use super::spec::{PAYLOAD_LIMIT, PayloadEncode};

/// The most of a client id, user name, topic or filter a line holds, in bytes (a client
/// may send 64 KiB of each; a trace line stays small).
pub const TEXT_LIMIT: usize = 1024;

/// Writes ` key="s"` escaped, cut at [`TEXT_LIMIT`] bytes (on a character boundary), and
/// ` key_omitted_bytes=N` when cut.
fn text(l: &mut String, key: &str, s: &str) -> std::fmt::Result {
    let mut end = s.len().min(TEXT_LIMIT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    write!(l, " {key}={:?}", &s[..end])?;
    if end < s.len() {
        write!(l, " {key}_omitted_bytes={}", s.len() - end)?;
    }
    Ok(())
}

/// Something that happened to a traced client.
#[derive(Debug)]
pub enum Event<'a> {
    /// CONNECT received (and valid).
    Connect {
        /// User name, if any.
        username: Option<&'a str>,
        /// `3.1`, `3.1.1` or `5.0`.
        proto: &'static str,
        /// Keep-alive in seconds.
        keepalive: u16,
        /// Clean start / clean session.
        clean_start: bool,
    },
    /// CONNACK sent (or the refusal).
    Connack {
        /// The reason code (5.0 numbering).
        reason: u8,
        /// Session present.
        session_present: bool,
    },
    /// The session came from another node (taken over, with its queued messages).
    SessionTakeover {
        /// The node that held it.
        from: &'a str,
    },
    /// SUBSCRIBE filter.
    Subscribe {
        /// The filter.
        filter: &'a str,
        /// Requested QoS.
        qos: u8,
    },
    /// UNSUBSCRIBE filter.
    Unsubscribe {
        /// The filter.
        filter: &'a str,
    },
    /// PUBLISH from the client.
    PublishIn {
        /// Topic.
        topic: &'a str,
        /// QoS.
        qos: u8,
        /// Payload bytes.
        payload: &'a [u8],
        /// Retain flag.
        retain: bool,
    },
    /// PUBLISH to the client.
    PublishOut {
        /// Topic.
        topic: &'a str,
        /// QoS.
        qos: u8,
        /// Payload bytes.
        payload: &'a [u8],
        /// Retain flag.
        retain: bool,
    },
    /// A PUBLISH from the client that authorization refused.
    PublishDenied {
        /// Topic.
        topic: &'a str,
    },
    /// Messages for the client dropped.
    Dropped {
        /// Why (`queue_full`, `expired`, `too_large_for_client`, ...).
        reason: &'static str,
        /// How many.
        count: u64,
    },
    /// The connection ended.
    Disconnect {
        /// Why (`client`, `socket_closed`, `server`, `taken_over`, `banned`, `shutdown`).
        by: &'static str,
        /// The reason code, when one was sent or received.
        reason: Option<u8>,
    },
}

impl Event<'_> {
    /// The event's name in the line.
    fn name(&self) -> &'static str {
        match self {
            Event::Connect { .. } => "connect",
            Event::Connack { .. } => "connack",
            Event::SessionTakeover { .. } => "session_takeover",
            Event::Subscribe { .. } => "subscribe",
            Event::Unsubscribe { .. } => "unsubscribe",
            Event::PublishIn { .. } => "publish_in",
            Event::PublishOut { .. } => "publish_out",
            Event::PublishDenied { .. } => "publish_denied",
            Event::Dropped { .. } => "dropped",
            Event::Disconnect { .. } => "disconnect",
        }
    }

    /// The topic or filter the event is about (what a topic trace matches).
    pub fn topic(&self) -> Option<&str> {
        match self {
            Event::Subscribe { filter, .. } | Event::Unsubscribe { filter } => Some(filter),
            Event::PublishIn { topic, .. }
            | Event::PublishOut { topic, .. }
            | Event::PublishDenied { topic } => Some(topic),
            _ => None,
        }
    }

    /// The line (with its `\n`) at time `ts` on `node`.
    pub fn line(&self, ts: &str, node: &str, who: Subject<'_>, enc: PayloadEncode) -> String {
        let mut l = String::with_capacity(160);
        let _ = write!(l, "{ts} node={node:?}");
        let _ = text(&mut l, "clientid", who.client_id);
        let _ = write!(l, " peer={} event={}", who.ip, self.name());
        let _ = self.fields(&mut l, enc);
        l.push('\n');
        l
    }

    fn fields(&self, l: &mut String, enc: PayloadEncode) -> std::fmt::Result {
        match self {
            Event::Connect {
                username,
                proto,
                keepalive,
                clean_start,
            } => {
                text(l, "username", username.unwrap_or(""))?;
                write!(
                    l,
                    " proto={proto} keepalive={keepalive} clean_start={clean_start}"
                )
            }
            Event::Connack {
                reason,
                session_present,
            } => write!(
                l,
                " reason=0x{reason:02x} session_present={session_present}"
            ),
            Event::SessionTakeover { from } => text(l, "from", from),
            Event::Subscribe { filter, qos } => {
                text(l, "filter", filter)?;
                write!(l, " qos={qos}")
            }
            Event::Unsubscribe { filter } => text(l, "filter", filter),
            Event::PublishIn {
                topic,
                qos,
                payload,
                retain,
            }
            | Event::PublishOut {
                topic,
                qos,
                payload,
                retain,
            } => {
                text(l, "topic", topic)?;
                write!(
                    l,
                    " qos={qos} size={} retain={retain} payload=",
                    payload.len()
                )?;
                write_payload(l, payload, enc)
            }
            Event::PublishDenied { topic } => text(l, "topic", topic),
            Event::Dropped { reason, count } => write!(l, " reason={reason} count={count}"),
            Event::Disconnect { by, reason } => match reason {
                Some(r) => write!(l, " by={by} reason=0x{r:02x}"),
                None => write!(l, " by={by}"),
            },
        }
    }
}

/// The payload as `enc` says, cut at [`PAYLOAD_LIMIT`] bytes.
fn write_payload(l: &mut String, payload: &[u8], enc: PayloadEncode) -> std::fmt::Result {
    let cut = &payload[..payload.len().min(PAYLOAD_LIMIT)];
    match enc {
        PayloadEncode::Hidden => l.write_str("******"),
        PayloadEncode::Text => write!(l, "{:?}", String::from_utf8_lossy(cut)),
        PayloadEncode::Hex => {
            for b in cut {
                write!(l, "{b:02x}")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_with_escaped_strings_and_payload_as_asked() {
        let who = Subject {
            client_id: "c\n1",
            ip: "10.0.0.1".parse().expect("ip"),
        };
        let e = Event::PublishIn {
            topic: "a/b",
            qos: 1,
            payload: b"s3cret\n",
            retain: false,
        };
        let hidden = e.line("T", "r1", who, PayloadEncode::Hidden);
        assert_eq!(
            hidden,
            "T node=\"r1\" clientid=\"c\\n1\" peer=10.0.0.1 event=publish_in topic=\"a/b\" qos=1 size=7 retain=false payload=******\n"
        );
        assert!(
            e.line("T", "r1", who, PayloadEncode::Text)
                .contains("payload=\"s3cret\\n\"")
        );
        assert!(
            e.line("T", "r1", who, PayloadEncode::Hex)
                .ends_with("payload=7333637265740a\n")
        );
        let long = format!("{}é{}", "t".repeat(TEXT_LIMIT - 1), "x".repeat(70_000));
        let big = Event::PublishDenied { topic: &long };
        let line = big.line("T", "r1", who, PayloadEncode::Hidden);
        assert!(line.len() < 2 * TEXT_LIMIT, "{}", line.len());
        assert!(
            line.ends_with(&format!(
                "\" topic_omitted_bytes={}\n",
                long.len() - (TEXT_LIMIT - 1)
            )),
            "cut before the two-byte character: {}",
            &line[line.len() - 60..]
        );
        let d = Event::Disconnect {
            by: "client",
            reason: Some(0),
        };
        assert!(
            d.line("T", "r1", who, PayloadEncode::Hidden)
                .ends_with("event=disconnect by=client reason=0x00\n")
        );
    }
}
