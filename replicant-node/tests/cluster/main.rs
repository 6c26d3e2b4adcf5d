//! Cluster tests of the invariants in docs/architecture.md: three real cores (`CoreNode`,
//! Raft over QUIC with mutual TLS, redb in tempdirs) and replicants (`Broker`s with
//! `cluster.cores` set) in one process on 127.0.0.1:0, driven by MQTT clients (rumqttc) and
//! by direct transactions.
//!
//! One module per area: [`acks`] (what SUBACK and CONNACK may claim without a core
//! majority), [`api_keys`] (API keys of the REST API, on every replicant), [`replication`] (writes through any replicant are seen everywhere;
//! a 100 000-op burst converges), [`failover`] (leader loss is invisible to replicants and
//! their clients), [`catchup`] (a replicant catches up from the log, or from a snapshot when
//! the log was purged; it switches core and resumes), [`entry_bytes`] (transactions larger
//! than one log entry together are split at the entry byte bound), [`authn_api`] (users imported
//! through one replicant reach the other; they survive a full restart), [`lease`] (a silent replicant's rows
//! are purged), [`routing`] and [`shared`] (messages and shared groups across replicants),
//! [`authz`] (built-in authorization rules written on one replicant, enforced on another),
//! [`api_clients`] and [`api_messages`] (the clients, subscriptions, topics, publish and retained
//! REST API across replicants), [`sys`] (`$SYS` events and stats of one replicant seen on another),
//! [`takeover`], [`handover`], [`reconnect`] and [`wills`] (sessions follow their client to
//! another replicant), [`banned`] (bans hold on every replicant), [`settings`] (the generic
//! key/value table is seen on every replicant, with compare-and-set), [`evacuation`], [`evacuation_restart`] and [`rebalance`] (the
//! `load_rebalance` API), [`evacuate_wait`] (`ctl ... --wait-done` and loadtest's disconnect
//! counts while a node is evacuated), [`alarms`] (alarms raised and cleared by real conditions, the API,
//! the webhook), [`data_backup`] (an export of one cluster imported into a fresh one), [`wire`]
//! (the inter-node protocol version between replicants and cores). [`harness`] starts and stops the nodes. Tests run one at a time
//! ([`harness::serial`]); every wait has a deadline.

// The shared helpers re-export more of rumqttc than these tests use.
#[allow(unused_imports)]
#[path = "../common/mod.rs"]
mod common;

mod acks;
mod alarm_hook;
mod alarms;
mod api_clients;
mod api_keys;
mod api_messages;
mod authn_api;
mod authz;
mod banned;
mod catchup;
mod configs;
mod ctl;
mod data_backup;
mod entry_bytes;
mod evacuate_wait;
mod evacuation;
mod evacuation_restart;
mod failover;
mod handover;
mod harness;
mod health;
mod leader_crash;
mod lease;
mod nodes_api;
mod peer_api;
mod projection;
mod rebalance;
mod reconnect;
mod replication;
mod routing;
mod settings;
mod shared;
mod stats_api;
mod sys;
mod takeover;
mod trace;
mod wills;
mod wire;
