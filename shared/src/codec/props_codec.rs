//! Reading and writing MQTT 5.0 property sections, and which property identifiers each
//! packet type (and the will) allows (section 2.2.2.2).
//!
//! Owns the per-packet allow lists, the "single-valued property given twice" rule and the
//! value checks (0/1 flags, non-zero limits, subscription identifier 1..=268 435 455). It must
//! never let a section read past its announced length, and never write a property the packet
//! type does not allow (the encoder silently leaves such properties out).

use bytes::{BufMut, BytesMut};

use super::error::DecodeError;
use super::properties::{Properties, id};
use super::wire::{Cursor, Sizer, malformed, put_binary, put_str, put_varint};

/// The packet (or will) a property section belongs to; decides which identifiers it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PropsOf {
    /// CONNECT (section 3.1.2.11).
    Connect,
    /// The will properties in CONNECT's payload (section 3.1.3.2).
    Will,
    /// CONNACK (section 3.2.2.3).
    ConnAck,
    /// PUBLISH (section 3.3.2.3).
    Publish,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP (sections 3.4.2.2 to 3.7.2.2).
    PubResp,
    /// SUBSCRIBE (section 3.8.2.1).
    Subscribe,
    /// SUBACK (section 3.9.2.1).
    SubAck,
    /// UNSUBSCRIBE (section 3.10.2.1).
    Unsubscribe,
    /// UNSUBACK (section 3.11.2.1).
    UnsubAck,
    /// DISCONNECT (section 3.14.2.2).
    Disconnect,
    /// AUTH (section 3.15.2.2).
    Auth,
}

/// A bit set of property identifiers (all are below 64).
const fn mask(ids: &[u8]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < ids.len() {
        m |= 1 << ids[i];
        i += 1;
    }
    m
}

use id::*;

/// Properties shared by PUBLISH and the will.
#[rustfmt::skip]
const MESSAGE: u64 = mask(&[
    PAYLOAD_FORMAT_INDICATOR, MESSAGE_EXPIRY_INTERVAL, CONTENT_TYPE, RESPONSE_TOPIC,
    CORRELATION_DATA, USER_PROPERTY,
]);
/// What every acknowledgement carries.
const ACK: u64 = mask(&[REASON_STRING, USER_PROPERTY]);
#[rustfmt::skip]
const CONNECT: u64 = mask(&[
    SESSION_EXPIRY_INTERVAL, RECEIVE_MAXIMUM, MAXIMUM_PACKET_SIZE, TOPIC_ALIAS_MAXIMUM,
    REQUEST_RESPONSE_INFORMATION, REQUEST_PROBLEM_INFORMATION, USER_PROPERTY,
    AUTHENTICATION_METHOD, AUTHENTICATION_DATA,
]);
#[rustfmt::skip]
const CONNACK: u64 = mask(&[
    SESSION_EXPIRY_INTERVAL, RECEIVE_MAXIMUM, MAXIMUM_QOS, RETAIN_AVAILABLE, MAXIMUM_PACKET_SIZE,
    ASSIGNED_CLIENT_IDENTIFIER, TOPIC_ALIAS_MAXIMUM, REASON_STRING, USER_PROPERTY,
    WILDCARD_SUBSCRIPTION_AVAILABLE, SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    SHARED_SUBSCRIPTION_AVAILABLE, SERVER_KEEP_ALIVE, RESPONSE_INFORMATION, SERVER_REFERENCE,
    AUTHENTICATION_METHOD, AUTHENTICATION_DATA,
]);
const WILL: u64 = MESSAGE | mask(&[WILL_DELAY_INTERVAL]);
const PUBLISH: u64 = MESSAGE | mask(&[TOPIC_ALIAS, SUBSCRIPTION_IDENTIFIER]);
const SUBSCRIBE: u64 = mask(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]);
const UNSUBSCRIBE: u64 = mask(&[USER_PROPERTY]);
const DISCONNECT: u64 = ACK | mask(&[SESSION_EXPIRY_INTERVAL, SERVER_REFERENCE]);
const AUTH: u64 = ACK | mask(&[AUTHENTICATION_METHOD, AUTHENTICATION_DATA]);
/// Every identifier MQTT 5.0 defines.
const KNOWN: u64 = CONNECT | CONNACK | WILL | PUBLISH | SUBSCRIBE | DISCONNECT | AUTH;

impl PropsOf {
    /// The identifiers this section allows.
    fn allowed(self) -> u64 {
        match self {
            PropsOf::Connect => CONNECT,
            PropsOf::Will => WILL,
            PropsOf::ConnAck => CONNACK,
            PropsOf::Publish => PUBLISH,
            PropsOf::PubResp | PropsOf::SubAck | PropsOf::UnsubAck => ACK,
            PropsOf::Subscribe => SUBSCRIBE,
            PropsOf::Unsubscribe => UNSUBSCRIBE,
            PropsOf::Disconnect => DISCONNECT,
            PropsOf::Auth => AUTH,
        }
    }

    /// True when property `id` may appear in this section.
    pub(crate) fn allows(self, id: u8) -> bool {
        id < 64 && self.allowed() & (1u64 << id) != 0
    }
}

/// Reads a property length and the properties it covers, checking each against `of`.
pub(crate) fn read_properties(cur: &mut Cursor, of: PropsOf) -> Result<Properties, DecodeError> {
    let len = cur.varint("property length")?;
    let len = usize::try_from(len).map_err(|_| malformed("property length"))?;
    let mut props = Properties::default();
    if len == 0 {
        return Ok(props);
    }
    let mut section = Cursor::new(cur.split(len, "property length beyond the packet")?);
    while !section.is_empty() {
        let raw = section.varint("property identifier")?;
        let id = u8::try_from(raw).unwrap_or(u8::MAX);
        if id >= 64 || KNOWN & (1u64 << id) == 0 {
            return Err(malformed("unknown property identifier"));
        }
        if !of.allows(id) {
            return Err(DecodeError::ProtocolError(
                "property not allowed in this packet",
            ));
        }
        read_one(&mut section, id, of, &mut props)?;
    }
    if props.authentication_data.is_some() && props.authentication_method.is_none() {
        return Err(DecodeError::ProtocolError(
            "authentication data without a method",
        ));
    }
    Ok(props)
}

/// Sets a single-valued property, refusing a second occurrence.
fn once<T>(slot: &mut Option<T>, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::ProtocolError(
            "single-valued property given twice",
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// A byte property whose only legal values are 0 and 1.
fn flag(c: &mut Cursor) -> Result<u8, DecodeError> {
    match c.u8("property value")? {
        v @ (0 | 1) => Ok(v),
        _ => Err(DecodeError::ProtocolError("property value must be 0 or 1")),
    }
}

/// A two-byte property that must not be 0.
fn nonzero_u16(c: &mut Cursor) -> Result<u16, DecodeError> {
    match c.u16("property value")? {
        0 => Err(DecodeError::ProtocolError("property value must not be 0")),
        v => Ok(v),
    }
}

/// A four-byte property that must not be 0.
fn nonzero_u32(c: &mut Cursor) -> Result<u32, DecodeError> {
    match c.u32("property value")? {
        0 => Err(DecodeError::ProtocolError("property value must not be 0")),
        v => Ok(v),
    }
}

/// The Response Topic: a topic name, so neither empty nor with wildcards.
fn response_topic(c: &mut Cursor) -> Result<String, DecodeError> {
    let topic = c.str("response topic")?;
    if topic.is_empty() || topic.contains(['+', '#']) {
        return Err(DecodeError::ProtocolError(
            "response topic is not a topic name",
        ));
    }
    Ok(topic.to_owned())
}

/// Subscription Identifier: 1..=268 435 455; several in PUBLISH, one in SUBSCRIBE.
fn subscription_id(c: &mut Cursor, of: PropsOf, p: &mut Properties) -> Result<(), DecodeError> {
    let v = c.varint("subscription identifier")?;
    if v == 0 {
        return Err(DecodeError::ProtocolError("subscription identifier 0"));
    }
    if of == PropsOf::Subscribe && !p.subscription_identifiers.is_empty() {
        return Err(DecodeError::ProtocolError(
            "single-valued property given twice",
        ));
    }
    p.subscription_identifiers.push(v);
    Ok(())
}

/// Reads the value of property `id` (already checked as allowed) into `p`.
fn read_one(c: &mut Cursor, id: u8, of: PropsOf, p: &mut Properties) -> Result<(), DecodeError> {
    const V: &str = "property value";
    match id {
        PAYLOAD_FORMAT_INDICATOR => once(&mut p.payload_format_indicator, flag(c)?),
        MESSAGE_EXPIRY_INTERVAL => once(&mut p.message_expiry_interval, c.u32(V)?),
        CONTENT_TYPE => once(&mut p.content_type, c.string(V)?),
        RESPONSE_TOPIC => once(&mut p.response_topic, response_topic(c)?),
        CORRELATION_DATA => once(&mut p.correlation_data, c.binary(V)?),
        SUBSCRIPTION_IDENTIFIER => subscription_id(c, of, p),
        SESSION_EXPIRY_INTERVAL => once(&mut p.session_expiry_interval, c.u32(V)?),
        ASSIGNED_CLIENT_IDENTIFIER => once(&mut p.assigned_client_identifier, c.string(V)?),
        SERVER_KEEP_ALIVE => once(&mut p.server_keep_alive, c.u16(V)?),
        AUTHENTICATION_METHOD => once(&mut p.authentication_method, c.string(V)?),
        AUTHENTICATION_DATA => once(&mut p.authentication_data, c.binary(V)?),
        REQUEST_PROBLEM_INFORMATION => once(&mut p.request_problem_information, flag(c)?),
        WILL_DELAY_INTERVAL => once(&mut p.will_delay_interval, c.u32(V)?),
        REQUEST_RESPONSE_INFORMATION => once(&mut p.request_response_information, flag(c)?),
        RESPONSE_INFORMATION => once(&mut p.response_information, c.string(V)?),
        SERVER_REFERENCE => once(&mut p.server_reference, c.string(V)?),
        REASON_STRING => once(&mut p.reason_string, c.string(V)?),
        RECEIVE_MAXIMUM => once(&mut p.receive_maximum, nonzero_u16(c)?),
        TOPIC_ALIAS_MAXIMUM => once(&mut p.topic_alias_maximum, c.u16(V)?),
        TOPIC_ALIAS => once(&mut p.topic_alias, nonzero_u16(c)?),
        MAXIMUM_QOS => once(&mut p.maximum_qos, flag(c)?),
        RETAIN_AVAILABLE => once(&mut p.retain_available, flag(c)?),
        USER_PROPERTY => {
            let pair = (
                c.string("user property name")?,
                c.string("user property value")?,
            );
            p.user_properties.push(pair);
            Ok(())
        }
        MAXIMUM_PACKET_SIZE => once(&mut p.maximum_packet_size, nonzero_u32(c)?),
        WILDCARD_SUBSCRIPTION_AVAILABLE => once(&mut p.wildcard_subscription_available, flag(c)?),
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            once(&mut p.subscription_identifier_available, flag(c)?)
        }
        SHARED_SUBSCRIPTION_AVAILABLE => once(&mut p.shared_subscription_available, flag(c)?),
        _ => Err(malformed("unknown property identifier")),
    }
}

/// Where visited properties go: a size count or an output buffer.
trait Sink {
    /// A fixed-size value (byte, two- or four-byte integer), big-endian.
    fn fixed(&mut self, id: u8, v: &[u8]);
    /// A variable byte integer.
    fn varint(&mut self, id: u8, v: u32);
    /// A length-prefixed UTF-8 string (`string`) or binary data.
    fn field(&mut self, id: u8, v: &[u8], string: bool);
    /// A user property: two strings.
    fn pair(&mut self, id: u8, k: &str, v: &str);
}

/// Counts the encoded size of properties, recording unencodable values in the [`Sizer`].
struct Count<'a> {
    /// Where string, binary and varint limits are checked.
    sizer: &'a mut Sizer,
    /// Bytes counted so far.
    len: usize,
}

impl Sink for Count<'_> {
    fn fixed(&mut self, _: u8, v: &[u8]) {
        self.len += 1 + v.len();
    }
    fn varint(&mut self, _: u8, v: u32) {
        self.len += 1 + self.sizer.varint(v);
    }
    fn field(&mut self, _: u8, v: &[u8], string: bool) {
        let len = if string {
            self.sizer.string_bytes(v)
        } else {
            self.sizer.binary(v)
        };
        self.len += 1 + len;
    }
    fn pair(&mut self, _: u8, k: &str, v: &str) {
        self.len += 1 + self.sizer.string(k) + self.sizer.string(v);
    }
}

impl Sink for BytesMut {
    fn fixed(&mut self, id: u8, v: &[u8]) {
        self.put_u8(id);
        self.put_slice(v);
    }
    fn varint(&mut self, id: u8, v: u32) {
        self.put_u8(id);
        put_varint(self, v);
    }
    fn field(&mut self, id: u8, v: &[u8], _: bool) {
        self.put_u8(id);
        put_binary(self, v);
    }
    fn pair(&mut self, id: u8, k: &str, v: &str) {
        self.put_u8(id);
        put_str(self, k);
        put_str(self, v);
    }
}

/// Feeds the properties `of` allows to a [`Sink`], in identifier order.
struct Emit<'a, S: Sink> {
    /// The section being written, which decides what is left out.
    of: PropsOf,
    /// Where the properties go.
    sink: &'a mut S,
}

impl<S: Sink> Emit<'_, S> {
    fn fixed<const N: usize>(&mut self, id: u8, v: Option<[u8; N]>) {
        if let (Some(v), true) = (v, self.of.allows(id)) {
            self.sink.fixed(id, &v);
        }
    }
    fn string(&mut self, id: u8, v: &Option<String>) {
        if let (Some(v), true) = (v, self.of.allows(id)) {
            self.sink.field(id, v.as_bytes(), true);
        }
    }
    fn binary(&mut self, id: u8, v: &Option<bytes::Bytes>) {
        if let (Some(v), true) = (v, self.of.allows(id)) {
            self.sink.field(id, v, false);
        }
    }

    /// Every property of `p` this section allows.
    fn all(&mut self, p: &Properties) {
        self.message(p);
        self.connection(p);
    }

    /// The message properties (identifiers up to 0x0B), those PUBLISH and the will carry.
    fn message(&mut self, p: &Properties) {
        let byte = |v: Option<u8>| v.map(|b| [b]);
        let u32 = |v: Option<u32>| v.map(u32::to_be_bytes);
        self.fixed(PAYLOAD_FORMAT_INDICATOR, byte(p.payload_format_indicator));
        self.fixed(MESSAGE_EXPIRY_INTERVAL, u32(p.message_expiry_interval));
        self.string(CONTENT_TYPE, &p.content_type);
        self.string(RESPONSE_TOPIC, &p.response_topic);
        self.binary(CORRELATION_DATA, &p.correlation_data);
        if self.of.allows(SUBSCRIPTION_IDENTIFIER) {
            let ids = &p.subscription_identifiers;
            let n = if self.of == PropsOf::Subscribe {
                ids.len().min(1)
            } else {
                ids.len()
            };
            for &v in ids.iter().take(n) {
                self.sink.varint(SUBSCRIPTION_IDENTIFIER, v);
            }
        }
    }

    /// The connection and acknowledgement properties (identifiers from 0x11).
    fn connection(&mut self, p: &Properties) {
        let byte = |v: Option<u8>| v.map(|b| [b]);
        let u16 = |v: Option<u16>| v.map(u16::to_be_bytes);
        let u32 = |v: Option<u32>| v.map(u32::to_be_bytes);
        self.fixed(SESSION_EXPIRY_INTERVAL, u32(p.session_expiry_interval));
        self.string(ASSIGNED_CLIENT_IDENTIFIER, &p.assigned_client_identifier);
        self.fixed(SERVER_KEEP_ALIVE, u16(p.server_keep_alive));
        self.string(AUTHENTICATION_METHOD, &p.authentication_method);
        self.binary(AUTHENTICATION_DATA, &p.authentication_data);
        self.fixed(
            REQUEST_PROBLEM_INFORMATION,
            byte(p.request_problem_information),
        );
        self.fixed(WILL_DELAY_INTERVAL, u32(p.will_delay_interval));
        self.fixed(
            REQUEST_RESPONSE_INFORMATION,
            byte(p.request_response_information),
        );
        self.string(RESPONSE_INFORMATION, &p.response_information);
        self.string(SERVER_REFERENCE, &p.server_reference);
        self.string(REASON_STRING, &p.reason_string);
        self.fixed(RECEIVE_MAXIMUM, u16(p.receive_maximum));
        self.fixed(TOPIC_ALIAS_MAXIMUM, u16(p.topic_alias_maximum));
        self.fixed(TOPIC_ALIAS, u16(p.topic_alias));
        self.fixed(MAXIMUM_QOS, byte(p.maximum_qos));
        self.fixed(RETAIN_AVAILABLE, byte(p.retain_available));
        if self.of.allows(USER_PROPERTY) {
            for (k, v) in &p.user_properties {
                self.sink.pair(USER_PROPERTY, k, v);
            }
        }
        self.fixed(MAXIMUM_PACKET_SIZE, u32(p.maximum_packet_size));
        self.fixed(
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            byte(p.wildcard_subscription_available),
        );
        self.fixed(
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            byte(p.subscription_identifier_available),
        );
        self.fixed(
            SHARED_SUBSCRIPTION_AVAILABLE,
            byte(p.shared_subscription_available),
        );
    }
}

/// Length of the properties `of` allows, without the property length prefix.
pub(crate) fn properties_len(p: &Properties, of: PropsOf, sizer: &mut Sizer) -> usize {
    let mut count = Count { sizer, len: 0 };
    Emit {
        of,
        sink: &mut count,
    }
    .all(p);
    count.len
}

/// Size of a whole property section: the length prefix and the properties.
pub(crate) fn section_len(p: &Properties, of: PropsOf, sizer: &mut Sizer) -> usize {
    let len = properties_len(p, of, sizer);
    sizer.varint(u32::try_from(len).unwrap_or(u32::MAX)) + len
}

/// Writes a whole property section: the length prefix, then the properties `of` allows.
pub(crate) fn put_properties(out: &mut BytesMut, p: &Properties, of: PropsOf) {
    let len = properties_len(p, of, &mut Sizer::default());
    put_varint(out, u32::try_from(len).unwrap_or(u32::MAX));
    if len == 0 {
        return;
    }
    Emit { of, sink: out }.all(p);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use bytes::Bytes;

    use super::*;

    fn read(bytes: &'static [u8], of: PropsOf) -> Result<Properties, DecodeError> {
        let mut c = Cursor::new(Bytes::from_static(bytes));
        let p = read_properties(&mut c, of)?;
        assert!(c.is_empty());
        Ok(p)
    }

    fn write(p: &Properties, of: PropsOf) -> Vec<u8> {
        let mut sizer = Sizer::default();
        let expected = section_len(p, of, &mut sizer);
        assert!(sizer.err.is_none());
        let mut out = BytesMut::new();
        put_properties(&mut out, p, of);
        assert_eq!(out.len(), expected);
        out.to_vec()
    }

    #[test]
    fn allow_lists_follow_the_spec() {
        assert!(PropsOf::Publish.allows(TOPIC_ALIAS));
        assert!(!PropsOf::Connect.allows(TOPIC_ALIAS));
        assert!(PropsOf::Will.allows(WILL_DELAY_INTERVAL));
        assert!(!PropsOf::Publish.allows(WILL_DELAY_INTERVAL));
        assert!(PropsOf::ConnAck.allows(MAXIMUM_QOS));
        assert!(!PropsOf::Unsubscribe.allows(REASON_STRING));
        assert!(PropsOf::UnsubAck.allows(REASON_STRING));
        assert!(PropsOf::Disconnect.allows(SERVER_REFERENCE));
        assert!(!PropsOf::Auth.allows(SESSION_EXPIRY_INTERVAL));
        assert!(!PropsOf::Auth.allows(200));
    }

    #[test]
    fn reads_a_section_and_keeps_user_property_order() {
        let p = read(&[9, 0x23, 0, 7, 0x26, 0, 1, b'k', 0, 0], PropsOf::Publish).unwrap();
        assert_eq!(p.topic_alias, Some(7));
        assert_eq!(p.user_properties, vec![("k".to_string(), String::new())]);
        let p = read(&[4, 0x0b, 1, 0x0b, 2], PropsOf::Publish).unwrap();
        assert_eq!(p.subscription_identifiers, vec![1, 2]);
    }

    #[test]
    fn rejects_bad_sections() {
        let protocol = |r: Result<Properties, DecodeError>| {
            assert!(matches!(r, Err(DecodeError::ProtocolError(_))), "{r:?}");
        };
        protocol(read(&[4, 0x0b, 1, 0x0b, 2], PropsOf::Subscribe));
        protocol(read(&[2, 0x0b, 0], PropsOf::Subscribe));
        protocol(read(&[3, 0x23, 0, 0], PropsOf::Publish));
        protocol(read(&[3, 0x21, 0, 0], PropsOf::Connect));
        protocol(read(&[5, 0x27, 0, 0, 0, 0], PropsOf::Connect));
        protocol(read(&[2, 0x01, 2], PropsOf::Publish));
        protocol(read(&[4, 0x01, 1, 0x01, 1], PropsOf::Publish));
        protocol(read(&[3, 0x23, 0, 1], PropsOf::Connect));
        protocol(read(&[3, 0x16, 0, 0], PropsOf::Auth));
        protocol(read(&[4, 0x08, 0, 1, b'#'], PropsOf::Publish));
        let malformed = |r: Result<Properties, DecodeError>| {
            assert!(matches!(r, Err(DecodeError::MalformedPacket(_))), "{r:?}");
        };
        malformed(read(&[2, 0x7f, 0], PropsOf::Publish));
        malformed(read(&[5, 0x02, 0, 0], PropsOf::Publish));
        malformed(read(&[2, 0x02, 0, 0, 0], PropsOf::Publish));
    }

    #[test]
    fn writes_in_identifier_order_and_leaves_out_what_the_packet_disallows() {
        let p = Properties {
            topic_alias: Some(1),
            payload_format_indicator: Some(1),
            reason_string: Some("r".into()),
            ..Properties::default()
        };
        assert_eq!(write(&p, PropsOf::Publish), [5, 0x01, 1, 0x23, 0, 1]);
        assert_eq!(write(&p, PropsOf::PubResp), [4, 0x1f, 0, 1, b'r']);
        assert_eq!(write(&Properties::default(), PropsOf::Auth), [0]);
        let subs = Properties {
            subscription_identifiers: vec![300, 2],
            ..Properties::default()
        };
        assert_eq!(write(&subs, PropsOf::Subscribe), [3, 0x0b, 0xac, 0x02]);
    }

    #[test]
    fn everything_allowed_round_trips() {
        let p = Properties {
            session_expiry_interval: Some(10),
            receive_maximum: Some(5),
            maximum_packet_size: Some(1000),
            topic_alias_maximum: Some(0),
            request_problem_information: Some(0),
            request_response_information: Some(1),
            user_properties: vec![("a".into(), "b".into()), ("a".into(), "c".into())],
            authentication_method: Some("m".into()),
            authentication_data: Some(Bytes::from_static(b"d")),
            ..Properties::default()
        };
        let bytes = write(&p, PropsOf::Connect);
        let mut c = Cursor::new(Bytes::from(bytes));
        assert_eq!(read_properties(&mut c, PropsOf::Connect), Ok(p));
    }
}
