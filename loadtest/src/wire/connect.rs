//! The session packets of the emqtt-bench-style subcommands: CONNECT with every option they
//! take (clean start, keep-alive, credentials, MQTT 5 session expiry), CONNACK and
//! DISCONNECT read with the MQTT 5 properties that matter to a load generator (Server
//! Reference for redirects, Reason String for error reports).
//!
//! Pure and synchronous. It must never panic on what a broker sends: every property is
//! bounds-checked and an unknown one is a [`WireError`].

use super::{FrameHeader, MqttVersion, WireError, frame, kind, put_str, read_u16, read_varint};

/// Everything a CONNECT carries (no will).
#[derive(Debug, Clone, Copy)]
pub struct ConnectSpec<'a> {
    /// Protocol level and name.
    pub version: MqttVersion,
    /// Client identifier.
    pub client_id: &'a str,
    /// Keep-alive, seconds (0 = off).
    pub keep_alive: u16,
    /// Clean Start (5.0) / Clean Session (3.x).
    pub clean_start: bool,
    /// MQTT 5 Session Expiry Interval property, seconds; ignored before 5.0.
    pub session_expiry: Option<u32>,
    /// User name, if any.
    pub username: Option<&'a str>,
    /// Password, if any.
    pub password: Option<&'a str>,
}

/// Encodes a CONNECT packet for `spec`.
pub fn encode_connect_spec(spec: &ConnectSpec<'_>) -> Result<Vec<u8>, WireError> {
    let mut body = Vec::with_capacity(32 + spec.client_id.len());
    put_str(&mut body, spec.version.protocol_name())?;
    body.push(spec.version.level());
    let mut flags = 0u8;
    if spec.clean_start {
        flags |= 0x02;
    }
    if spec.username.is_some() {
        flags |= 0x80;
    }
    if spec.password.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&spec.keep_alive.to_be_bytes());
    if spec.version.is_v5() {
        match spec.session_expiry {
            Some(secs) => {
                body.push(5);
                body.push(0x11);
                body.extend_from_slice(&secs.to_be_bytes());
            }
            None => body.push(0),
        }
    }
    put_str(&mut body, spec.client_id)?;
    if let Some(user) = spec.username {
        put_str(&mut body, user)?;
    }
    if let Some(password) = spec.password {
        put_str(&mut body, password)?;
    }
    Ok(frame(0x10, &body))
}

/// A CONNACK as read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connack {
    /// The Session Present flag.
    pub session_present: bool,
    /// Return code (3.x) or reason code (5.0); 0 is success.
    pub code: u8,
    /// MQTT 5 Server Reference property (where to go instead), if sent.
    pub server_reference: Option<String>,
    /// MQTT 5 Reason String property, if sent.
    pub reason_string: Option<String>,
}

/// A DISCONNECT sent by the broker, as read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Reason code (0 before 5.0 or when absent).
    pub code: u8,
    /// MQTT 5 Server Reference property, if sent.
    pub server_reference: Option<String>,
    /// MQTT 5 Reason String property, if sent.
    pub reason_string: Option<String>,
}

/// The properties this reader keeps from a property block.
#[derive(Debug, Default)]
struct Props {
    server_reference: Option<String>,
    reason_string: Option<String>,
}

/// Reads a CONNACK (any reason code: the caller decides what a refusal means).
pub fn parse_connack(
    version: MqttVersion,
    header: &FrameHeader,
    body: &[u8],
) -> Result<Connack, WireError> {
    if header.kind() != kind::CONNACK {
        return Err(WireError::Unexpected {
            expected: "CONNACK",
            got: header.kind(),
        });
    }
    let (flags, code) = match body {
        [flags, code, ..] => (*flags, *code),
        _ => return Err(WireError::Truncated("CONNACK")),
    };
    let props = if version.is_v5() && body.len() > 2 {
        read_props(body, 2)?
    } else {
        Props::default()
    };
    Ok(Connack {
        session_present: flags & 1 == 1,
        code,
        server_reference: props.server_reference,
        reason_string: props.reason_string,
    })
}

/// Reads the body of a DISCONNECT sent by the broker.
pub fn parse_disconnect(version: MqttVersion, body: &[u8]) -> Result<Disconnect, WireError> {
    if !version.is_v5() || body.is_empty() {
        return Ok(Disconnect::default());
    }
    let props = if body.len() > 1 {
        read_props(body, 1)?
    } else {
        Props::default()
    };
    Ok(Disconnect {
        code: body[0],
        server_reference: props.server_reference,
        reason_string: props.reason_string,
    })
}

fn read_string(body: &[u8], pos: usize) -> Result<(String, usize), WireError> {
    let len = usize::from(read_u16(body, pos, "property string")?);
    let bytes = body
        .get(pos + 2..pos + 2 + len)
        .ok_or(WireError::Truncated("property string"))?;
    let text = std::str::from_utf8(bytes).map_err(|_| WireError::BadUtf8)?;
    Ok((text.to_owned(), 2 + len))
}

/// Reads the property block starting at `pos` (its length varint first).
fn read_props(body: &[u8], pos: usize) -> Result<Props, WireError> {
    let (len, used) = read_varint(body, pos, "properties")?;
    let start = pos + used;
    let end = start + len;
    if body.len() < end {
        return Err(WireError::Truncated("properties"));
    }
    let block = &body[..end];
    let mut props = Props::default();
    let mut at = start;
    while at < end {
        let id = block[at];
        at += 1;
        let size = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x13 | 0x21 | 0x22 | 0x23 => 2,
            0x02 | 0x11 | 0x18 | 0x27 => 4,
            0x0B => read_varint(block, at, "property varint")?.1,
            0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => {
                let (text, size) = read_string(block, at)?;
                match id {
                    0x1C => props.server_reference = Some(text),
                    0x1F => props.reason_string = Some(text),
                    _ => {}
                }
                size
            }
            0x09 | 0x16 => 2 + usize::from(read_u16(block, at, "property binary")?),
            0x26 => {
                let (_, k) = read_string(block, at)?;
                let (_, v) = read_string(block, at + k)?;
                k + v
            }
            other => return Err(WireError::UnknownProperty(other)),
        };
        at += size;
    }
    if at != end {
        return Err(WireError::Truncated("properties"));
    }
    Ok(props)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::super::parse_header;
    use super::*;

    fn split(frame: &[u8]) -> (FrameHeader, &[u8]) {
        let h = parse_header(frame).unwrap().unwrap();
        (h, &frame[h.header_len..h.frame_len()])
    }

    #[test]
    fn connect_with_every_option() {
        let spec = ConnectSpec {
            version: MqttVersion::V5,
            client_id: "c",
            keep_alive: 60,
            clean_start: false,
            session_expiry: Some(300),
            username: Some("u"),
            password: Some("p"),
        };
        let bytes = encode_connect_spec(&spec).unwrap();
        let (h, body) = split(&bytes);
        assert_eq!(h.kind(), 1);
        assert_eq!(&body[..7], &[0, 4, b'M', b'Q', b'T', b'T', 5]);
        assert_eq!(body[7], 0xc0, "user + password, no clean start");
        assert_eq!(&body[8..10], &[0, 60]);
        assert_eq!(&body[10..16], &[5, 0x11, 0, 0, 1, 44]);
        assert_eq!(&body[16..], &[0, 1, b'c', 0, 1, b'u', 0, 1, b'p']);
        let v31 = ConnectSpec {
            version: MqttVersion::V31,
            session_expiry: None,
            username: None,
            password: None,
            clean_start: true,
            ..spec
        };
        let bytes = encode_connect_spec(&v31).unwrap();
        let (_, body) = split(&bytes);
        assert_eq!(
            &body[..10],
            &[0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 2]
        );
    }

    #[test]
    fn connack_with_server_reference() {
        // 0x9C, properties: Server Reference "127.0.0.1:1884", Reason String "go".
        let mut body = vec![0x00, 0x9c];
        let mut props = vec![0x1c, 0, 14];
        props.extend_from_slice(b"127.0.0.1:1884");
        props.extend_from_slice(&[0x1f, 0, 2, b'g', b'o', 0x21, 0, 10]);
        body.push(props.len() as u8);
        body.extend_from_slice(&props);
        let bytes = frame(0x20, &body);
        let (h, b) = split(&bytes);
        let ack = parse_connack(MqttVersion::V5, &h, b).unwrap();
        assert_eq!(ack.code, 0x9c);
        assert_eq!(ack.server_reference.as_deref(), Some("127.0.0.1:1884"));
        assert_eq!(ack.reason_string.as_deref(), Some("go"));
        let plain = [0x20, 2, 1, 0];
        let (h, b) = split(&plain);
        let ack = parse_connack(MqttVersion::V311, &h, b).unwrap();
        assert!(ack.session_present && ack.code == 0);
    }

    #[test]
    fn disconnect_forms_and_garbage() {
        assert_eq!(parse_disconnect(MqttVersion::V5, &[]).unwrap().code, 0);
        assert_eq!(
            parse_disconnect(MqttVersion::V5, &[0x8b]).unwrap().code,
            0x8b
        );
        let mut body = vec![0x9d, 8, 0x1c, 0, 5];
        body.extend_from_slice(b"h:123");
        let d = parse_disconnect(MqttVersion::V5, &body).unwrap();
        assert_eq!(
            (d.code, d.server_reference.as_deref()),
            (0x9d, Some("h:123"))
        );
        for bad in [
            &[0x9d, 5, 0x1c, 0, 9][..],
            &[0x9d, 1, 0x7f],
            &[0x9d, 3, 0x1c, 0, 1],
            &[0x9d, 0xff],
        ] {
            assert!(parse_disconnect(MqttVersion::V5, bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_disconnect(MqttVersion::V311, &[1, 2]).unwrap().code,
            0
        );
    }
}
