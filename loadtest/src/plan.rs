//! What one `conn`/`sub`/`pub`/`storm` run (or scenario phase) does, validated and ready:
//! the job and its settings, the brokers, the client options, and this process's share of
//! the clients (all of them, or a worker's index range with its share of the connect rate).
//!
//! Pure: no socket, no clock. Built by [`crate::args`]; run by [`crate::runner`].

use std::ops::Range;
use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::session::ClientOpts;
use crate::transport::tls::Handshakes;

/// `sub`: what every subscriber does.
#[derive(Debug, Clone, PartialEq)]
pub struct SubSpec {
    /// Filter (`%i`, `%c` already in the pattern; replaced per client).
    pub topic: String,
    /// Subscription QoS.
    pub qos: u8,
    /// Stop after receiving this many messages, per subscriber.
    pub limit: Option<u64>,
}

/// `pub`: what every publisher does.
#[derive(Debug, Clone, PartialEq)]
pub struct PubSpec {
    /// Topic pattern (`%i`, `%c`).
    pub topic: String,
    /// PUBLISH QoS.
    pub qos: u8,
    /// Payload bytes (at least the 32-byte mark).
    pub size: usize,
    /// Time between two messages of one publisher; zero = as fast as possible.
    pub interval: Duration,
    /// Messages per publisher; `None` = until the duration ends.
    pub limit: Option<u64>,
    /// Unacknowledged QoS 1/2 PUBLISHes allowed per publisher.
    pub inflight: usize,
}

/// `storm`: connect everyone, drop everyone, reconnect, `cycles` times.
#[derive(Debug, Clone, PartialEq)]
pub struct StormSpec {
    /// Reconnect cycles after the first connect.
    pub cycles: u32,
    /// Drops per second for this process; `None` drops all at once.
    pub drop_rate: Option<f64>,
    /// Time connected before each drop (and before the final disconnect).
    pub hold: Duration,
    /// Extra connect attempts per client and phase.
    pub retries: u32,
}

/// The job of a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    /// Connect and stay connected.
    Conn,
    /// Connect, subscribe, receive.
    Sub(SubSpec),
    /// Connect, publish.
    Pub(PubSpec),
    /// Connect/drop/reconnect cycles.
    Storm(StormSpec),
}

impl Job {
    /// The subcommand name.
    pub fn name(&self) -> &'static str {
        match self {
            Job::Conn => "conn",
            Job::Sub(_) => "sub",
            Job::Pub(_) => "pub",
            Job::Storm(_) => "storm",
        }
    }
}

/// One run of one job in this process.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The job.
    pub job: Job,
    /// Brokers, round-robin by client index.
    pub endpoints: Vec<Endpoint>,
    /// How clients connect.
    pub opts: ClientOpts,
    /// The client indices this process runs.
    pub clients: Range<usize>,
    /// Clients of the whole run (all processes).
    pub total_clients: usize,
    /// Connects per second for this process; `None` = all at once.
    pub connect_rate: Option<f64>,
    /// Client id prefix.
    pub prefix: String,
    /// How long the run lasts; `None` = until every client has done its count.
    pub duration: Option<Duration>,
    /// Tag carried in every payload mark of this run's publishers.
    pub run_tag: u64,
    /// `--broker-pid`: a storm reads their CPU time over each connect phase.
    pub broker_pids: Vec<u32>,
}

impl Plan {
    /// Client id of client `index`: `<prefix>_<job>_<index>`.
    pub fn client_id(&self, index: usize) -> String {
        format!("{}_{}_{}", self.prefix, self.job.name(), index)
    }

    /// `pattern` with `%i` (client index) and `%c` (client id) replaced.
    pub fn topic_for(pattern: &str, index: usize, client_id: &str) -> String {
        pattern
            .replace("%i", &index.to_string())
            .replace("%c", client_id)
    }

    /// TLS handshakes completed so far by this plan's clients (zero without `--tls`).
    pub fn tls_handshakes(&self) -> Handshakes {
        self.opts
            .transport
            .tls
            .as_ref()
            .map(|t| t.handshakes())
            .unwrap_or_default()
    }

    /// The endpoint of client `index` (round-robin).
    pub fn endpoint_index(&self, index: usize) -> usize {
        index % self.endpoints.len().max(1)
    }
}

/// The share of `count` clients that worker `k` of `n` runs: a contiguous index range.
pub fn share(count: usize, k: usize, n: usize) -> Range<usize> {
    let n = n.max(1);
    (count * k / n)..(count * (k + 1) / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_client_once() {
        let parts: Vec<_> = (0..3).map(|k| share(10, k, 3)).collect();
        assert_eq!(parts, vec![0..3, 3..6, 6..10]);
        assert_eq!(share(1, 1, 2), 0..1);
        assert_eq!(Plan::topic_for("t/%i/%c", 7, "x_sub_7"), "t/7/x_sub_7");
    }
}
