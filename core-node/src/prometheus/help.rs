//! The `# HELP` text of every meshmq metric (counters, gauges, histograms), registered by
//! [`super::describe_all`]. Text only: names come from [`meshmq_shared::metrics`].

use meshmq_shared::metrics as m;

/// `# HELP` text of every counter.
pub(super) const COUNTER_HELP: &[(&str, &str)] = &[
    (
        m::MESSAGES_FORWARDED_TOTAL,
        "Messages forwarded to other replicants, one per target node.",
    ),
    (
        m::MESSAGES_FROM_PEERS_TOTAL,
        "Messages received from other replicants for local delivery.",
    ),
    (
        m::CONNECTIONS_ACCEPTED_TOTAL,
        "Connections accepted by a listener.",
    ),
    (
        m::CONNECTIONS_REFUSED_TOTAL,
        "Connections refused before a session existed, by reason.",
    ),
    (m::CONNACK_TOTAL, "CONNACK packets sent, by reason code."),
    (
        m::REGISTRY_CLAIMS_FAILED_TOTAL,
        "Registry claims that did not commit (the CONNECT was refused with 0x88 / code 3).",
    ),
    (
        m::QUOTA_EXCEEDED_TOTAL,
        "Requests refused with 0x97 Quota exceeded (or dropped for 3.1.1), by quota.",
    ),
    (
        m::UNKNOWN_CLAIMS_TOTAL,
        "Registry claims with an unknown outcome (CONNECT refused), by what became of them.",
    ),
    (
        m::SUBSCRIBE_FAILURES_TOTAL,
        "SUBSCRIBE filters refused because the cluster tables could not take them, by reason.",
    ),
    (
        m::UNSUBSCRIBE_FAILURES_TOTAL,
        "UNSUBSCRIBE filters kept because the cluster tables could not remove them.",
    ),
    (
        m::ROUTE_WAIT_TIMEOUTS_TOTAL,
        "Waits for this node's route decisions to commit that timed out.",
    ),
    (
        m::REPLICA_TRANSACT_RESENT_TOTAL,
        "Transaction callers whose ops were sent again after an unknown outcome.",
    ),
    (
        m::DISCONNECTS_TOTAL,
        "Connections ended after CONNACK, each counted once, by reason (normal, sock_closed, keepalive_timeout, takenover, discarded, kicked, ...).",
    ),
    (
        m::SESSIONS_EXPIRED_TOTAL,
        "Sessions discarded after their expiry interval.",
    ),
    (
        m::SESSIONS_RESTORED_TOTAL,
        "Persistent sessions rebuilt from the subscriptions table (node restart, dead replicant).",
    ),
    (
        m::TAKEOVERS_TOTAL,
        "Sessions taken over by a new connection with the same client id.",
    ),
    (
        m::HANDOVERS_TOTAL,
        "Cross-node session hand-overs, by role (give/take) and result.",
    ),
    (
        m::HANDOVER_MESSAGES_TOTAL,
        "Deliveries moved with a handed-over session, by direction.",
    ),
    (
        m::EVACUATION_CONNECTIONS_EVICTED_TOTAL,
        "Connections closed by this node's evacuation (MQTT 5: DISCONNECT 0x9C).",
    ),
    (
        m::EVACUATION_SESSIONS_MIGRATED_TOTAL,
        "Disconnected sessions this node's evacuation handed to other nodes, by result.",
    ),
    (
        m::EVACUATION_SESSIONS_ADOPTED_TOTAL,
        "Sessions adopted from an evacuating node, by result.",
    ),
    (
        m::MESSAGES_RECEIVED_TOTAL,
        "PUBLISH packets received from clients, by QoS.",
    ),
    (
        m::MESSAGES_DELIVERED_TOTAL,
        "PUBLISH packets delivered to subscribers.",
    ),
    (
        m::RETAINED_REPLAYED_TOTAL,
        "Retained messages that SUBSCRIBE replays handed to subscribers' sessions.",
    ),
    (
        m::RETAINED_REPLAYS_TOTAL,
        "Retained replays of new subscriptions ended, by outcome.",
    ),
    (
        m::MESSAGES_DROPPED_TOTAL,
        "Messages dropped instead of delivered, by reason.",
    ),
    (
        m::PUBLISH_BACKPRESSURE_TOTAL,
        "Times a publisher stopped being read because a subscriber queue or peer link it feeds was congested, by what was congested.",
    ),
    (m::PACKETS_RECEIVED_TOTAL, "MQTT packets decoded, by type."),
    (m::PACKETS_SENT_TOTAL, "MQTT packets sent, by type."),
    (
        m::BYTES_RECEIVED_TOTAL,
        "Bytes read from client connections.",
    ),
    (m::BYTES_SENT_TOTAL, "Bytes written to client connections."),
    (
        m::MALFORMED_PACKETS_TOTAL,
        "Packets that failed to decode, by reason.",
    ),
    (
        m::PROTOCOL_ERRORS_TOTAL,
        "Packets that broke a protocol rule, by reason.",
    ),
    (
        m::AUTHZ_DENIED_TOTAL,
        "Operations refused by the authorizer, by action.",
    ),
    (
        m::AUTHZ_TOTAL,
        "Authorization answers per source asked, by source and result (allow, deny, nomatch).",
    ),
    (
        m::AUTHZ_DECISIONS_TOTAL,
        "Authorization decisions, each counted once, by result (allow, deny) and what decided (superuser, cache, a source, no_match, hook, sys_topic).",
    ),
    (
        m::AUTHN_RESULTS_TOTAL,
        "Authentication outcomes of CONNECTs, by result (success, success_anonymous, failure).",
    ),
    (
        m::AUTHZ_CACHE_TOTAL,
        "Lookups in the per-connection authorization cache, by result (hit, miss).",
    ),
    (
        m::AUTHN_TOTAL,
        "Authentication decisions, by authenticator and result (allow, deny, ignore, error).",
    ),
    (
        m::AUTHN_OVERLOAD_TOTAL,
        "CONNECTs refused because the password-hashing queue was full.",
    ),
    (
        m::AUTHN_SCRAM_FAILURES_TOTAL,
        "SCRAM exchanges (CONNECT or re-authentication) that failed, by reason.",
    ),
    (
        m::AUTHN_API_ERRORS_TOTAL,
        "Authentication API requests answered with an error, by code.",
    ),
    (
        m::API_FORBIDDEN_TOTAL,
        "Operator REST requests refused 403 as a browser's: without keys, browser-like (Origin, Host name); with keys, Basic credentials from another origin.",
    ),
    (
        m::API_KEY_REFUSED_TOTAL,
        "REST requests refused 401 for their API key: missing, malformed, or invalid (unknown, wrong, disabled or expired alike).",
    ),
    (
        m::AUTHN_IMPORT_ROWS_TOTAL,
        "Rows of imported user files, by result (success, override, skipped, failed).",
    ),
    (
        m::DATA_TRANSFERS_TOTAL,
        "Data exports and imports through the API, by kind and result.",
    ),
    (
        m::DATA_IMPORT_ROWS_TOTAL,
        "Rows written by data imports, by table.",
    ),
    (
        m::BANNED_REFUSED_TOTAL,
        "CONNECTs refused because a ban matched, by what it matched (as).",
    ),
    (
        m::WS_UPGRADES_REFUSED_TOTAL,
        "WebSocket upgrades refused or abandoned, by reason (path, origin, subprotocol, not_websocket, bad_request, timeout).",
    ),
    (
        m::PROXY_PROTOCOL_TOTAL,
        "PROXY protocol headers on proxy_protocol listeners, by result (ok, missing, invalid, untrusted, timeout).",
    ),
    (
        m::TLS_HANDSHAKE_FAILURES_TOTAL,
        "TLS handshakes with clients that failed or timed out, by listener.",
    ),
    (
        m::TLS_RELOAD_TOTAL,
        "Certificate reloads of TLS listeners, by listener and result (ok, unchanged, error).",
    ),
    (
        m::WS_FORWARDED_INVALID_TOTAL,
        "WebSocket upgrades from a trusted proxy with a malformed forwarding header, by header (address, port).",
    ),
    (
        m::BANNED_KICKED_TOTAL,
        "Live connections closed because a matching ban was applied.",
    ),
    (
        m::BANNED_API_BAD_REQUESTS_TOTAL,
        "Requests to /api/v5/banned refused for their input (400).",
    ),
    (
        m::MGMT_API_BAD_REQUESTS_TOTAL,
        "Requests to the clients, subscriptions, topics, publish and retained API refused for their input.",
    ),
    (
        m::API_PUBLISHED_TOTAL,
        "Messages published through /api/v5/publish, by result.",
    ),
    (
        m::API_KICKED_TOTAL,
        "Clients kicked through DELETE /api/v5/clients/{clientid} on this node.",
    ),
    (
        m::ALARM_WEBHOOK_FAILURES_TOTAL,
        "Alarm notifications the webhook dropped or gave up on, by reason.",
    ),
    (
        m::ALARM_WEBHOOK_REQUESTS_TOTAL,
        "Alarm webhook requests, by result (ok, error).",
    ),
    (
        m::SETTINGS_WRITES_REFUSED_TOTAL,
        "Writes to the settings table that did not apply, by reason (invalid, conflict, full, unavailable).",
    ),
    (
        m::FLAPPING_BANS_TOTAL,
        "Client ids banned by flapping detection.",
    ),
    (
        m::FLAPPING_UNTRACKED_TOTAL,
        "Disconnects flapping detection did not count (tracker full).",
    ),
    (
        m::AUTHN_JWKS_REFRESH_TOTAL,
        "JWKS fetches of the JWT authenticator, by result (ok, error: the last keys stay).",
    ),
    (
        m::AUTHN_EXPIRED_TOTAL,
        "Connections closed because their credentials (a JWT's exp) expired.",
    ),
    (
        m::AWAITING_REL_EXPIRED_TOTAL,
        "QoS 2 packet ids purged after await_rel_timeout.",
    ),
    (m::WILL_MESSAGES_SENT_TOTAL, "Will messages published."),
    (
        m::KEEPALIVE_TIMEOUTS_TOTAL,
        "Connections closed for exceeding 1.5x keep-alive.",
    ),
    (
        m::TABLE_TRANSACTIONS_TOTAL,
        "Cluster table transactions, by result.",
    ),
    (
        m::REPLICA_SNAPSHOT_INSTALLS_TOTAL,
        "Snapshots installed into this replicant's replica.",
    ),
    (
        m::REPLICA_SNAPSHOT_CHUNKS_RECEIVED_TOTAL,
        "Chunks of streamed snapshots received from a core.",
    ),
    (
        m::REPLICA_SNAPSHOT_BYTES_RECEIVED_TOTAL,
        "Bytes of table rows in streamed snapshot chunks received from a core.",
    ),
    (
        m::REPLICA_SNAPSHOTS_ABORTED_TOTAL,
        "Streamed snapshots dropped before their end (replica unchanged), by reason.",
    ),
    (
        m::REPLICA_CORE_SWITCHES_TOTAL,
        "Times this replicant re-picked the core it follows, by reason.",
    ),
    (
        m::REPLICA_MALFORMED_FRAMES_TOTAL,
        "Undecodable or out-of-order frames from a core, by reason.",
    ),
    (
        m::REPLICA_TRANSACT_TOTAL,
        "Transactions sent to the cores by this replicant, by result.",
    ),
    (
        m::REPLICA_LEASE_FAILURES_TOTAL,
        "Lease renewals that failed, by reason.",
    ),
    (
        m::RAFT_RPC_TOTAL,
        "Raft RPCs sent to other cores, by rpc and result.",
    ),
    (
        m::RAFT_APPEND_TRIMMED_TOTAL,
        "AppendEntries requests sent with fewer entries to stay within a byte bound, by bound.",
    ),
    (
        m::CORE_TRANSACT_REFUSED_TOTAL,
        "Transactions refused whole because they do not fit one log entry, by reason.",
    ),
    (
        m::CORE_TRANSACT_TOTAL,
        "Transact requests served by this core, by result and whether forwarded.",
    ),
    (
        m::CORE_FOLLOW_SNAPSHOTS_SENT_TOTAL,
        "Snapshots sent to followers whose index was purged.",
    ),
    (
        m::CORE_FOLLOW_SNAPSHOT_CHUNKS_SENT_TOTAL,
        "Chunks of follow snapshots sent to followers.",
    ),
    (
        m::CORE_FOLLOW_SNAPSHOT_BYTES_SENT_TOTAL,
        "Bytes of table rows in follow snapshot chunks sent to followers.",
    ),
    (
        m::CORE_FOLLOW_SNAPSHOT_REUSED_TOTAL,
        "Follow snapshots sent without a build of their own (another follower was still being sent a usable one).",
    ),
    (
        m::CORE_FOLLOW_PROJECTED_SNAPSHOTS_TOTAL,
        "Projected follow snapshots sent (to replicants that hold a projection of the registry).",
    ),
    (
        m::CORE_FOLLOW_NOTES_GONE_TOTAL,
        "Times a projected follower needed the notes of an entry older than this core keeps (it gets a projected snapshot).",
    ),
    (
        m::CORE_FOLLOW_OVERSIZED_ENTRIES_TOTAL,
        "Entries whose notes took them past a frame, sent to a projected follower as a projected snapshot past them.",
    ),
    (
        m::CORE_FOLLOW_ENTRIES_SENT_TOTAL,
        "Log entries streamed to followers.",
    ),
    (
        m::CORE_REQUEST_ERRORS_TOTAL,
        "Requests on the core endpoint that could not be served, by reason.",
    ),
    (
        m::CORE_LEASE_PURGES_TOTAL,
        "Replicants purged by the leader after their lease lapsed.",
    ),
    (
        m::CORE_HTTP_DENIED_TOTAL,
        "Admin HTTP requests refused for want of credentials, by reason.",
    ),
    (
        m::CORE_HTTP_TLS_FAILURES_TOTAL,
        "Admin HTTPS connections closed before a request, by reason.",
    ),
    (
        m::RAFT_SNAPSHOTS_TOTAL,
        "Raft snapshots built or installed, by kind.",
    ),
    (
        m::PEER_MESSAGES_SENT_TOTAL,
        "Messages written to peer links (replicant to replicant).",
    ),
    (
        m::PEER_BATCHES_SENT_TOTAL,
        "Batches written to peer links; each carries every message queued at the time.",
    ),
    (
        m::PEER_MESSAGES_DROPPED_TOTAL,
        "Messages for a peer dropped instead of sent (at most once, never resent), by reason.",
    ),
    (
        m::TRACE_EVENTS_DROPPED_TOTAL,
        "Online-trace lines dropped instead of written (queue full, file full, file error).",
    ),
    (
        m::PEER_RECONNECTS_TOTAL,
        "Peer links connected again after losing their connection.",
    ),
    (
        m::PEER_MALFORMED_TOTAL,
        "Incoming peer streams dropped for a malformed frame, by reason.",
    ),
    (
        m::PEER_HANDSHAKE_FAILURES_TOTAL,
        "Incoming peer connections whose handshake failed.",
    ),
    (
        m::PEER_BARRIER_TIMEOUTS_TOTAL,
        "Peer barriers that gave up at their timeout with a node yet to ack.",
    ),
    (
        m::PEER_API_REFUSED_TOTAL,
        "REST API calls from peers refused before they ran, by reason.",
    ),
    (
        m::PEER_CONNECTIONS_ACCEPTED_TOTAL,
        "Incoming peer connections accepted.",
    ),
    (
        m::WIRE_PROTOCOL_REFUSED_TOTAL,
        "Inter-node handshakes refused for another inter-node protocol major, by the other end's role.",
    ),
];

/// `# HELP` text of every gauge.
pub(super) const GAUGE_HELP: &[(&str, &str)] = &[
    (
        m::CONNECTIONS,
        "Live MQTT connections, by transport (tcp, ssl, ws, wss).",
    ),
    (
        m::EVACUATING,
        "1 while this node is being evacuated (availability check 503).",
    ),
    (m::SESSIONS, "Sessions held on this node, connected or not."),
    (m::SUBSCRIPTIONS, "Subscriptions in this node's router."),
    (m::RETAINED_MESSAGES, "Retained messages stored."),
    (
        m::RETAINED_BYTES,
        "Bytes of the retained messages stored (what max_retained_bytes bounds).",
    ),
    (
        m::RETAINED_REPLAYS,
        "Retained replays of new subscriptions running or waiting on this node.",
    ),
    (
        m::MESSAGES_QUEUED,
        "Messages waiting in this node's session queues (offline, or beyond the in-flight window).",
    ),
    (
        m::LISTENER_CONNECTIONS,
        "Connections on a listener now (handshakes included), by listener.",
    ),
    (
        m::LISTENER_MAX_CONNECTIONS,
        "A listener's own max_connections, by listener.",
    ),
    (
        m::REPLICA_APPLIED_INDEX,
        "Index of the last entry applied to this replicant's replica.",
    ),
    (
        m::REPLICATION_LAG_ENTRIES,
        "Leader commit index minus this replica's applied index.",
    ),
    (m::RAFT_TERM, "Current Raft term."),
    (
        m::RAFT_LEADER_ID,
        "Leader node id as this core sees it (0: none).",
    ),
    (m::RAFT_IS_LEADER, "1 on the Raft leader, 0 elsewhere."),
    (
        m::RAFT_LAST_LOG_INDEX,
        "Index of the last entry in this core's log.",
    ),
    (
        m::RAFT_COMMIT_INDEX,
        "Highest index known committed on this core.",
    ),
    (
        m::RAFT_APPLIED_INDEX,
        "Index of the last entry applied to this core's state machine.",
    ),
    (m::CORE_FOLLOWERS, "Replicants following this core's log."),
    (m::CORE_LEASES, "Replicant leases held by the leader."),
    (m::RAFT_LOG_ENTRIES, "Entries held in this core's log."),
    (m::PEER_LINKS_UP, "Outgoing peer links connected now."),
    (m::PEER_CONNECTIONS, "Incoming peer connections open now."),
    (
        m::ALARMS_ACTIVE,
        "1 while the alarm named by the label is active on this node, 0 once cleared.",
    ),
];

/// `# HELP` text of every histogram (all measured in seconds).
pub(super) const HISTOGRAM_HELP: &[(&str, &str)] = &[
    (
        m::AUTHN_SECONDS,
        "Time one authenticator took to decide, hashing queue included.",
    ),
    (
        m::TABLE_TRANSACTION_SECONDS,
        "Cluster table transaction latency.",
    ),
    (
        m::DELIVERY_LATENCY_SECONDS,
        "Sampled time from a PUBLISH accepted to its copy written to a subscriber's connection, by path (local, remote).",
    ),
    (
        m::CORE_TRANSACT_SECONDS,
        "Time from submitting a group-commit entry to its commit.",
    ),
    (
        m::RAFT_SNAPSHOT_SECONDS,
        "Time to build or install a Raft snapshot.",
    ),
    (
        m::REPLICA_TRANSACT_SECONDS,
        "Replicant transaction latency, until applied locally.",
    ),
    (
        m::REPLICA_APPLY_WAIT_SECONDS,
        "Time from a core's commit answer to the local replica applying the entry.",
    ),
    (
        m::PEER_BARRIER_SECONDS,
        "Time for every connected peer to confirm it applied an index.",
    ),
];
