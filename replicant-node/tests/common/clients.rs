//! rumqttc clients (3.1.1 and 5.0) for the tests that exercise the broker with a real client
//! library. Each client's event loop runs in a task that forwards incoming packets into a
//! channel; the test reads them with deadlines (`recv_publish`, `expect_no_publish`, ...).
//!
//! The forwarding task stops at the first connection error, so rumqttc never silently
//! reconnects behind a test's back. Dropping (or [`V4::kill`]/[`V5::kill`]) aborts the task
//! and with it the TCP connection, without DISCONNECT: an abnormal close.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::WAIT;

/// Incoming packets of one client, with a backlog of those read but not yet asked for.
pub struct Events<P> {
    rx: mpsc::UnboundedReceiver<Result<P, String>>,
    backlog: VecDeque<P>,
    /// The error that ended the event loop, once seen.
    pub ended: Option<String>,
}

impl<P: Clone + std::fmt::Debug> Events<P> {
    fn new(rx: mpsc::UnboundedReceiver<Result<P, String>>) -> Events<P> {
        Events {
            rx,
            backlog: VecDeque::new(),
            ended: None,
        }
    }

    /// The first packet for which `pick` returns `Some` within `timeout`; others are kept.
    pub async fn next_where<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&P) -> Option<T>,
    ) -> Option<T> {
        if let Some(i) = self.backlog.iter().position(|p| pick(p).is_some()) {
            let p = self.backlog.remove(i)?;
            return pick(&p);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Err(_) | Ok(None) => return None,
                Ok(Some(Err(e))) => {
                    self.ended = Some(e);
                    return None;
                }
                Ok(Some(Ok(p))) => {
                    if let Some(t) = pick(&p) {
                        return Some(t);
                    }
                    self.backlog.push_back(p);
                }
            }
        }
    }

    /// Waits until the event loop ends with an error (the broker closed the connection).
    pub async fn wait_ended(&mut self, timeout: Duration) -> Option<String> {
        let _ = self.next_where(timeout, |_| None::<()>).await;
        self.ended.clone()
    }
}

/// Forwards the event loop's incoming packets into a channel until the first error.
macro_rules! spawn_forwarder {
    ($eventloop:expr, $event:ident) => {{
        let mut eventloop = $eventloop;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok($event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok($event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        (task, Events::new(rx))
    }};
}

/// An MQTT 3.1.1 rumqttc client.
pub mod v4 {
    use super::*;
    #[allow(unused_imports)] // not every test target uses every name
    pub use rumqttc::{
        AsyncClient, ConnAck, ConnectReturnCode, Event, LastWill, MqttOptions, Packet, Publish, QoS,
    };

    /// A connected 3.1.1 client.
    pub struct V4 {
        /// The request side.
        pub client: AsyncClient,
        /// Incoming packets.
        pub events: Events<Packet>,
        /// The CONNACK the broker answered.
        pub connack: ConnAck,
        task: JoinHandle<()>,
    }

    impl Drop for V4 {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Options for `id` at `addr` (keep alive 60 s, clean session).
    pub fn options(addr: SocketAddr, id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_keep_alive(Duration::from_secs(60));
        o.set_max_packet_size(1024 * 1024, 1024 * 1024);
        o
    }

    /// Connects with `tweak` applied to [`options`]; waits for a successful CONNACK.
    pub async fn connect(addr: SocketAddr, id: &str, tweak: impl FnOnce(&mut MqttOptions)) -> V4 {
        let mut o = options(addr, id);
        tweak(&mut o);
        let (client, eventloop) = AsyncClient::new(o, 100);
        let (task, mut events) = spawn_forwarder!(eventloop, Event);
        let connack = events
            .next_where(WAIT, |p| match p {
                Packet::ConnAck(a) => Some(a.clone()),
                _ => None,
            })
            .await
            .unwrap_or_else(|| panic!("no CONNACK for {id}: {:?}", events.ended));
        assert_eq!(connack.code, ConnectReturnCode::Success, "CONNACK for {id}");
        V4 {
            client,
            events,
            connack,
            task,
        }
    }

    impl V4 {
        /// Subscribes and waits for the SUBACK.
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
            self.client
                .subscribe(filter, qos)
                .await
                .expect("subscribe request");
            self.events
                .next_where(WAIT, |p| matches!(p, Packet::SubAck(_)).then_some(()))
                .await
                .unwrap_or_else(|| panic!("no SUBACK for {filter}: {:?}", self.events.ended));
        }

        /// Publishes; for QoS 1/2 waits until the flow completes (PUBACK / PUBCOMP).
        pub async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: &str) {
            self.client
                .publish(topic, qos, retain, payload.as_bytes().to_vec())
                .await
                .expect("publish request");
            let done = |p: &Packet| match (qos, p) {
                (QoS::AtLeastOnce, Packet::PubAck(_)) | (QoS::ExactlyOnce, Packet::PubComp(_)) => {
                    Some(())
                }
                _ => None,
            };
            if qos != QoS::AtMostOnce {
                self.events
                    .next_where(WAIT, done)
                    .await
                    .unwrap_or_else(|| panic!("publish to {topic} not acknowledged"));
            }
        }

        /// The next PUBLISH within `timeout`.
        pub async fn try_recv_publish(&mut self, timeout: Duration) -> Option<Publish> {
            self.events
                .next_where(timeout, |p| match p {
                    Packet::Publish(p) => Some(p.clone()),
                    _ => None,
                })
                .await
        }

        /// The next PUBLISH (panics after [`WAIT`]).
        pub async fn recv_publish(&mut self) -> Publish {
            match self.try_recv_publish(WAIT).await {
                Some(p) => p,
                None => panic!("expected a PUBLISH (loop ended: {:?})", self.events.ended),
            }
        }

        /// Asserts no PUBLISH arrives within `window`.
        pub async fn expect_no_publish(&mut self, window: Duration) {
            if let Some(p) = self.try_recv_publish(window).await {
                panic!("unexpected PUBLISH on {} payload {:?}", p.topic, p.payload);
            }
        }

        /// Drops the connection without DISCONNECT.
        pub fn kill(self) {
            self.task.abort();
        }
    }
}

/// An MQTT 5.0 rumqttc client.
pub mod v5 {
    use super::*;
    pub use rumqttc::v5::mqttbytes::QoS;
    pub use rumqttc::v5::mqttbytes::v5::{
        ConnAck, ConnectReturnCode, Filter, Packet, Publish, PublishProperties,
        SubscribeProperties, SubscribeReasonCode,
    };
    pub use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    /// A connected 5.0 client.
    pub struct V5 {
        /// The request side.
        pub client: AsyncClient,
        /// Incoming packets.
        pub events: Events<Packet>,
        /// The CONNACK the broker answered.
        pub connack: ConnAck,
        task: JoinHandle<()>,
    }

    impl Drop for V5 {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Options for `id` at `addr` (keep alive 60 s, clean start, 1 MiB incoming packets).
    pub fn options(addr: SocketAddr, id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_keep_alive(Duration::from_secs(60));
        o.set_max_packet_size(Some(1024 * 1024));
        o
    }

    /// Connects with `tweak` applied to [`options`]; waits for a successful CONNACK.
    pub async fn connect(addr: SocketAddr, id: &str, tweak: impl FnOnce(&mut MqttOptions)) -> V5 {
        let mut o = options(addr, id);
        tweak(&mut o);
        let (client, eventloop) = AsyncClient::new(o, 100);
        let (task, mut events) = spawn_forwarder!(eventloop, Event);
        let connack = events
            .next_where(WAIT, |p| match p {
                Packet::ConnAck(a) => Some(a.clone()),
                _ => None,
            })
            .await
            .unwrap_or_else(|| panic!("no CONNACK for {id}: {:?}", events.ended));
        assert_eq!(connack.code, ConnectReturnCode::Success, "CONNACK for {id}");
        V5 {
            client,
            events,
            connack,
            task,
        }
    }

    impl V5 {
        /// Subscribes with full filter options and properties; returns the SUBACK codes.
        pub async fn subscribe_filter(
            &mut self,
            filter: Filter,
            props: Option<SubscribeProperties>,
        ) -> Vec<SubscribeReasonCode> {
            let path = filter.path.clone();
            match props {
                Some(p) => {
                    self.client
                        .subscribe_many_with_properties([filter], p)
                        .await
                }
                None => self.client.subscribe_many([filter]).await,
            }
            .expect("subscribe request");
            self.events
                .next_where(WAIT, |p| match p {
                    Packet::SubAck(a) => Some(a.return_codes.clone()),
                    _ => None,
                })
                .await
                .unwrap_or_else(|| panic!("no SUBACK for {path}: {:?}", self.events.ended))
        }

        /// Subscribes at `qos` and waits for a successful SUBACK.
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
            let codes = self.subscribe_filter(Filter::new(filter, qos), None).await;
            assert_eq!(
                codes,
                vec![SubscribeReasonCode::Success(qos)],
                "SUBACK for {filter}"
            );
        }

        /// Publishes with properties; for QoS 1/2 waits until the flow completes.
        pub async fn publish_props(
            &mut self,
            topic: &str,
            qos: QoS,
            retain: bool,
            payload: &[u8],
            props: PublishProperties,
        ) {
            self.client
                .publish_with_properties(topic, qos, retain, payload.to_vec(), props)
                .await
                .expect("publish request");
            self.wait_publish_done(topic, qos).await;
        }

        /// Publishes without properties; for QoS 1/2 waits until the flow completes.
        pub async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: &str) {
            self.client
                .publish(topic, qos, retain, payload.as_bytes().to_vec())
                .await
                .expect("publish request");
            self.wait_publish_done(topic, qos).await;
        }

        async fn wait_publish_done(&mut self, topic: &str, qos: QoS) {
            let done = |p: &Packet| match (qos, p) {
                (QoS::AtLeastOnce, Packet::PubAck(_)) | (QoS::ExactlyOnce, Packet::PubComp(_)) => {
                    Some(())
                }
                _ => None,
            };
            if qos != QoS::AtMostOnce {
                self.events
                    .next_where(WAIT, done)
                    .await
                    .unwrap_or_else(|| panic!("publish to {topic} not acknowledged"));
            }
        }

        /// The next PUBLISH within `timeout`.
        pub async fn try_recv_publish(&mut self, timeout: Duration) -> Option<Publish> {
            self.events
                .next_where(timeout, |p| match p {
                    Packet::Publish(p) => Some(p.clone()),
                    _ => None,
                })
                .await
        }

        /// The next PUBLISH (panics after [`WAIT`]).
        pub async fn recv_publish(&mut self) -> Publish {
            match self.try_recv_publish(WAIT).await {
                Some(p) => p,
                None => panic!("expected a PUBLISH (loop ended: {:?})", self.events.ended),
            }
        }

        /// Asserts no PUBLISH arrives within `window`.
        pub async fn expect_no_publish(&mut self, window: Duration) {
            if let Some(p) = self.try_recv_publish(window).await {
                panic!(
                    "unexpected PUBLISH on {:?} payload {:?}",
                    p.topic, p.payload
                );
            }
        }

        /// Drops the connection without DISCONNECT.
        pub fn kill(self) {
            self.task.abort();
        }
    }

    /// The topic of a received PUBLISH as text.
    pub fn topic(p: &Publish) -> String {
        String::from_utf8_lossy(&p.topic).into_owned()
    }
}
