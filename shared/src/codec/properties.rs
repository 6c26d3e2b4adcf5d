//! MQTT 5.0 properties: one struct holding every property any packet may carry.
//!
//! The decoder checks which identifiers a packet type allows (a property in the wrong packet,
//! or a single-valued property given twice, is a Protocol Error 0x82 / Malformed 0x81);
//! this type itself only holds values. Multi-valued properties (user property, subscription
//! identifier in PUBLISH) are vectors and keep their order.

use bytes::Bytes;

/// Property identifiers (MQTT 5.0 section 2.2.2.2).
#[allow(missing_docs)]
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// Every MQTT 5.0 property. `None` / empty means absent. `Debug` shows
/// `authentication_data` (a SCRAM proof, a token) only as its length.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Properties {
    /// 0x01, PUBLISH and will: 0 = unspecified bytes, 1 = UTF-8.
    pub payload_format_indicator: Option<u8>,
    /// 0x02, PUBLISH and will: seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03, PUBLISH and will.
    pub content_type: Option<String>,
    /// 0x08, PUBLISH and will (a topic name).
    pub response_topic: Option<String>,
    /// 0x09, PUBLISH and will.
    pub correlation_data: Option<Bytes>,
    /// 0x0B, PUBLISH (several) and SUBSCRIBE (one); 1..=268_435_455.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11, CONNECT, CONNACK, DISCONNECT: seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12, CONNACK.
    pub assigned_client_identifier: Option<String>,
    /// 0x13, CONNACK: seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15, CONNECT, CONNACK, AUTH.
    pub authentication_method: Option<String>,
    /// 0x16, CONNECT, CONNACK, AUTH.
    pub authentication_data: Option<Bytes>,
    /// 0x17, CONNECT: 0 or 1.
    pub request_problem_information: Option<u8>,
    /// 0x18, will: seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19, CONNECT: 0 or 1.
    pub request_response_information: Option<u8>,
    /// 0x1A, CONNACK.
    pub response_information: Option<String>,
    /// 0x1C, CONNACK, DISCONNECT.
    pub server_reference: Option<String>,
    /// 0x1F, every ack, CONNACK, DISCONNECT, AUTH.
    pub reason_string: Option<String>,
    /// 0x21, CONNECT, CONNACK: non-zero.
    pub receive_maximum: Option<u16>,
    /// 0x22, CONNECT, CONNACK.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23, PUBLISH: non-zero.
    pub topic_alias: Option<u16>,
    /// 0x24, CONNACK: 0 or 1.
    pub maximum_qos: Option<u8>,
    /// 0x25, CONNACK: 0 or 1.
    pub retain_available: Option<u8>,
    /// 0x26, every packet with properties; order kept, duplicates allowed.
    pub user_properties: Vec<(String, String)>,
    /// 0x27, CONNECT, CONNACK: non-zero.
    pub maximum_packet_size: Option<u32>,
    /// 0x28, CONNACK: 0 or 1.
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29, CONNACK: 0 or 1.
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A, CONNACK: 0 or 1.
    pub shared_subscription_available: Option<u8>,
}

impl Properties {
    /// True when no property is set (encodes as a zero property length).
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured in full: a new field does not compile until it is shown here.
        let Properties {
            payload_format_indicator,
            message_expiry_interval,
            content_type,
            response_topic,
            correlation_data,
            subscription_identifiers,
            session_expiry_interval,
            assigned_client_identifier,
            server_keep_alive,
            authentication_method,
            authentication_data,
            request_problem_information,
            will_delay_interval,
            request_response_information,
            response_information,
            server_reference,
            reason_string,
            receive_maximum,
            topic_alias_maximum,
            topic_alias,
            maximum_qos,
            retain_available,
            user_properties,
            maximum_packet_size,
            wildcard_subscription_available,
            subscription_identifier_available,
            shared_subscription_available,
        } = self;
        f.debug_struct("Properties")
            .field("payload_format_indicator", payload_format_indicator)
            .field("message_expiry_interval", message_expiry_interval)
            .field("content_type", content_type)
            .field("response_topic", response_topic)
            .field("correlation_data", correlation_data)
            .field("subscription_identifiers", subscription_identifiers)
            .field("session_expiry_interval", session_expiry_interval)
            .field("assigned_client_identifier", assigned_client_identifier)
            .field("server_keep_alive", server_keep_alive)
            .field("authentication_method", authentication_method)
            .field("authentication_data", &Redacted(authentication_data))
            .field("request_problem_information", request_problem_information)
            .field("will_delay_interval", will_delay_interval)
            .field("request_response_information", request_response_information)
            .field("response_information", response_information)
            .field("server_reference", server_reference)
            .field("reason_string", reason_string)
            .field("receive_maximum", receive_maximum)
            .field("topic_alias_maximum", topic_alias_maximum)
            .field("topic_alias", topic_alias)
            .field("maximum_qos", maximum_qos)
            .field("retain_available", retain_available)
            .field("user_properties", user_properties)
            .field("maximum_packet_size", maximum_packet_size)
            .field(
                "wildcard_subscription_available",
                wildcard_subscription_available,
            )
            .field(
                "subscription_identifier_available",
                subscription_identifier_available,
            )
            .field(
                "shared_subscription_available",
                shared_subscription_available,
            )
            .finish()
    }
}

/// Shows binary data only as its length (`<N bytes>`), so a proof never reaches a log.
struct Redacted<'a>(&'a Option<Bytes>);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(b) => write!(f, "<{} bytes>", b.len()),
            None => f.write_str("None"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_authentication_data_only_as_its_length() {
        let p = Properties {
            authentication_method: Some("SCRAM-SHA-256".into()),
            authentication_data: Some(Bytes::from_static(b"c=biws,r=abc,p=c2VjcmV0cHJvb2Y=")),
            ..Properties::default()
        };
        let shown = format!("{p:?}");
        assert!(shown.contains("authentication_data: <31 bytes>"), "{shown}");
        assert!(!shown.contains("c2VjcmV0cHJvb2Y"), "{shown}");
        assert!(
            shown.contains("SCRAM-SHA-256"),
            "other fields still shown: {shown}"
        );
        let none = format!("{:?}", Properties::default());
        assert!(none.contains("authentication_data: None"), "{none}");
    }
}
