//! MQTT 5.0 property sets for the codec strategies, one per packet type, following the table
//! of MQTT 5.0 section 2.2.2.2.
//!
//! Owns which properties each packet type may carry and their valid values (non-zero receive
//! maximum, topic alias and maximum packet size; 0/1 flags; authentication data only with a
//! method). It must never put a property into a packet type the spec does not allow it in.

use bytes::Bytes;
use meshmq_shared::codec::{Properties, ProtocolVersion};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::values::{MAX_SUBSCRIPTION_ID, binary, text, topic_name};

/// A 0/1 flag property.
pub fn flag() -> impl Strategy<Value = Option<u8>> {
    option::of(0u8..=1)
}

/// User properties: ordered, duplicates allowed.
pub fn user_properties() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((text(6), text(6)), 0..3)
}

/// Authentication method with optional data (data without a method is a protocol error).
pub fn authentication() -> impl Strategy<Value = (Option<String>, Option<Bytes>)> {
    option::of((text(8), option::of(binary(8))))
        .prop_map(|auth| auth.map_or((None, None), |(method, data)| (Some(method), data)))
}

/// `strategy` in 5.0; empty properties in 3.x.
pub fn v5_props(
    v: ProtocolVersion,
    strategy: impl Strategy<Value = Properties> + 'static,
) -> BoxedStrategy<Properties> {
    if v.is_v5() {
        strategy.boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

/// CONNECT properties (section 3.1.2.11).
pub fn connect_properties() -> impl Strategy<Value = Properties> {
    let limits = (
        option::of(any::<u32>()),
        option::of(1..=u16::MAX),
        option::of(1..=u32::MAX),
    );
    (
        limits,
        option::of(any::<u16>()),
        flag(),
        flag(),
        user_properties(),
        authentication(),
    )
        .prop_map(
            |((expiry, recv_max, max_size), alias_max, rri, rpi, user, auth)| Properties {
                session_expiry_interval: expiry,
                receive_maximum: recv_max,
                maximum_packet_size: max_size,
                topic_alias_maximum: alias_max,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties: user,
                authentication_method: auth.0,
                authentication_data: auth.1,
                ..Properties::default()
            },
        )
}

/// The message properties shared by PUBLISH and the will, with a payload that respects the
/// payload format indicator (1 = UTF-8).
pub fn message_properties() -> impl Strategy<Value = (Properties, Bytes)> {
    let meta = (
        option::of(text(8)),
        option::of(topic_name()),
        option::of(binary(8)),
    );
    (
        flag(),
        option::of(any::<u32>()),
        meta,
        user_properties(),
        text(24),
        binary(300),
    )
        .prop_map(
            |(format, expiry, (content, response, correlation), user, utf8, bin)| {
                let props = Properties {
                    payload_format_indicator: format,
                    message_expiry_interval: expiry,
                    content_type: content,
                    response_topic: response,
                    correlation_data: correlation,
                    user_properties: user,
                    ..Properties::default()
                };
                let payload = if format == Some(1) {
                    Bytes::from(utf8)
                } else {
                    bin
                };
                (props, payload)
            },
        )
}

/// CONNACK properties (section 3.2.2.3).
pub fn connack_properties() -> impl Strategy<Value = Properties> {
    let strings = (
        option::of(text(8)),
        option::of(text(8)),
        option::of(text(8)),
        option::of(text(8)),
    );
    let limits = (
        option::of(any::<u32>()),
        option::of(any::<u16>()),
        option::of(1..=u16::MAX),
    );
    let more = (
        option::of(any::<u16>()),
        option::of(1..=u32::MAX),
        user_properties(),
    );
    let flags = (flag(), flag(), flag(), flag(), flag());
    (strings, limits, more, flags, authentication()).prop_map(
        |(
            (assigned, response, reference, reason),
            (expiry, keep_alive, recv_max),
            more,
            flags,
            auth,
        )| {
            let (alias_max, max_size, user) = more;
            let (max_qos, retain, wildcard, sub_ids, shared) = flags;
            Properties {
                assigned_client_identifier: assigned,
                response_information: response,
                server_reference: reference,
                reason_string: reason,
                session_expiry_interval: expiry,
                server_keep_alive: keep_alive,
                receive_maximum: recv_max,
                topic_alias_maximum: alias_max,
                maximum_packet_size: max_size,
                user_properties: user,
                maximum_qos: max_qos,
                retain_available: retain,
                wildcard_subscription_available: wildcard,
                subscription_identifier_available: sub_ids,
                shared_subscription_available: shared,
                authentication_method: auth.0,
                authentication_data: auth.1,
                ..Properties::default()
            }
        },
    )
}

/// Reason string and user properties: what every acknowledgement may carry.
pub fn ack_properties() -> impl Strategy<Value = Properties> {
    (option::of(text(10)), user_properties()).prop_map(|(reason_string, user_properties)| {
        Properties {
            reason_string,
            user_properties,
            ..Properties::default()
        }
    })
}

/// Will properties (section 3.1.3.2) with the will payload.
pub fn will_properties() -> impl Strategy<Value = (Properties, Bytes)> {
    (message_properties(), option::of(any::<u32>())).prop_map(|((mut props, payload), delay)| {
        props.will_delay_interval = delay;
        (props, payload)
    })
}

/// PUBLISH properties (section 3.3.2.3) with the payload; the subscription identifiers may
/// repeat and the topic alias is non-zero.
pub fn publish_properties() -> impl Strategy<Value = (Properties, Bytes)> {
    let subs = vec(1..=MAX_SUBSCRIPTION_ID, 0..3);
    (message_properties(), subs, option::of(1..=u16::MAX)).prop_map(
        |((mut props, payload), subs, alias)| {
            props.subscription_identifiers = subs;
            props.topic_alias = alias;
            (props, payload)
        },
    )
}

/// SUBSCRIBE properties (section 3.8.2.1): at most one subscription identifier.
pub fn subscribe_properties() -> impl Strategy<Value = Properties> {
    (option::of(1..=MAX_SUBSCRIPTION_ID), user_properties()).prop_map(|(id, user)| Properties {
        subscription_identifiers: id.into_iter().collect(),
        user_properties: user,
        ..Properties::default()
    })
}

/// UNSUBSCRIBE properties (section 3.10.2.1): user properties only.
pub fn unsubscribe_properties() -> impl Strategy<Value = Properties> {
    user_properties().prop_map(|user_properties| Properties {
        user_properties,
        ..Properties::default()
    })
}

/// DISCONNECT properties (section 3.14.2.2).
pub fn disconnect_properties() -> impl Strategy<Value = Properties> {
    let strings = (option::of(text(10)), option::of(text(10)));
    (option::of(any::<u32>()), strings, user_properties()).prop_map(
        |(expiry, (reason, reference), user)| Properties {
            session_expiry_interval: expiry,
            reason_string: reason,
            server_reference: reference,
            user_properties: user,
            ..Properties::default()
        },
    )
}

/// AUTH properties (section 3.15.2.2): the authentication method is always there.
pub fn auth_properties() -> impl Strategy<Value = Properties> {
    (text(8), option::of(binary(8)), ack_properties()).prop_map(|(method, data, mut props)| {
        props.authentication_method = Some(method);
        props.authentication_data = data;
        props
    })
}
