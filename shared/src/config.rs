//! Node configuration: one schema for the TOML file, the environment and (later) the REST API.
//!
//! Layering, lowest first: built-in defaults → TOML file (`--config`) → environment
//! (`MESHMQ_` prefix, `__` between levels, e.g. `MESHMQ_MQTT__SERVER_KEEPALIVE=30`) → command
//! line flags for the common keys. Loading lives in [`load`]; this module only holds types.
//!
//! The types derive [`JsonSchema`]: `docs/configuration.md`'s table of every setting (key,
//! environment variable, type, default, and the `///` comment below as its description) is
//! generated from that schema and checked by `shared/tests/config_docs.rs`, so a setting
//! added, renamed or re-documented here must be regenerated there.

use std::net::SocketAddr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod alarms;
mod authn;
mod authn_checks;
mod authn_http;
mod authn_jwt;
pub mod authz;
mod authz_http;
mod flapping;
mod listeners;
mod listeners_resolve;
mod load;
mod log;
mod metrics;
pub mod redact;
pub mod runtime;
mod sys_topics;
pub mod tls;
mod trace;

pub use alarms::AlarmsConfig;
pub use authn::{
    AuthenticatorConfig, BuiltInDatabase, BuiltInDatabaseConfig, PasswordBased, ScramConfig,
    UserIdType,
};
pub use authn_http::{
    HTTP_PLACEHOLDERS, HttpAuthnConfig, HttpBackend, HttpMethod, JWT_PLACEHOLDERS, check_template,
};
pub use authn_jwt::{Jwt, JwtAlgorithm, JwtConfig, JwtFrom};
pub use authz::{AuthorizationConfig, AuthzSourceConfig, DenyAction, NoMatch, SubscribeDenyCode};
pub use authz_http::{AUTHZ_HTTP_PLACEHOLDERS, HttpAuthzConfig};
pub use flapping::{FlappingDetectConfig, parse_duration};
pub use listeners::{
    ListenerConfig, ListenerKind, ListenerSpec, ListenersConfig, WebsocketOptions,
};
pub use listeners_resolve::{DEFAULT_NAME, ListenerError, open_listener};
pub use log::{LOG_LEVELS, LogConfig, LogFormat};
pub use metrics::MetricsConfig;
pub use sys_topics::{SysEventMessages, SysTopicsConfig};
pub use trace::TraceConfig;

/// A kibibyte, for byte defaults.
const KIB: usize = 1024;
/// A mebibyte, for byte defaults.
const MIB: usize = 1024 * KIB;
pub use load::{
    ConfigError, ENV_PREFIX, ENV_SEPARATOR, MIN_STATIC_API_KEY_LEN, Overrides,
    check_static_api_key, env_var, load, load_with_env, setting, validate, validate_live,
};

/// The whole configuration of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Node identity and storage.
    pub node: NodeConfig,
    /// Where the node listens.
    pub listeners: ListenersConfig,
    /// MQTT protocol limits and behaviour.
    pub mqtt: MqttConfig,
    /// Where the cluster tables are held: remote cores, or an embedded core.
    pub cluster: ClusterConfig,
    /// The authentication chain (`[[authentication]]` entries, tried in order). Empty:
    /// anonymous clients are accepted, on loopback listeners only unless
    /// `listeners.allow_anonymous` is set.
    pub authentication: Vec<AuthenticatorConfig>,
    /// Flapping detection (EMQX's `flapping_detect`): a client id that disconnects
    /// `max_count` times within `window_time` is banned for `ban_time`.
    pub flapping_detect: FlappingDetectConfig,
    /// Authorization of PUBLISH and SUBSCRIBE (`[authorization]`, with
    /// `[[authorization.sources]]` tried in order).
    pub authorization: AuthorizationConfig,
    /// Log lines: text or JSON, level and per-module directives.
    pub log: LogConfig,
    /// Online traces (`/api/v5/trace`): file size, count and retention bounds.
    pub trace: TraceConfig,
    /// API keys of the HTTP API (EMQX's `api_key`): keys written at start from a file.
    pub api_key: ApiKeyConfig,
    /// What the node measures beyond its counters (`[metrics]`): the sampled
    /// publish-to-deliver latency.
    pub metrics: MetricsConfig,
    /// What the broker publishes under `$SYS/brokers/{node}/...` and how often (EMQX's
    /// `sys_topics`).
    pub sys_topics: SysTopicsConfig,
    /// Alarm checks (thresholds, how often) and the alarm webhook (replicants only).
    pub alarms: AlarmsConfig,
}

/// API keys created at start (EMQX's `api_key` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// File of API keys created at start, one `api_key:api_secret` per line (EMQX's
    /// format; a third field `:administrator` is accepted, other roles refused). A key id
    /// is 1 to 64 of `A-Z a-z 0-9 _ -`; a secret 16 to 128 printable ASCII characters
    /// without `:` (people choose these secrets: the minimum keeps them out of reach of a
    /// guessing attack). Each key not in the cluster yet is added once (as the API key
    /// named `bootstrap_<api_key>`); a key already there is left as it is, so delete it
    /// through the API to change its secret. Setting it makes every operator route need a
    /// key, and counts as a key for an `http_bind` off loopback.
    pub bootstrap_file: Option<PathBuf>,
}

/// How this node reaches the core group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Core QUIC addresses (`host:port`, a DNS name may resolve to several). Empty:
    /// standalone, with an embedded single-voter core in this process (data in
    /// `node.data_dir`).
    pub cores: Vec<String>,
    /// Directory with `ca.pem` and `<node name>.pem`/`.key` (from `core-node gen-certs`).
    /// Default `<data_dir>/certs`, generated on first start (standalone and development).
    pub certs_dir: Option<PathBuf>,
    /// Where the embedded core's QUIC endpoint listens (standalone only).
    #[schemars(extend("format" = "socket-address"))]
    pub embedded_core_bind: SocketAddr,
    /// Where this replicant's peer QUIC endpoint listens (other replicants forward
    /// messages to it; ALPN `meshmq-peer/1`). Not used standalone.
    #[schemars(extend("format" = "socket-address"))]
    pub peer_bind: SocketAddr,
    /// Messages queued per peer before new ones are dropped (and counted).
    pub peer_queue_len: usize,
    /// Bytes of messages (their encoded size) queued per peer before new ones are dropped
    /// and counted (`meshmq_peer_messages_dropped_total{reason="queue_full"}`); past half of
    /// it, publishers feeding the link are held back as for `peer_queue_len`. A single
    /// message larger than it still goes when the queue is empty.
    pub peer_queue_bytes: usize,
    /// Liveness lease with the cores, in milliseconds: the cores purge this node's routes
    /// and registry rows when it has not renewed for this long.
    pub lease_ttl_ms: u64,
    /// Longest a table write may take, retries on another core included, in milliseconds.
    /// A CONNECT whose registry claim does not commit within it is refused (5.0: 0x88
    /// Server unavailable; 3.1.1: code 3); a SUBSCRIBE filter whose rows or route do not,
    /// gets a failure code in its SUBACK.
    pub transact_timeout_ms: u64,
    /// Group commit under load, in milliseconds: when this node's last table request carried
    /// several transactions at once (a connect storm), the next leaves no sooner than this
    /// after it, so that more share one log entry. Nothing waits when the last request
    /// carried one transaction, nor when the round trip to the cores takes longer than this. 0: send as soon as the last
    /// one returns. At most 100.
    pub transact_linger_ms: u64,
    /// Largest table snapshot, in bytes (encoded rows), this replicant accepts from a core
    /// when it (re)joins after the cores purged their log. A core announcing a larger one is
    /// refused (`meshmq_replica_snapshots_aborted_total{reason="too_large"}`) and the
    /// replicant does not become ready; it holds the snapshot being received and its tables
    /// side by side, so keep it below half the memory the node can use.
    pub follow_max_snapshot_bytes: u64,
    /// What this replicant keeps of the `registry` and `subscriptions` tables.
    /// `projection`: only its own clients' rows and those of shared-subscription members,
    /// so its memory does not grow with the cluster's clients (the cores send their verdicts
    /// with each log entry). `full`: every row, as every core does. See docs/roles.md.
    pub registry_replica: RegistryReplica,
}

/// What a replicant keeps of the `registry` and `subscriptions` tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum RegistryReplica {
    /// Its own clients' rows and those of shared-subscription members.
    #[default]
    Projection,
    /// Every row.
    Full,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            cores: Vec::new(),
            certs_dir: None,
            embedded_core_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            peer_bind: SocketAddr::from(([127, 0, 0, 1], 5370)),
            peer_queue_len: 65_536,
            peer_queue_bytes: 64 * MIB,
            lease_ttl_ms: 10_000,
            transact_timeout_ms: 15_000,
            transact_linger_ms: 5,
            follow_max_snapshot_bytes: 16 << 30,
            registry_replica: RegistryReplica::default(),
        }
    }
}

/// Node identity and storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Node name: this node's id in the cluster tables (unique in the cluster), in
    /// `$SYS/brokers/{name}/...`, logs and metrics. Its certificate in the certificate
    /// directory is `<name>.pem`, with every character but ASCII letters, digits, `-` and `.`
    /// written as `-`.
    pub name: String,
    /// Data directory: the embedded core's store (`<data_dir>/core`, standalone only) and
    /// the default certificate directory (`<data_dir>/certs`).
    pub data_dir: PathBuf,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "meshmq@127.0.0.1".into(),
            data_dir: PathBuf::from("data"),
        }
    }
}

/// Strategy for choosing the member of a shared-subscription group that gets a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum SharedStrategy {
    /// A random member per message.
    Random,
    /// Members in turn, starting at a random one.
    #[default]
    RoundRobin,
    /// The same member until it leaves.
    Sticky,
    /// A hash of the publisher's client id picks the member.
    HashClientid,
    /// A hash of the topic picks the member.
    HashTopic,
}

impl SharedStrategy {
    /// True for the strategies that only spread load (random, round robin): they pass over
    /// a member whose queue is past its high-water mark when another member has room. The
    /// others promise a member (sticky, by client id, by topic) and keep it while it is
    /// connected.
    pub fn spreads_load(self) -> bool {
        matches!(self, SharedStrategy::Random | SharedStrategy::RoundRobin)
    }
}

/// What to drop when a session's message queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum QueueDropPolicy {
    /// Drop the oldest queued message to make room (EMQX's default).
    #[default]
    DropOldest,
    /// Drop the incoming message.
    DropNewest,
}

/// MQTT protocol limits and behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Largest packet we accept, in bytes (sent as Maximum Packet Size in a v5 CONNACK).
    /// A retained message is stored in one log entry of the core group, bounded at 2 MiB:
    /// above about that size a retained PUBLISH is delivered but not stored (the write
    /// is refused: a warning, and `meshmq_table_transactions_total{result="error"}`).
    pub max_packet_size: u32,
    /// Server keep-alive cap in seconds: a client asking for more (or 0) gets this value in
    /// CONNACK (v5) and is held to it. Off (`None`) by default.
    pub server_keepalive: Option<u16>,
    /// Our Receive Maximum: QoS 1/2 PUBLISHes a client may have unacknowledged towards us.
    pub receive_maximum: u16,
    /// Cap on our in-flight QoS 1/2 deliveries to one client (also bounded by its Receive Maximum).
    pub max_inflight: u16,
    /// Largest QoS 2 `awaiting_rel` set per session.
    pub max_awaiting_rel: usize,
    /// Seconds after which an unreleased QoS 2 packet id is purged.
    pub await_rel_timeout: u64,
    /// Messages queued per session (offline, or beyond the in-flight window): ONE bound for
    /// everything the session holds that is not in flight; when full, `mqueue_drop_policy`
    /// picks the message dropped (`meshmq_messages_dropped_total{reason="queue_full"}`).
    pub max_mqueue_len: usize,
    /// Bytes queued per session, counted like `max_mqueue_len` and with the same drop
    /// policy. A message counts its payload, topic and variable-length properties (content
    /// type, response topic, correlation data, user properties), even when other sessions
    /// share it. An empty queue still takes one message larger than this.
    pub max_mqueue_bytes: usize,
    /// Bytes all sessions of this node may hold together: their queues (what
    /// `max_mqueue_bytes` counts) and what their connections are writing to their sockets.
    /// Past it, new deliveries are dropped
    /// (`meshmq_messages_dropped_total{reason="node_queue_full"}`). The node's guarantee
    /// that a million sessions with full queues cannot exhaust its memory (see "Sizing").
    pub max_node_mqueue_bytes: u64,
    /// Bytes a connection may hold for a socket that does not keep up: one write is cut
    /// there, and a QoS 0 message that finds this much already waiting (being written, or
    /// QoS 0 in the session's queue) is dropped instead of buffered
    /// (`meshmq_messages_dropped_total{reason="slow_consumer"}`). QoS 1/2 messages wait in
    /// the session's queue instead.
    pub max_write_buffer_bytes: usize,
    /// Whether QoS 0 messages are queued for offline sessions.
    pub mqueue_store_qos0: bool,
    /// Which message a full queue drops.
    pub mqueue_drop_policy: QueueDropPolicy,
    /// Cap on the session expiry interval in seconds. MQTT 3.1.1 clean-session=0 sessions
    /// never expire by the spec; they are held for this long.
    pub max_session_expiry: u32,
    /// Topic Alias Maximum we accept from clients (0 disables inbound aliases).
    pub max_topic_alias: u16,
    /// Bytes of topic names a connection's inbound topic aliases may hold together. A client
    /// whose new alias would pass it is disconnected with 0x97 Quota exceeded (counted in
    /// `meshmq_quota_exceeded_total{quota="topic_alias_bytes"}`).
    pub max_topic_alias_bytes: usize,
    /// Subscriptions a session may hold (EMQX `max_subscriptions`; 0: no limit). A
    /// SUBSCRIBE filter beyond it is refused in the SUBACK with 0x97 Quota exceeded (0x80 in
    /// 3.1.1) and counted (`meshmq_quota_exceeded_total{quota="subscriptions"}`); a filter
    /// the session already has is a re-subscription and always fits.
    pub max_subscriptions: usize,
    /// Retained messages the cluster may store (0: no limit; the broker's own `$SYS` topics
    /// are not counted). A retained PUBLISH on a new topic beyond it is not stored and is
    /// answered as for `max_retained_bytes`; counted
    /// (`meshmq_quota_exceeded_total{quota="retained_messages"}`). Set the same value on
    /// every replicant: each write carries the limit of the node that made it.
    pub max_retained_messages: u64,
    /// Bytes of retained messages the cluster may store, counted as for `max_mqueue_bytes`
    /// (0: no limit). A retained PUBLISH that would pass it is not stored, unless it
    /// replaces a topic's message with one no larger; counted
    /// (`meshmq_quota_exceeded_total{quota="retained_bytes"}`). A refused v5 QoS 1/2
    /// PUBLISH is answered 0x97 Quota exceeded and not delivered; QoS 0 and 3.1.1 ones
    /// (which cannot be told) are delivered to current subscribers without being stored.
    pub max_retained_bytes: u64,
    /// Whether retained messages are supported.
    pub retain_available: bool,
    /// Whether wildcard subscriptions are allowed.
    pub wildcard_subscription: bool,
    /// Whether shared subscriptions are allowed.
    pub shared_subscription: bool,
    /// Strategy for shared subscriptions.
    pub shared_subscription_strategy: SharedStrategy,
    /// Longest client id accepted.
    pub max_clientid_len: usize,
    /// Seconds a new connection has to send CONNECT before it is closed.
    pub connect_timeout: u64,
    /// Milliseconds a connection the broker closes (DISCONNECT with a reason, refusing
    /// CONNACK) keeps reading and discarding the client's input after its write side was
    /// shut down, until the client closes (a "lingering close"). Without it, input that
    /// arrives after the close makes the kernel answer with a reset, and a client still
    /// sending may never read the reason code. 0 closes at once.
    pub close_linger_ms: u64,
    /// Response Information returned when a v5 client asks for it (Request Response
    /// Information = 1); the client builds response topics under it.
    pub response_information: String,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            max_packet_size: 1024 * 1024,
            server_keepalive: None,
            receive_maximum: 32,
            max_inflight: 32,
            max_awaiting_rel: 100,
            await_rel_timeout: 300,
            max_mqueue_len: 1000,
            max_mqueue_bytes: MIB,
            max_node_mqueue_bytes: 8 * 1024 * MIB as u64,
            max_write_buffer_bytes: 256 * KIB,
            mqueue_store_qos0: true,
            mqueue_drop_policy: QueueDropPolicy::DropOldest,
            max_session_expiry: 7 * 24 * 3600,
            max_topic_alias: 65_535,
            max_topic_alias_bytes: 16 * KIB,
            max_subscriptions: 100,
            max_retained_messages: 1_000_000,
            max_retained_bytes: 1024 * MIB as u64,
            retain_available: true,
            wildcard_subscription: true,
            shared_subscription: true,
            shared_subscription_strategy: SharedStrategy::RoundRobin,
            max_clientid_len: 65_535,
            connect_timeout: 15,
            close_linger_ms: 1000,
            response_information: "$response/".into(),
        }
    }
}
