//! What a SUBACK may claim (MQTT 5.0 3.9): a SUBSCRIBE that a protocol error ends half-way
//! leaves no filter behind, and one with more filters than fit in one table transaction is
//! committed in several, every filter of it stored. (The failure codes for a table write
//! that does not commit are tested with a core group that lost its majority, in
//! `tests/cluster/acks.rs`.)

use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::{Packet, Properties, QoS, ReasonCode, Subscribe, SubscriptionOptions};

use crate::common::raw::{RawClient, connect_packet, sub_opts};
use crate::common::{self, QUIET};

/// A persistent v5 session sends SUBSCRIBE [ok/a, $share/g/x with No Local]: the second is a
/// Protocol Error (3.8.3.1), the connection closes with 0x82, and the first filter must not
/// survive in the resumed session (it was never acknowledged).
#[tokio::test]
async fn v5_3_8_3_1_protocol_error_mid_subscribe_leaves_no_filter_behind() {
    let b = common::broker().await;
    let id = common::unique("half-sub");
    let topic = common::unique("half/ok");
    let mut c = connect_packet(V5, &id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(300);
    let (mut client, ack) = RawClient::connect_with(b.mqtt_addr(), c.clone()).await;
    assert_eq!(ack.code, ReasonCode::Success);
    let no_local = SubscriptionOptions {
        no_local: true,
        ..sub_opts(QoS::AtLeastOnce)
    };
    client
        .send(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![
                (topic.clone(), sub_opts(QoS::AtLeastOnce)),
                ("$share/g/half/x".to_owned(), no_local),
            ],
            properties: Properties::default(),
        }))
        .await;
    assert_eq!(
        client
            .expect_closed_with(&[ReasonCode::ProtocolError])
            .await,
        Some(ReasonCode::ProtocolError)
    );
    let (mut resumed, ack) = RawClient::connect_with(b.mqtt_addr(), c).await;
    assert!(ack.session_present, "the session itself survives");
    let marker = common::unique("half/marker");
    resumed.subscribe(&marker, QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &common::unique("half-pub")).await;
    publisher
        .publish(&topic, "ghost", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish(&marker, "marker", QoS::AtLeastOnce, false)
        .await;
    let p = resumed.recv_publish().await;
    assert_eq!(
        &p.payload[..],
        b"marker",
        "a filter of the refused SUBSCRIBE was left subscribed"
    );
    resumed.expect_no_publish(QUIET).await;
    let stored = b.stored_subscriptions(&id);
    assert_eq!(stored, 1, "only the marker's row is stored");
}

/// A persistent session subscribing 10 050 filters in one SUBSCRIBE needs more table ops than
/// one transaction takes (10 000): every filter is granted and every row is stored (before,
/// the one oversized transaction was refused as a whole and the SUBACK granted everything).
#[tokio::test]
async fn subscribe_larger_than_one_transaction_is_stored_whole() {
    let b = common::start_broker(|c| c.mqtt.max_subscriptions = 0).await;
    let id = common::unique("big-sub");
    let mut c = connect_packet(V5, &id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(300);
    let (mut client, ack) = RawClient::connect_with(b.mqtt_addr(), c).await;
    assert_eq!(ack.code, ReasonCode::Success);
    let filters: Vec<String> = (0..10_050).map(|i| format!("big/{i}")).collect();
    let with_opts: Vec<(&str, SubscriptionOptions)> = filters
        .iter()
        .map(|f| (f.as_str(), sub_opts(QoS::AtMostOnce)))
        .collect();
    let ack = client
        .subscribe_many(&with_opts, Properties::default())
        .await;
    assert_eq!(ack.reasons.len(), 10_050);
    assert!(
        ack.reasons.iter().all(|r| *r == ReasonCode::Success),
        "every filter granted"
    );
    let stored = b.stored_subscriptions(&id);
    assert_eq!(stored, 10_050, "every granted filter has its row");
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &common::unique("big-pub")).await;
    publisher
        .publish("big/10049", "last", QoS::AtMostOnce, false)
        .await;
    assert_eq!(&client.recv_publish().await.payload[..], b"last");
}

/// The same for UNSUBSCRIBE: 10 050 filters removed in one packet are removed from the
/// tables too (before, the one oversized transaction was refused and the UNSUBACK said
/// Success while every row stayed, to come back with the session).
#[tokio::test]
async fn unsubscribe_larger_than_one_transaction_removes_every_row() {
    let b = common::start_broker(|c| c.mqtt.max_subscriptions = 0).await;
    let id = common::unique("big-unsub");
    let mut c = connect_packet(V5, &id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(300);
    let (mut client, ack) = RawClient::connect_with(b.mqtt_addr(), c).await;
    assert_eq!(ack.code, ReasonCode::Success);
    let filters: Vec<String> = (0..10_050).map(|i| format!("bigu/{i}")).collect();
    let with_opts: Vec<(&str, SubscriptionOptions)> = filters
        .iter()
        .map(|f| (f.as_str(), sub_opts(QoS::AtMostOnce)))
        .collect();
    let ack = client
        .subscribe_many(&with_opts, Properties::default())
        .await;
    assert!(ack.reasons.iter().all(|r| *r == ReasonCode::Success));
    let refs: Vec<&str> = filters.iter().map(String::as_str).collect();
    let ack = client.unsubscribe_many(&refs).await;
    assert!(
        ack.reasons.iter().all(|r| *r == ReasonCode::Success),
        "{:?}",
        &ack.reasons[..3]
    );
    let stored = b.stored_subscriptions(&id);
    assert_eq!(stored, 0, "every row removed");
}
