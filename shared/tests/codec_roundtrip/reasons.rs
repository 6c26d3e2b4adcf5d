//! The reason codes MQTT 5.0 defines for each packet type (section 2.4 and each packet's
//! variable header section), and the 3.x subsets the model can express.
//!
//! Owns only these tables; it must never list a code the spec does not allow for that packet,
//! since the generators pick from them and the decoder rejects the others.

use meshmq_shared::codec::ReasonCode::{self, *};

/// 5.0 CONNACK reason codes (section 3.2.2.2).
pub const V5_CONNACK: [ReasonCode; 21] = [
    Success,
    UnspecifiedError,
    MalformedPacket,
    ProtocolError,
    ImplementationSpecificError,
    UnsupportedProtocolVersion,
    ClientIdentifierNotValid,
    BadUserNameOrPassword,
    NotAuthorized,
    ServerUnavailable,
    ServerBusy,
    Banned,
    BadAuthenticationMethod,
    TopicNameInvalid,
    PacketTooLarge,
    QuotaExceeded,
    PayloadFormatInvalid,
    RetainNotSupported,
    QoSNotSupported,
    UseAnotherServer,
    ServerMoved,
];
/// 3.1 / 3.1.1 CONNACK return codes 0..=5, as the model spells them.
pub const V3_CONNACK: [ReasonCode; 6] = [
    Success,
    UnsupportedProtocolVersion,
    ClientIdentifierNotValid,
    ServerUnavailable,
    BadUserNameOrPassword,
    NotAuthorized,
];
/// PUBACK and PUBREC reason codes (sections 3.4.2.1, 3.5.2.1).
pub const V5_PUBACK: [ReasonCode; 9] = [
    Success,
    NoMatchingSubscribers,
    UnspecifiedError,
    ImplementationSpecificError,
    NotAuthorized,
    TopicNameInvalid,
    PacketIdentifierInUse,
    QuotaExceeded,
    PayloadFormatInvalid,
];
/// PUBREL and PUBCOMP reason codes (sections 3.6.2.1, 3.7.2.1).
pub const V5_PUBREL: [ReasonCode; 2] = [Success, PacketIdentifierNotFound];
/// 5.0 SUBACK reason codes (section 3.9.3).
pub const V5_SUBACK: [ReasonCode; 12] = [
    Success,
    GrantedQoS1,
    GrantedQoS2,
    UnspecifiedError,
    ImplementationSpecificError,
    NotAuthorized,
    TopicFilterInvalid,
    PacketIdentifierInUse,
    QuotaExceeded,
    SharedSubscriptionsNotSupported,
    SubscriptionIdentifiersNotSupported,
    WildcardSubscriptionsNotSupported,
];
/// 3.1.1 SUBACK return codes (3.1 has no failure code).
pub const V311_SUBACK: [ReasonCode; 4] = [Success, GrantedQoS1, GrantedQoS2, UnspecifiedError];
/// 3.1 SUBACK return codes: the granted QoS only.
pub const V31_SUBACK: [ReasonCode; 3] = [Success, GrantedQoS1, GrantedQoS2];
/// 5.0 UNSUBACK reason codes (section 3.11.3).
pub const V5_UNSUBACK: [ReasonCode; 7] = [
    Success,
    NoSubscriptionExisted,
    UnspecifiedError,
    ImplementationSpecificError,
    NotAuthorized,
    TopicFilterInvalid,
    PacketIdentifierInUse,
];
/// 5.0 DISCONNECT reason codes (section 3.14.2.1).
pub const V5_DISCONNECT: [ReasonCode; 29] = [
    Success,
    DisconnectWithWillMessage,
    UnspecifiedError,
    MalformedPacket,
    ProtocolError,
    ImplementationSpecificError,
    NotAuthorized,
    ServerBusy,
    ServerShuttingDown,
    KeepAliveTimeout,
    SessionTakenOver,
    TopicFilterInvalid,
    TopicNameInvalid,
    ReceiveMaximumExceeded,
    TopicAliasInvalid,
    PacketTooLarge,
    MessageRateTooHigh,
    QuotaExceeded,
    AdministrativeAction,
    PayloadFormatInvalid,
    RetainNotSupported,
    QoSNotSupported,
    UseAnotherServer,
    ServerMoved,
    SharedSubscriptionsNotSupported,
    ConnectionRateExceeded,
    MaximumConnectTime,
    SubscriptionIdentifiersNotSupported,
    WildcardSubscriptionsNotSupported,
];
/// AUTH reason codes (section 3.15.2.1).
pub const V5_AUTH: [ReasonCode; 3] = [Success, ContinueAuthentication, ReAuthenticate];
