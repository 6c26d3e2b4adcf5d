//! The settings of a fan-out run ([`FanoutConfig`]): how many clients, where they connect
//! (one broker, or publishers and subscribers spread over several nodes), what they send,
//! at what rate, and how long; and their validation.
//!
//! Pure: no socket, no clock. It must never let a non-loopback endpoint through unless
//! `allow_remote` is set.

use std::time::Duration;

use anyhow::ensure;

use crate::endpoint::{Endpoint, check_host};
use crate::transport::Transport;
use crate::wire::{MqttVersion, STAMP_LEN};

/// Everything a fan-out run needs.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// Broker host: a loopback address or `localhost` unless `allow_remote`.
    pub host: String,
    /// Broker MQTT port.
    pub port: u16,
    /// Where publishers connect, round-robin by index; empty means `host:port`.
    pub pub_hosts: Vec<Endpoint>,
    /// Where subscribers connect, round-robin by index; empty means `host:port`.
    pub sub_hosts: Vec<Endpoint>,
    /// Allow a broker that is not on this machine.
    pub allow_remote: bool,
    /// Publisher connections.
    pub publishers: usize,
    /// Subscriber connections.
    pub subscribers: usize,
    /// Topic each publisher writes to; `%i` becomes the publisher index.
    pub topic: String,
    /// Filter each subscriber subscribes to; `%i` becomes the subscriber index.
    pub filter: String,
    /// QoS 0 or 1, for publishes and subscriptions alike.
    pub qos: u8,
    /// Payload bytes, at least [`STAMP_LEN`] (timestamp, sequence number, run tag).
    pub size: usize,
    /// QoS 1: unacknowledged PUBLISHes allowed per publisher.
    pub inflight: usize,
    /// Total PUBLISHes per second over all publishers (split evenly, staggered); `None`
    /// publishes as fast as the broker takes them.
    pub rate: Option<f64>,
    /// Keep a latency sample for every `sample_every`-th message of each publisher (a power
    /// of two).
    pub sample_every: u64,
    /// Publishing before the window opens.
    pub warmup: Duration,
    /// Length of the measurement window.
    pub duration: Duration,
    /// MQTT protocol level.
    pub version: MqttVersion,
    /// Broker processes to sample for RSS and CPU (summed: a cluster is several).
    pub broker_pids: Vec<u32>,
    /// Deadline for each CONNECT/CONNACK and SUBSCRIBE/SUBACK.
    pub connect_timeout: Duration,
    /// The drain ends once deliveries have not moved for this long.
    pub drain_quiet: Duration,
    /// Labels copied into the report.
    pub broker_name: Option<String>,
    /// Scenario label copied into the report.
    pub scenario: Option<String>,
    /// How every client reaches the broker: TCP, TLS, WebSocket (`--tls`, `--ws`, ...).
    pub transport: Transport,
}

impl FanoutConfig {
    /// A config with the defaults of the command line for `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> FanoutConfig {
        FanoutConfig {
            host: host.into(),
            port,
            pub_hosts: Vec::new(),
            sub_hosts: Vec::new(),
            allow_remote: false,
            publishers: 10,
            subscribers: 10,
            topic: "bench/%i".to_owned(),
            filter: "bench/#".to_owned(),
            qos: 0,
            size: 100,
            inflight: 32,
            rate: None,
            sample_every: 64,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            version: MqttVersion::V311,
            broker_pids: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            drain_quiet: Duration::from_millis(250),
            broker_name: None,
            scenario: None,
            transport: Transport::default(),
        }
    }

    /// Checks the settings that do not need the network.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.publishers > 0 && self.subscribers > 0,
            "need publishers and subscribers"
        );
        ensure!(self.qos <= 1, "--qos must be 0 or 1");
        ensure!(
            self.size >= STAMP_LEN,
            "--size must be at least {STAMP_LEN} bytes"
        );
        ensure!(self.inflight > 0, "--inflight must be at least 1");
        ensure!(!self.duration.is_zero(), "--duration must be positive");
        if let Some(rate) = self.rate {
            ensure!(
                rate.is_finite() && rate > 0.0,
                "--rate must be a positive number of messages per second"
            );
        }
        ensure!(
            self.sample_every.is_power_of_two(),
            "--sample-every must be a power of two"
        );
        check_host(&self.host, self.allow_remote)?;
        for endpoint in self
            .publisher_hosts()
            .iter()
            .chain(&self.subscriber_hosts())
        {
            endpoint.check(self.allow_remote)?;
        }
        Ok(())
    }

    /// The endpoints publishers use: `pub_hosts`, or `host:port` when it is empty.
    pub fn publisher_hosts(&self) -> Vec<Endpoint> {
        self.hosts_or_default(&self.pub_hosts)
    }

    /// The endpoints subscribers use: `sub_hosts`, or `host:port` when it is empty.
    pub fn subscriber_hosts(&self) -> Vec<Endpoint> {
        self.hosts_or_default(&self.sub_hosts)
    }

    fn hosts_or_default(&self, list: &[Endpoint]) -> Vec<Endpoint> {
        if list.is_empty() {
            vec![Endpoint::new(&self.host, self.port)]
        } else {
            list.to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_policy_covers_every_endpoint() {
        let ok = FanoutConfig::new("127.0.0.1", 1883);
        assert_eq!(ok.publisher_hosts(), vec![Endpoint::new("127.0.0.1", 1883)]);
        let split = FanoutConfig {
            sub_hosts: vec![Endpoint::new("127.0.0.1", 2), Endpoint::new("::1", 3)],
            ..ok.clone()
        };
        assert!(split.validate().is_ok());
        assert_eq!(split.subscriber_hosts().len(), 2);
        assert_eq!(split.publisher_hosts(), ok.publisher_hosts());
        for remote in [
            Endpoint::new("10.0.0.1", 1883),
            Endpoint::new("example.com", 1),
        ] {
            let subs = FanoutConfig {
                sub_hosts: vec![Endpoint::new("127.0.0.1", 2), remote.clone()],
                ..ok.clone()
            };
            assert!(subs.validate().is_err(), "{remote}");
            let pubs = FanoutConfig {
                pub_hosts: vec![remote.clone()],
                ..ok.clone()
            };
            assert!(pubs.validate().is_err(), "{remote}");
            let allowed = FanoutConfig {
                allow_remote: true,
                ..pubs
            };
            assert!(allowed.validate().is_ok(), "{remote}");
        }
    }

    #[test]
    fn validate_rejects_bad_rate_and_sampling() {
        let ok = FanoutConfig::new("127.0.0.1", 1883);
        let with = |rate, sample_every| FanoutConfig {
            rate,
            sample_every,
            ..ok.clone()
        };
        assert!(with(Some(2000.0), 1).validate().is_ok());
        for (rate, every) in [
            (Some(0.0), 64),
            (Some(-1.0), 64),
            (Some(f64::NAN), 64),
            (None, 0),
            (None, 3),
        ] {
            assert!(with(rate, every).validate().is_err(), "{rate:?} {every}");
        }
    }

    #[test]
    fn validate_rejects_bad_settings() {
        let ok = FanoutConfig::new("127.0.0.1", 1883);
        assert!(ok.validate().is_ok());
        assert!(
            FanoutConfig {
                qos: 2,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            FanoutConfig {
                size: 15,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            FanoutConfig {
                publishers: 0,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            FanoutConfig {
                host: "8.8.8.8".into(),
                ..ok
            }
            .validate()
            .is_err()
        );
    }
}
