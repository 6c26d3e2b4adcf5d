//! Every metric name meshmq exports, defined once.
//!
//! Owns the names (Prometheus conventions, `meshmq_` prefix, `_total` on counters) and, in
//! each doc comment, the metric's kind, what it counts and its labels. It must never record
//! anything or depend on a metrics library: recording happens where the event happens
//! (`metrics::counter!(m::CONNACK_TOTAL, "reason" => ...)`), and the descriptions are
//! registered with the recorder by `replicant_node::http::describe_all`.
//!
//! Label values are small fixed sets (reason labels, packet type names, `0`/`1`/`2` for QoS);
//! never put a client id or a topic in a label.

mod buckets;
mod core_group;
mod data;
mod process;

pub use buckets::*;
pub use core_group::*;
pub use data::*;
pub use process::*;

/// Gauge: live MQTT connections. Labels: `transport` (`tcp`, `ssl`, `ws`, `wss`).
pub const CONNECTIONS: &str = "meshmq_connections";
/// Counter: connections accepted by a listener (before CONNECT). No labels.
pub const CONNECTIONS_ACCEPTED_TOTAL: &str = "meshmq_connections_accepted_total";
/// Counter: connections refused or closed before a session existed. Labels: `reason`
/// (`max_connections`, `listener_max_connections`, `connect_timeout`, or a CONNACK reason
/// code label).
pub const CONNECTIONS_REFUSED_TOTAL: &str = "meshmq_connections_refused_total";
/// Counter: CONNACK packets sent. Labels: `reason` (reason code label, `success` included).
pub const CONNACK_TOTAL: &str = "meshmq_connack_total";
/// Counter: connections that ended after their CONNACK, each counted once when it closes.
/// Labels: `reason` (EMQX's names where it has one: `normal`: the client sent DISCONNECT;
/// `sock_closed`: the socket closed or failed without DISCONNECT (a write that failed or
/// timed out included); `keepalive_timeout`; `takenover`: a new connection resumed the
/// session; `discarded`: a new connection with clean start ended it; `kicked`: an operator
/// closed it; `banned`; `evacuated`: this node's evacuation moved it (0x9C);
/// `not_authorized`: a publish denied with `deny_action = disconnect`, credentials expired,
/// or a failed re-authentication; `quota_exceeded`; `frame_too_large`; `protocol_error`: any
/// other protocol violation, a malformed packet included; `server_shutdown`).
pub const DISCONNECTS_TOTAL: &str = "meshmq_disconnects_total";
/// Gauge: connections on a listener now (TLS and WebSocket handshakes included). Labels:
/// `listener` (`type:name`, e.g. `tcp:default`).
pub const LISTENER_CONNECTIONS: &str = "meshmq_listener_connections";
/// Gauge: a listener's `max_connections` (listeners without a cap of their own have no
/// series). Labels: `listener`.
pub const LISTENER_MAX_CONNECTIONS: &str = "meshmq_listener_max_connections";
/// Gauge: sessions held on this node, connected or not. No labels.
pub const SESSIONS: &str = "meshmq_sessions";
/// Counter: sessions discarded because their expiry interval ran out. No labels.
pub const SESSIONS_EXPIRED_TOTAL: &str = "meshmq_sessions_expired_total";
/// Counter: persistent sessions rebuilt from the `subscriptions` table on a CONNECT with
/// clean start = 0 that no live session of this process held (node restart, dead replicant).
/// No labels.
pub const SESSIONS_RESTORED_TOTAL: &str = "meshmq_sessions_restored_total";
/// Counter: sessions taken over by a new connection with the same client id. No labels.
pub const TAKEOVERS_TOTAL: &str = "meshmq_takeovers_total";
/// Counter: cross-node session hand-overs, by `role` (`give`: this node held the session;
/// `take`: a client connected here) and `result` (`ok`, `not_found`, `timeout`,
/// `unreachable`, `abandoned`).
pub const HANDOVERS_TOTAL: &str = "meshmq_session_handovers_total";
/// Counter: deliveries moved with a handed-over session (in flight, queued, and forwarded
/// during the hand-over), by `direction` (`sent`, `received`).
pub const HANDOVER_MESSAGES_TOTAL: &str = "meshmq_session_handover_messages_total";
/// Counter: connections closed by this node's evacuation (v5: DISCONNECT 0x9C). No labels.
pub const EVACUATION_CONNECTIONS_EVICTED_TOTAL: &str =
    "meshmq_evacuation_connections_evicted_total";
/// Counter: disconnected sessions this node's evacuation offered to another node, by
/// `result` (`migrated`: it left this node after the offer, taken by the adopter or by its
/// own client; `given_up`: still here after every attempt).
pub const EVACUATION_SESSIONS_MIGRATED_TOTAL: &str = "meshmq_evacuation_sessions_migrated_total";
/// Counter: sessions offered by an evacuating node, by `result` (`ok`: adopted with its
/// messages; `rebuilt`: adopted from the tables only, the old node did not hand it over;
/// `skipped`: its client was back, it expired, or it was here already).
pub const EVACUATION_SESSIONS_ADOPTED_TOTAL: &str = "meshmq_evacuation_sessions_adopted_total";
/// Gauge: 1 while this node is being evacuated (health check 503), else 0. No labels.
pub const EVACUATING: &str = "meshmq_evacuating";
/// Gauge: subscriptions in this node's router (shared subscriptions included). No labels.
pub const SUBSCRIPTIONS: &str = "meshmq_subscriptions";
/// Gauge: retained messages stored. No labels.
pub const RETAINED_MESSAGES: &str = "meshmq_retained_messages";
/// Gauge: bytes of the retained messages stored (payload, topic and properties, as
/// `mqtt.max_retained_bytes` counts them). No labels.
pub const RETAINED_BYTES: &str = "meshmq_retained_bytes";
/// Counter: requests refused because a quota was reached, each answered with 0x97 Quota
/// exceeded where the protocol can say it. Labels: `quota` (`subscriptions`: a SUBSCRIBE
/// filter past `mqtt.max_subscriptions`; `retained_messages`, `retained_bytes`: a retained
/// message not stored; `topic_alias_bytes`: a client disconnected past
/// `mqtt.max_topic_alias_bytes`).
pub const QUOTA_EXCEEDED_TOTAL: &str = "meshmq_quota_exceeded_total";
/// Counter: retained messages that SUBSCRIBE replays handed to subscribers' sessions (sent,
/// or dropped there as expired or too large for the client). No labels.
pub const RETAINED_REPLAYED_TOTAL: &str = "meshmq_retained_replayed_total";
/// Counter: retained replays ended. Labels: `outcome` (`completed`; `replaced`: a new
/// SUBSCRIBE of the filter restarted it; `unsubscribed`; `closed`: the connection ended).
pub const RETAINED_REPLAYS_TOTAL: &str = "meshmq_retained_replays_total";
/// Gauge: retained replays running or waiting their turn on this node's connections.
pub const RETAINED_REPLAYS: &str = "meshmq_retained_replays";
/// Counter: PUBLISH packets received from clients. Labels: `qos` (`0`, `1`, `2`).
pub const MESSAGES_RECEIVED_TOTAL: &str = "meshmq_messages_received_total";
/// Counter: PUBLISH packets delivered to subscribers. Labels: `qos` (`0`, `1`, `2`) where known.
pub const MESSAGES_DELIVERED_TOTAL: &str = "meshmq_messages_delivered_total";
/// Counter: messages dropped instead of delivered. Labels: `reason` (`queue_full`: the
/// session's queue was at `mqtt.max_mqueue_len` or `mqtt.max_mqueue_bytes`;
/// `node_queue_full`: the node's sessions held `mqtt.max_node_mqueue_bytes`;
/// `slow_consumer`: a QoS 0 message for a connection already holding
/// `mqtt.max_write_buffer_bytes`; `no_subscribers`, `expired`, `too_large_for_client`,
/// `not_authorized`, `inflight_full_qos0`, `offline_qos0`, `session_ended`, `sys_topic`: a
/// client's PUBLISH or will to `$SYS` or `$SYS/...`, the broker's own namespace, refused
/// unless the authorizer grants it; 5.0 QoS 1/2 publishers got PUBACK/PUBREC 0x87, nothing
/// was stored as retained; `sys_event_client_id`: a `$SYS` client event not published
/// because the client id contains `+`, `#` or `/` and cannot be one topic level).
pub const MESSAGES_DROPPED_TOTAL: &str = "meshmq_messages_dropped_total";
/// Counter: times a publishing connection stopped reading (for at most 50 ms) because a
/// subscriber queue it feeds was past its high-water mark (half of `mqtt.max_mqueue_len` or
/// of `mqtt.max_mqueue_bytes`) or a peer link it feeds was half full (in messages or
/// bytes). Labels: `on` (`subscriber_queue`, `peer_link`).
pub const PUBLISH_BACKPRESSURE_TOTAL: &str = "meshmq_publish_backpressure_total";
/// Gauge: messages waiting in the session queues of this node (offline sessions, or beyond a
/// session's in-flight window; what a connection is writing is not counted). No labels.
pub const MESSAGES_QUEUED: &str = "meshmq_messages_queued";
/// Histogram: seconds from a client's PUBLISH being accepted to a copy of it being written
/// to a subscriber's connection, for one in `metrics.latency_sample_every` accepted
/// PUBLISHes (every subscriber of a sampled message is measured; redeliveries are not).
/// Labels: `path` (`local`: publisher and subscriber on this node, measured on one clock;
/// `remote`: the message came from another replicant, measured from the publishing node's
/// wall clock, so clock skew between the nodes is included).
pub const DELIVERY_LATENCY_SECONDS: &str = "meshmq_message_delivery_latency_seconds";
/// Counter: MQTT packets decoded. Labels: `type` (packet type, e.g. `publish`).
pub const PACKETS_RECEIVED_TOTAL: &str = "meshmq_packets_received_total";
/// Counter: MQTT packets encoded and written. Labels: `type` (packet type, e.g. `puback`).
pub const PACKETS_SENT_TOTAL: &str = "meshmq_packets_sent_total";
/// Counter: bytes read from client connections (TCP and WebSocket payload). No labels.
pub const BYTES_RECEIVED_TOTAL: &str = "meshmq_bytes_received_total";
/// Counter: bytes written to client connections. No labels.
pub const BYTES_SENT_TOTAL: &str = "meshmq_bytes_sent_total";
/// Counter: packets that failed to decode; the connection is closed. Labels: `reason`
/// (decoder error label).
pub const MALFORMED_PACKETS_TOTAL: &str = "meshmq_malformed_packets_total";
/// Counter: well-formed packets that broke a protocol rule. Labels: `reason`
/// (e.g. `unexpected_packet`, `topic_alias`, `session_expiry`, `subscription_identifier`:
/// a client PUBLISH carrying a Subscription Identifier, MQTT-3.3.4-6).
pub const PROTOCOL_ERRORS_TOTAL: &str = "meshmq_protocol_errors_total";
/// Counter: operations refused by the authorizer. Labels: `action` (`publish`, `subscribe`).
pub const AUTHZ_DENIED_TOTAL: &str = "meshmq_authz_denied_total";
/// Counter: authorization answers, per source asked. Labels: `source` (`client`: rules
/// attached at CONNECT, `file`, `built_in_database`, `hook`: the embedder's authorizer),
/// `result` (`allow`, `deny`, `nomatch`).
pub const AUTHZ_TOTAL: &str = "meshmq_authorization_total";
/// Counter: authorization decisions, each counted once (a PUBLISH, a will, a SUBSCRIBE
/// filter). Labels: `result` (`allow`, `deny`), `source`: what decided (`superuser`;
/// `cache`: the connection's cache; `client`, `file`, `built_in_database`, `http`: the first
/// rule that matched, EMQX's `matched.allow/deny`; `no_match`: no rule matched and
/// `authorization.no_match` decided, EMQX's `nomatch`; `hook`: the embedder's authorizer
/// denied; `sys_topic`: a publish into `$SYS` without a grant).
pub const AUTHZ_DECISIONS_TOTAL: &str = "meshmq_authorization_decisions_total";
/// Counter: lookups in the per-connection authorization cache. Labels: `result` (`hit`,
/// `miss`).
pub const AUTHZ_CACHE_TOTAL: &str = "meshmq_authorization_cache_total";
/// Counter: authentication decisions, per authenticator of the chain. Labels:
/// `authenticator` (EMQX's id, e.g. `password_based:built_in_database`), `result` (`allow`,
/// `deny`, `ignore`, `error`).
pub const AUTHN_TOTAL: &str = "meshmq_authentication_total";
/// Counter: authentication outcomes of CONNECTs, each counted once (EMQX's
/// `authentication.success`, `.success.anonymous`, `.failure`). Labels: `result`
/// (`success`: an authenticator or SCRAM exchange allowed it; `success_anonymous`: no
/// authenticator was asked (none configured, or `enable_authn = false` on the listener);
/// `failure`: refused, timed out or overloaded).
pub const AUTHN_RESULTS_TOTAL: &str = "meshmq_authentication_results_total";
/// Counter: CONNECTs refused because the password-hashing queue was full or their check
/// waited longer than `mqtt.connect_timeout`. No labels.
pub const AUTHN_OVERLOAD_TOTAL: &str = "meshmq_authentication_overload_total";
/// Histogram: time one authenticator took to decide, hashing queue included. Labels:
/// `authenticator`.
pub const AUTHN_SECONDS: &str = "meshmq_authentication_seconds";
/// Counter: SCRAM exchanges (at CONNECT or re-authentication) that failed, by why. Labels:
/// `reason` (`malformed`, `channel_binding`, `unsupported`, `nonce_mismatch`,
/// `binding_mismatch`, `invalid_proof`, `username_mismatch`, `protocol_error`, `timeout`).
/// An unknown user counts as `invalid_proof`, like a wrong proof: this endpoint needs no
/// key, so it must not tell whether a user exists (the finer reason is logged at `debug`).
pub const AUTHN_SCRAM_FAILURES_TOTAL: &str = "meshmq_authentication_scram_failures_total";
/// Counter: requests to the authentication REST API (`/api/v5/authentication...`) answered
/// with an error. Labels: `code` (`BAD_REQUEST`, `NOT_FOUND`, `ALREADY_EXISTS`,
/// `UNAUTHORIZED`, `SERVICE_UNAVAILABLE`, ...).
pub const AUTHN_API_ERRORS_TOTAL: &str = "meshmq_authn_api_errors_total";
/// Counter: operator REST requests refused 403 because no key is required and they look
/// like they come from a browser (CSRF, DNS rebinding). Labels: `reason`
/// (`origin`: an `Origin` header; `host`: a `Host` that is neither an IP address nor
/// `localhost`), or, with keys, because they carry HTTP Basic credentials from another
/// origin (`ambient`: what a browser attaches on its own).
pub const API_FORBIDDEN_TOTAL: &str = "meshmq_api_forbidden_total";
/// Counter: REST requests refused 401 for their API key. Labels: `reason` (`missing`: no
/// usable `Authorization`; `malformed`: not `id:secret`; `invalid`: anything that depends on
/// the cluster's keys — unknown key, wrong secret, disabled or expired — in one label, so
/// that `/metrics` never tells which: the detail is logged, without the secret).
pub const API_KEY_REFUSED_TOTAL: &str = "meshmq_api_key_refused_total";
/// Counter: rows of `import_users` files, by outcome. Labels: `result` (`success`,
/// `override`, `skipped`, `failed`).
pub const AUTHN_IMPORT_ROWS_TOTAL: &str = "meshmq_authn_import_rows_total";
/// Counter: CONNECTs refused because a ban matched (also counted in
/// `meshmq_connections_refused_total{reason="0x8a"}`). Labels: `as` (`clientid`, `username`,
/// `peerhost`, `peerhost_net`).
pub const BANNED_REFUSED_TOTAL: &str = "meshmq_banned_refused_total";
/// Counter: live connections closed because a ban that matches them was applied. No labels.
pub const BANNED_KICKED_TOTAL: &str = "meshmq_banned_kicked_total";
/// Counter: REST requests to `/api/v5/banned` refused for their input (400, or 415 for a
/// body not sent as `application/json`). No labels.
pub const BANNED_API_BAD_REQUESTS_TOTAL: &str = "meshmq_banned_api_bad_requests_total";
/// Counter: REST requests to the clients, subscriptions, topics, publish and retained routes
/// refused for their input (400, 413, 415). Labels: `api` (`clients`, `subscriptions`,
/// `topics`, `publish`, `retained`).
pub const MGMT_API_BAD_REQUESTS_TOTAL: &str = "meshmq_mgmt_api_bad_requests_total";
/// Counter: messages published through `/api/v5/publish` (and `/publish/bulk`), by outcome.
/// Labels: `result` (`delivered`, `no_subscribers`, `refused`).
pub const API_PUBLISHED_TOTAL: &str = "meshmq_api_published_total";
/// Counter: clients kicked through `DELETE /api/v5/clients/{clientid}` on this node (the
/// connection closed with DISCONNECT 0x98 and the session discarded). No labels.
pub const API_KICKED_TOTAL: &str = "meshmq_api_kicked_total";
/// Gauge: alarms active on this node, 1 while active, 0 once deactivated. Labels: `name`
/// (the alarm's name, e.g. `core_link_down`, `listener_max_connections:tcp:default`: one
/// per check, listener and peer node, a bounded set).
pub const ALARMS_ACTIVE: &str = "meshmq_alarms_active";
/// Counter: alarm notifications (activations and deactivations) the webhook gave up on or
/// never sent. Labels: `reason` (`queue_full`: dropped, its URL's queue held
/// `alarms.webhook_queue_len` or `webhook_queue_bytes`; `retries_exhausted`: every attempt
/// failed).
pub const ALARM_WEBHOOK_FAILURES_TOTAL: &str = "meshmq_alarm_webhook_failures_total";
/// Counter: alarm webhook requests, by outcome. Labels: `result` (`ok`: a 2xx answer;
/// `error`: a connection error, a timeout or another status, retried while retries are
/// left).
pub const ALARM_WEBHOOK_REQUESTS_TOTAL: &str = "meshmq_alarm_webhook_requests_total";
/// Counter: writes to the `settings` table (`replicant_node::settings`) that did not apply.
/// Labels: `reason` (`invalid`, `conflict`, `full`, `unavailable`).
pub const SETTINGS_WRITES_REFUSED_TOTAL: &str = "meshmq_settings_writes_refused_total";
/// Counter: client ids banned by flapping detection (the ban committed). No labels.
pub const FLAPPING_BANS_TOTAL: &str = "meshmq_flapping_bans_total";
/// Counter: disconnects flapping detection did not count because it already tracked
/// its maximum of client ids, and detections not committed because too many bans were
/// being committed already. No labels.
pub const FLAPPING_UNTRACKED_TOTAL: &str = "meshmq_flapping_untracked_total";
/// Counter: JWKS fetches of the JWT authenticator. Labels: `result` (`ok`, `error`: the
/// endpoint failed, timed out, or answered too much or no usable key; the last keys stay).
pub const AUTHN_JWKS_REFRESH_TOTAL: &str = "meshmq_authentication_jwks_refresh_total";
/// Counter: connections closed because their credentials expired (a JWT's `exp` with
/// `disconnect_after_expire`). No labels.
pub const AUTHN_EXPIRED_TOTAL: &str = "meshmq_authentication_expired_total";
/// Counter: QoS 2 packet ids purged from `awaiting_rel` after `await_rel_timeout`. No labels.
pub const AWAITING_REL_EXPIRED_TOTAL: &str = "meshmq_awaiting_rel_expired_total";
/// Counter: will messages published. No labels.
pub const WILL_MESSAGES_SENT_TOTAL: &str = "meshmq_will_messages_sent_total";
/// Counter: connections closed because the client was silent past 1.5 × keep-alive.
/// No labels.
pub const KEEPALIVE_TIMEOUTS_TOTAL: &str = "meshmq_keepalive_timeouts_total";
/// Counter: registry claims (CONNECT, session adoption) that did not commit; the CONNECT
/// is refused (5.0: 0x88 Server unavailable, 3.1.1: code 3). No labels.
pub const REGISTRY_CLAIMS_FAILED_TOTAL: &str = "meshmq_registry_claims_failed_total";
/// Counter: registry claims whose outcome was unknown (their CONNECT was refused), by what
/// became of them. Labels: `result` (`closed`: it had committed and its row was closed
/// again; `not_committed`: no row of it appeared within the watch; `dropped`: too many
/// were watched).
pub const UNKNOWN_CLAIMS_TOTAL: &str = "meshmq_unknown_claims_total";
/// Counter: SUBSCRIBE filters answered with a failure code because the cluster tables
/// could not take them (the filter is rolled back on this node). Labels: `reason`
/// (`table_write`: the table transaction failed or timed out; `route_commit`: the route
/// was not committed in time).
pub const SUBSCRIBE_FAILURES_TOTAL: &str = "meshmq_subscribe_failures_total";
/// Counter: UNSUBSCRIBE filters kept (answered 0x80 in MQTT 5) because the cluster tables
/// could not remove them. No labels.
pub const UNSUBSCRIBE_FAILURES_TOTAL: &str = "meshmq_unsubscribe_failures_total";
/// Counter: waits for this node's route decisions to commit that timed out. No labels.
pub const ROUTE_WAIT_TIMEOUTS_TOTAL: &str = "meshmq_route_wait_timeouts_total";
/// Counter: cluster table transactions. Labels: `result` (`ok`, `error`).
pub const TABLE_TRANSACTIONS_TOTAL: &str = "meshmq_table_transactions_total";
/// Histogram: seconds a cluster table transaction took, submission to result. No labels.
pub const TABLE_TRANSACTION_SECONDS: &str = "meshmq_table_transaction_seconds";

/// Counter: messages forwarded to other replicants (one per target node). No labels.
pub const MESSAGES_FORWARDED_TOTAL: &str = "meshmq_messages_forwarded_total";
/// Counter: messages received from other replicants for local delivery. No labels.
pub const MESSAGES_FROM_PEERS_TOTAL: &str = "meshmq_messages_from_peers_total";

// The core nodes' names (Raft group, Transact, Follow, leases) are in `core_group.rs`.

// ---- replicant's link to the core group (replica, Follow, Transact, lease) ----

/// Counter: snapshots the replicant's replica installed from a core (its log index was
/// purged there, or it started empty). No labels.
pub const REPLICA_SNAPSHOT_INSTALLS_TOTAL: &str = "meshmq_replica_snapshot_installs_total";
/// Counter: chunks of streamed snapshots received from a core. No labels.
pub const REPLICA_SNAPSHOT_CHUNKS_RECEIVED_TOTAL: &str =
    "meshmq_replica_snapshot_chunks_received_total";
/// Counter: bytes of table rows in streamed snapshot chunks received from a core. No labels.
pub const REPLICA_SNAPSHOT_BYTES_RECEIVED_TOTAL: &str =
    "meshmq_replica_snapshot_bytes_received_total";
/// Counter: streamed snapshots dropped before their end (the replica kept its tables).
/// Labels: `reason` (`stream_ended`: the stream ended or failed mid-snapshot;
/// `too_large`: announced over `cluster.follow_max_snapshot_bytes`; `inconsistent`: chunks
/// or end that do not match the begin; `unexpected_frame`: another frame inside the snapshot).
pub const REPLICA_SNAPSHOTS_ABORTED_TOTAL: &str = "meshmq_replica_snapshots_aborted_total";
/// Counter: follow streams that ended and made the replicant pick a core again. Labels:
/// `reason` (`timeout`, `gap`, `closed`, `malformed`, `snapshot`: a streamed snapshot was
/// refused, or a frame error label).
pub const REPLICA_CORE_SWITCHES_TOTAL: &str = "meshmq_replica_core_switches_total";
/// Counter: follow frames from a core that could not be decoded or applied; each ends the
/// stream. Labels: `reason` (frame error label, or `invalid_frame`).
pub const REPLICA_MALFORMED_FRAMES_TOTAL: &str = "meshmq_replica_malformed_frames_total";
/// Gauge: highest log index applied to the replicant's replica. No labels.
pub const REPLICA_APPLIED_INDEX: &str = "meshmq_replica_applied_index";
/// Gauge: commit index last reported by the followed core minus the local applied index.
/// No labels.
pub const REPLICATION_LAG_ENTRIES: &str = "meshmq_replication_lag_entries";
/// Histogram: seconds a replicant transaction took, submission to applied locally.
/// No labels.
pub const REPLICA_TRANSACT_SECONDS: &str = "meshmq_replica_transact_seconds";
/// Histogram: seconds from a core's commit answer to the local replica having applied the
/// entry (the replication part of [`REPLICA_TRANSACT_SECONDS`]). No labels.
pub const REPLICA_APPLY_WAIT_SECONDS: &str = "meshmq_replica_apply_wait_seconds";
/// Counter: replicant transactions. Labels: `result` (`ok`, `not_leader`, `timeout`,
/// `rejected`, `unavailable`, `lagging`: committed but not applied locally in time).
pub const REPLICA_TRANSACT_TOTAL: &str = "meshmq_replica_transact_total";
/// Counter: callers of a replicant's transaction whose ops were sent again after an
/// unknown outcome (the core died or the reply was lost); only ops that may be applied
/// twice are. No labels.
pub const REPLICA_TRANSACT_RESENT_TOTAL: &str = "meshmq_replica_transact_resent_total";
/// Counter: lease renewals that failed. Labels: `reason` (`no_core`, `not_leader`,
/// `request`).
pub const REPLICA_LEASE_FAILURES_TOTAL: &str = "meshmq_replica_lease_failures_total";

// ---- replicant-to-replicant peer links (forwarded PUBLISHes) ----

/// Counter: messages written to peer links (one per message per target node). No labels.
pub const PEER_MESSAGES_SENT_TOTAL: &str = "meshmq_peer_messages_sent_total";
/// Counter: `PeerBatch` frames written to peer links (one write carries every message
/// queued at that moment). No labels.
pub const PEER_BATCHES_SENT_TOTAL: &str = "meshmq_peer_batches_sent_total";
/// Counter: messages for a peer dropped instead of sent (forwarding is at most once, never
/// resent). Labels: `reason` (`peer_down`, `queue_full`: the link's queue held
/// `cluster.peer_queue_len` messages or `cluster.peer_queue_bytes` bytes, `link_broken`,
/// `too_large`, `stopped`).
pub const PEER_MESSAGES_DROPPED_TOTAL: &str = "meshmq_peer_messages_dropped_total";
/// Counter: online-trace lines dropped instead of written. Labels: `reason` (`queue_full`:
/// the trace's queue held `trace.queue_len` lines; `file_full`: its file reached
/// `trace.max_file_size`; `file_error`: the file could not be opened or written).
pub const TRACE_EVENTS_DROPPED_TOTAL: &str = "meshmq_trace_events_dropped_total";
/// Counter: peer links connected again after losing their connection. No labels.
pub const PEER_RECONNECTS_TOTAL: &str = "meshmq_peer_reconnects_total";
/// Counter: incoming peer streams dropped for a malformed frame. Labels: `reason` (frame
/// error label, `bad_hello`, `hello_timeout`).
pub const PEER_MALFORMED_TOTAL: &str = "meshmq_peer_malformed_total";
/// Counter: incoming peer connections whose handshake failed (certificate refused, wrong
/// ALPN, lost). No labels.
pub const PEER_HANDSHAKE_FAILURES_TOTAL: &str = "meshmq_peer_handshake_failures_total";
/// Gauge: outgoing peer links connected now. No labels.
pub const PEER_LINKS_UP: &str = "meshmq_peer_links_up";
/// Counter: REST API calls from peers refused before they ran. Labels: `reason`
/// (`certificate`: no usable name in the caller's certificate, or not the name it stated;
/// `not_replicant`: the certified name is not a replicant of the node table; `route`: not a
/// node-local route the fan-out makes; `nested`: a fan-out asked for while serving a
/// fan-out call, refused so that calls never go deeper than one).
pub const PEER_API_REFUSED_TOTAL: &str = "meshmq_peer_api_refused_total";
/// Counter: incoming peer connections accepted (links and API calls alike). No labels.
pub const PEER_CONNECTIONS_ACCEPTED_TOTAL: &str = "meshmq_peer_connections_accepted_total";
/// Gauge: incoming peer connections open now (capped at 1 024). No labels.
pub const PEER_CONNECTIONS: &str = "meshmq_peer_connections";
/// Histogram: seconds a peer barrier took (queueing it on every connected link until every
/// such node acked, or the timeout). No labels.
pub const PEER_BARRIER_SECONDS: &str = "meshmq_peer_barrier_seconds";
/// Counter: peer barriers that gave up at their timeout with a node yet to ack. No labels.
pub const PEER_BARRIER_TIMEOUTS_TOTAL: &str = "meshmq_peer_barrier_timeouts_total";

/// Counter: WebSocket upgrades refused or abandoned before the hand-off to MQTT. Labels:
/// `reason` (`path`: 404; `origin`: 403, `Origin` not allowed; `subprotocol`: 400, none of
/// the supported subprotocols offered; `not_websocket`: not a WebSocket upgrade request;
/// `bad_request`: unparsable or oversized HTTP; `timeout`: the handshake deadline passed).
pub const WS_UPGRADES_REFUSED_TOTAL: &str = "meshmq_ws_upgrades_refused_total";
/// Counter: WebSocket upgrades from a trusted proxy whose forwarding header did not parse
/// (the proxy's own address was used). Labels: `header` (`address`, `port`).
pub const WS_FORWARDED_INVALID_TOTAL: &str = "meshmq_ws_forwarded_invalid_total";
/// Counter: PROXY protocol headers on listeners with `proxy_protocol`. Labels: `result`
/// (`ok`, `missing`, `invalid`, `untrusted`, `timeout`).
pub const PROXY_PROTOCOL_TOTAL: &str = "meshmq_proxy_protocol_total";
/// Counter: TLS handshakes that failed or timed out. Labels: `listener` (`ssl:default`).
pub const TLS_HANDSHAKE_FAILURES_TOTAL: &str = "meshmq_tls_handshake_failures_total";
/// Counter: certificate reloads of TLS listeners. Labels: `listener`, `result` (`ok`,
/// `unchanged`, `error`).
pub const TLS_RELOAD_TOTAL: &str = "meshmq_tls_reload_total";
/// Every counter name, for registering descriptions and for tests.
pub const COUNTERS: &[&str] = &[
    PROXY_PROTOCOL_TOTAL,
    TLS_HANDSHAKE_FAILURES_TOTAL,
    TLS_RELOAD_TOTAL,
    WS_UPGRADES_REFUSED_TOTAL,
    WS_FORWARDED_INVALID_TOTAL,
    MESSAGES_FORWARDED_TOTAL,
    MESSAGES_FROM_PEERS_TOTAL,
    CONNECTIONS_ACCEPTED_TOTAL,
    CONNECTIONS_REFUSED_TOTAL,
    CONNACK_TOTAL,
    DISCONNECTS_TOTAL,
    SESSIONS_EXPIRED_TOTAL,
    SESSIONS_RESTORED_TOTAL,
    TAKEOVERS_TOTAL,
    HANDOVERS_TOTAL,
    HANDOVER_MESSAGES_TOTAL,
    EVACUATION_CONNECTIONS_EVICTED_TOTAL,
    EVACUATION_SESSIONS_MIGRATED_TOTAL,
    EVACUATION_SESSIONS_ADOPTED_TOTAL,
    MESSAGES_RECEIVED_TOTAL,
    MESSAGES_DELIVERED_TOTAL,
    RETAINED_REPLAYED_TOTAL,
    RETAINED_REPLAYS_TOTAL,
    MESSAGES_DROPPED_TOTAL,
    PUBLISH_BACKPRESSURE_TOTAL,
    PACKETS_RECEIVED_TOTAL,
    PACKETS_SENT_TOTAL,
    BYTES_RECEIVED_TOTAL,
    BYTES_SENT_TOTAL,
    MALFORMED_PACKETS_TOTAL,
    PROTOCOL_ERRORS_TOTAL,
    AUTHZ_DENIED_TOTAL,
    AUTHZ_TOTAL,
    AUTHZ_DECISIONS_TOTAL,
    AUTHZ_CACHE_TOTAL,
    AUTHN_TOTAL,
    AUTHN_RESULTS_TOTAL,
    AUTHN_OVERLOAD_TOTAL,
    AUTHN_SCRAM_FAILURES_TOTAL,
    AUTHN_API_ERRORS_TOTAL,
    API_FORBIDDEN_TOTAL,
    API_KEY_REFUSED_TOTAL,
    AUTHN_IMPORT_ROWS_TOTAL,
    DATA_TRANSFERS_TOTAL,
    DATA_IMPORT_ROWS_TOTAL,
    BANNED_REFUSED_TOTAL,
    BANNED_KICKED_TOTAL,
    BANNED_API_BAD_REQUESTS_TOTAL,
    MGMT_API_BAD_REQUESTS_TOTAL,
    API_PUBLISHED_TOTAL,
    API_KICKED_TOTAL,
    ALARM_WEBHOOK_FAILURES_TOTAL,
    ALARM_WEBHOOK_REQUESTS_TOTAL,
    SETTINGS_WRITES_REFUSED_TOTAL,
    FLAPPING_BANS_TOTAL,
    FLAPPING_UNTRACKED_TOTAL,
    AUTHN_JWKS_REFRESH_TOTAL,
    AUTHN_EXPIRED_TOTAL,
    AWAITING_REL_EXPIRED_TOTAL,
    WILL_MESSAGES_SENT_TOTAL,
    KEEPALIVE_TIMEOUTS_TOTAL,
    TABLE_TRANSACTIONS_TOTAL,
    REGISTRY_CLAIMS_FAILED_TOTAL,
    UNKNOWN_CLAIMS_TOTAL,
    SUBSCRIBE_FAILURES_TOTAL,
    UNSUBSCRIBE_FAILURES_TOTAL,
    QUOTA_EXCEEDED_TOTAL,
    ROUTE_WAIT_TIMEOUTS_TOTAL,
    REPLICA_SNAPSHOT_INSTALLS_TOTAL,
    REPLICA_SNAPSHOT_CHUNKS_RECEIVED_TOTAL,
    REPLICA_SNAPSHOT_BYTES_RECEIVED_TOTAL,
    REPLICA_SNAPSHOTS_ABORTED_TOTAL,
    REPLICA_CORE_SWITCHES_TOTAL,
    REPLICA_MALFORMED_FRAMES_TOTAL,
    REPLICA_TRANSACT_TOTAL,
    REPLICA_TRANSACT_RESENT_TOTAL,
    REPLICA_LEASE_FAILURES_TOTAL,
    RAFT_RPC_TOTAL,
    RAFT_APPEND_TRIMMED_TOTAL,
    CORE_TRANSACT_REFUSED_TOTAL,
    CORE_TRANSACT_TOTAL,
    CORE_FOLLOW_SNAPSHOTS_SENT_TOTAL,
    CORE_FOLLOW_SNAPSHOT_CHUNKS_SENT_TOTAL,
    CORE_FOLLOW_SNAPSHOT_BYTES_SENT_TOTAL,
    CORE_FOLLOW_SNAPSHOT_REUSED_TOTAL,
    CORE_FOLLOW_PROJECTED_SNAPSHOTS_TOTAL,
    CORE_FOLLOW_NOTES_GONE_TOTAL,
    CORE_FOLLOW_OVERSIZED_ENTRIES_TOTAL,
    CORE_FOLLOW_ENTRIES_SENT_TOTAL,
    CORE_REQUEST_ERRORS_TOTAL,
    WIRE_PROTOCOL_REFUSED_TOTAL,
    CORE_LEASE_PURGES_TOTAL,
    CORE_HTTP_DENIED_TOTAL,
    CORE_HTTP_TLS_FAILURES_TOTAL,
    RAFT_SNAPSHOTS_TOTAL,
    PEER_MESSAGES_SENT_TOTAL,
    PEER_BATCHES_SENT_TOTAL,
    PEER_MESSAGES_DROPPED_TOTAL,
    TRACE_EVENTS_DROPPED_TOTAL,
    PEER_RECONNECTS_TOTAL,
    PEER_MALFORMED_TOTAL,
    PEER_HANDSHAKE_FAILURES_TOTAL,
    PEER_BARRIER_TIMEOUTS_TOTAL,
    PEER_API_REFUSED_TOTAL,
    PEER_CONNECTIONS_ACCEPTED_TOTAL,
];

/// Every gauge name.
pub const GAUGES: &[&str] = &[
    CONNECTIONS,
    LISTENER_CONNECTIONS,
    LISTENER_MAX_CONNECTIONS,
    EVACUATING,
    SESSIONS,
    SUBSCRIPTIONS,
    RETAINED_MESSAGES,
    RETAINED_BYTES,
    RETAINED_REPLAYS,
    MESSAGES_QUEUED,
    REPLICA_APPLIED_INDEX,
    REPLICATION_LAG_ENTRIES,
    RAFT_TERM,
    RAFT_LEADER_ID,
    RAFT_IS_LEADER,
    RAFT_LAST_LOG_INDEX,
    RAFT_COMMIT_INDEX,
    RAFT_APPLIED_INDEX,
    CORE_FOLLOWERS,
    CORE_LEASES,
    RAFT_LOG_ENTRIES,
    PEER_LINKS_UP,
    PEER_CONNECTIONS,
    ALARMS_ACTIVE,
];

/// Every histogram name.
pub const HISTOGRAMS: &[&str] = &[
    TABLE_TRANSACTION_SECONDS,
    CORE_TRANSACT_SECONDS,
    RAFT_SNAPSHOT_SECONDS,
    REPLICA_TRANSACT_SECONDS,
    REPLICA_APPLY_WAIT_SECONDS,
    PEER_BARRIER_SECONDS,
    AUTHN_SECONDS,
    DELIVERY_LATENCY_SECONDS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_suffixed() {
        let all: Vec<&str> = COUNTERS
            .iter()
            .chain(GAUGES)
            .chain(HISTOGRAMS)
            .copied()
            .collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "a name is listed twice");
        for name in &all {
            assert!(name.starts_with("meshmq_"), "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
        assert!(COUNTERS.iter().all(|n| n.ends_with("_total")));
        assert!(
            GAUGES
                .iter()
                .chain(HISTOGRAMS)
                .all(|n| !n.ends_with("_total"))
        );
        assert!(TABLE_TRANSACTION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert!(DELIVERY_LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }
}
