//! Authorization hooks (MQTT 5.0 sections 3.9.3, 3.4.2.1): an [`Authorizer`] that refuses
//! `secret/...` makes SUBACK fail for that filter only (0x80 / 0x87), answers a 5.0 QoS 1
//! PUBLISH with PUBACK 0x87, silently drops a denied QoS 0 PUBLISH, and applies to wills; the
//! hook sees the client id, the user name and the filter as sent.

use std::sync::{Arc, Mutex};

use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{Properties, QoS, ReasonCode};
use replicant_node::{Authorizer, AuthzAction};

use crate::common::raw::{RawClient, connect_packet, sub_opts, will};
use crate::common::{self, QUIET, TestBroker};

/// Denies subscribing to any filter under `secret/` and publishing to `secret/x`.
struct DenySecret;

impl Authorizer for DenySecret {
    fn check(
        &self,
        _client_id: &str,
        _username: Option<&str>,
        action: AuthzAction,
        topic: &str,
    ) -> bool {
        match action {
            AuthzAction::Subscribe => !topic.starts_with("secret/"),
            AuthzAction::Publish => topic != "secret/x",
        }
    }
}

async fn broker() -> TestBroker {
    common::start_broker_with_authz(|_| {}, Arc::new(DenySecret)).await
}

#[tokio::test]
async fn v5_3_9_3_denied_subscription_fails_for_that_filter_only() {
    let b = broker().await;
    for (v, denied) in [
        (V311, ReasonCode::UnspecifiedError),
        (V5, ReasonCode::NotAuthorized),
    ] {
        let mut c = RawClient::connect(b.mqtt_addr(), v, &common::unique("authz-sub")).await;
        let filters = [
            ("secret/#", sub_opts(QoS::AtLeastOnce)),
            ("public/#", sub_opts(QoS::AtLeastOnce)),
        ];
        let ack = c.subscribe_many(&filters, Properties::default()).await;
        assert_eq!(
            ack.reasons,
            vec![denied, ReasonCode::GrantedQoS1],
            "{v:?}: 0x80 (3.1.1) / 0x87 (5.0) for secret/# only"
        );
        // The granted one works; the refused one receives nothing.
        let mut publisher =
            RawClient::connect(b.mqtt_addr(), V5, &common::unique("authz-pub")).await;
        publisher
            .publish("secret/y", "s", QoS::AtLeastOnce, false)
            .await;
        publisher
            .publish("public/y", "p", QoS::AtLeastOnce, false)
            .await;
        let p = c.recv_publish().await;
        assert_eq!(
            p.topic, "public/y",
            "{v:?}: the refused filter delivered {p:?}"
        );
    }
}

#[tokio::test]
async fn v5_3_4_2_1_denied_publish_gets_puback_0x87_or_is_dropped() {
    let b = broker().await;
    let mut sub = RawClient::connect(b.mqtt_addr(), V5, "authz-watch").await;
    sub.subscribe("+/x", QoS::AtLeastOnce).await;

    let mut c5 = RawClient::connect(b.mqtt_addr(), V5, "authz-pub5").await;
    assert_eq!(
        c5.publish("secret/x", "q1", QoS::AtLeastOnce, false).await,
        ReasonCode::NotAuthorized,
        "5.0 PUBACK 0x87"
    );
    assert_eq!(
        c5.publish("secret/x", "q2", QoS::ExactlyOnce, false).await,
        ReasonCode::NotAuthorized,
        "5.0 PUBREC 0x87"
    );
    c5.publish("secret/x", "q0", QoS::AtMostOnce, false).await;
    c5.ping().await; // still connected
    // 3.1.1 has no failure PUBACK: acknowledged, not delivered.
    let mut c3 = RawClient::connect(b.mqtt_addr(), V311, "authz-pub3").await;
    assert_eq!(
        c3.publish("secret/x", "v3q1", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::Success
    );
    c3.publish("secret/x", "v3q0", QoS::AtMostOnce, false).await;
    // Marker from the same publisher: the first (and only) delivery.
    c3.publish("public/x", "marker", QoS::AtLeastOnce, false)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(p.topic, "public/x", "a denied publish was delivered: {p:?}");
    sub.ack(&p).await;
    sub.expect_no_publish(QUIET).await;
}

/// One recorded check: client id, user name, action, topic or filter.
type Check = (String, Option<String>, AuthzAction, String);

/// Records every check and allows everything.
#[derive(Default)]
struct Recorder(Mutex<Vec<Check>>);

impl Authorizer for Recorder {
    fn check(
        &self,
        client_id: &str,
        username: Option<&str>,
        action: AuthzAction,
        topic: &str,
    ) -> bool {
        if let Ok(mut v) = self.0.lock() {
            v.push((
                client_id.to_owned(),
                username.map(str::to_owned),
                action,
                topic.to_owned(),
            ));
        }
        true
    }
}

#[tokio::test]
async fn authz_hook_sees_client_id_username_and_full_filter() {
    let rec = Arc::new(Recorder::default());
    let b = common::start_broker_with_authz(|_| {}, rec.clone()).await;
    let mut connect = connect_packet(V5, "hooked");
    connect.username = Some("alice".into());
    connect.password = Some(bytes::Bytes::from_static(b"pw"));
    let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), connect).await;
    assert_eq!(ack.code, ReasonCode::Success);
    c.subscribe("$share/grp/h/#", QoS::AtMostOnce).await;
    c.publish("h/x", "x", QoS::AtLeastOnce, false).await;
    let seen = rec.0.lock().map(|v| v.clone()).unwrap_or_default();
    let alice = Some("alice".to_owned());
    assert!(
        seen.contains(&(
            "hooked".into(),
            alice.clone(),
            AuthzAction::Subscribe,
            "$share/grp/h/#".into()
        )),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("hooked".into(), alice, AuthzAction::Publish, "h/x".into())),
        "{seen:?}"
    );
}

#[tokio::test]
async fn authz_will_to_a_denied_topic_is_not_published() {
    let b = broker().await;
    let mut sub = RawClient::connect(b.mqtt_addr(), V5, "will-watch").await;
    sub.subscribe("+/x", QoS::AtMostOnce).await;
    for (id, topic) in [("denied-will", "secret/x"), ("allowed-will", "public/x")] {
        let mut connect = connect_packet(V5, id);
        connect.will = Some(will(topic, id, QoS::AtMostOnce));
        let (c, _) = RawClient::connect_with(b.mqtt_addr(), connect).await;
        drop(c);
        // Settle each will before the next (the broker stops counting a connection after it).
        assert!(common::wait_until(common::WAIT, || b.connections() == 1).await);
    }
    let p = sub.recv_publish().await;
    assert_eq!(
        p.topic, "public/x",
        "a will to a denied topic was published: {p:?}"
    );
}
