//! Tests for configuration layering and validation. No test touches the process environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::config::{Config, QueueDropPolicy};

/// A TOML file in the temp dir, removed on drop.
struct TempToml(PathBuf);

impl TempToml {
    fn new(contents: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "meshmq-config-test-{}-{n}.toml",
            std::process::id()
        ));
        std::fs::write(&path, contents).unwrap();
        TempToml(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempToml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn no_sources_gives_defaults() {
    let c = load_with_env(None, &[], &Overrides::default()).unwrap();
    assert_eq!(c, Config::default());
}

#[test]
fn unrelated_environment_is_ignored() {
    let e = env(&[
        ("PATH", "/bin"),
        ("MESHMQ_", "x"),
        ("MESHMQX_MQTT__RECEIVE_MAXIMUM", "1"),
        // ctl's own variable: a node that has it in its environment still starts.
        ("MESHMQ_CTL_API_KEY", "key:secret"),
    ]);
    let c = load_with_env(None, &e, &Overrides::default()).unwrap();
    assert_eq!(c, Config::default());
}

#[test]
fn flapping_detect_reads_as_emqx_writes_it() {
    let f = TempToml::new(
        "[flapping_detect]\nenable = true\nmax_count = 30\nwindow_time = \"2m\"\nban_time = \"1h\"\n",
    );
    let c = load_with_env(Some(f.path()), &[], &Overrides::default()).unwrap();
    let d = &c.flapping_detect;
    assert!(d.enable);
    assert_eq!(d.max_count, 30);
    assert_eq!(d.window(), std::time::Duration::from_secs(120));
    assert_eq!(d.ban(), std::time::Duration::from_secs(3600));
}

#[test]
fn sys_topics_read_as_emqx_writes_them() {
    let f = TempToml::new(
        "[sys_topics]\nsys_msg_interval = \"disabled\"\nsys_heartbeat_interval = \"5s\"\n\
         [sys_topics.sys_event_messages]\nclient_connected = false\n",
    );
    let e = env(&[(
        "MESHMQ_SYS_TOPICS__SYS_EVENT_MESSAGES__CLIENT_DISCONNECTED",
        "false",
    )]);
    let c = load_with_env(Some(f.path()), &e, &Overrides::default()).unwrap();
    let s = &c.sys_topics;
    assert_eq!(s.msg_interval(), None);
    assert_eq!(
        s.heartbeat_interval(),
        Some(std::time::Duration::from_secs(5))
    );
    assert!(!s.sys_event_messages.client_connected);
    assert!(!s.sys_event_messages.client_disconnected);
}

#[test]
fn toml_file_overrides_defaults() {
    let f = TempToml::new(
        "[node]\nname = \"n1\"\n[listeners]\nmqtt_bind = \"127.0.0.1:2883\"\n\
         [mqtt]\nreceive_maximum = 10\nmqueue_drop_policy = \"drop_newest\"\n",
    );
    let c = load_with_env(Some(f.path()), &[], &Overrides::default()).unwrap();
    assert_eq!(c.node.name, "n1");
    assert_eq!(c.listeners.mqtt_bind, addr("127.0.0.1:2883"));
    assert_eq!(c.mqtt.receive_maximum, 10);
    assert_eq!(c.mqtt.mqueue_drop_policy, QueueDropPolicy::DropNewest);
    // Untouched keys keep their defaults.
    assert_eq!(c.mqtt.max_inflight, Config::default().mqtt.max_inflight);
    assert_eq!(c.listeners.ws_bind, Config::default().listeners.ws_bind);
}

#[test]
fn env_overrides_toml() {
    let f = TempToml::new("[mqtt]\nreceive_maximum = 10\nmax_inflight = 5\n");
    let e = env(&[
        ("MESHMQ_MQTT__RECEIVE_MAXIMUM", "20"),
        ("MESHMQ_MQTT__SERVER_KEEPALIVE", "30"),
        ("MESHMQ_LISTENERS__MQTT_BIND", "127.0.0.1:1884"),
        ("MESHMQ_LISTENERS__WS_BIND", "0.0.0.0:9083"),
        ("MESHMQ_LISTENERS__ALLOW_ANONYMOUS", "true"),
        ("MESHMQ_MQTT__RETAIN_AVAILABLE", "false"),
        ("MESHMQ_NODE__NAME", "env-node"),
    ]);
    let c = load_with_env(Some(f.path()), &e, &Overrides::default()).unwrap();
    assert_eq!(c.mqtt.receive_maximum, 20);
    assert_eq!(
        c.mqtt.max_inflight, 5,
        "TOML value survives when env does not set it"
    );
    assert_eq!(c.mqtt.server_keepalive, Some(30));
    assert_eq!(c.listeners.mqtt_bind, addr("127.0.0.1:1884"));
    assert_eq!(c.listeners.ws_bind, Some(addr("0.0.0.0:9083")));
    assert!(!c.mqtt.retain_available);
    assert_eq!(c.node.name, "env-node");
}

#[test]
fn env_prefix_is_case_insensitive_like_figment_env() {
    let e = env(&[("meshmq_mqtt__max_inflight", "7")]);
    let c = load_with_env(None, &e, &Overrides::default()).unwrap();
    assert_eq!(c.mqtt.max_inflight, 7);
}

#[test]
fn flags_override_env() {
    let e = env(&[
        ("MESHMQ_LISTENERS__MQTT_BIND", "127.0.0.1:1884"),
        ("MESHMQ_LISTENERS__HTTP_BIND", "127.0.0.1:1885"),
        ("MESHMQ_NODE__NAME", "env-node"),
        ("MESHMQ_NODE__DATA_DIR", "/env/data"),
    ]);
    let o = Overrides {
        mqtt_bind: Some(addr("127.0.0.1:0")),
        ws_bind: Some(addr("127.0.0.1:0")),
        http_bind: Some(addr("127.0.0.1:0")),
        data_dir: Some(PathBuf::from("/flag/data")),
        node_name: Some("flag-node".into()),
        cores: vec!["10.0.0.1:4370".into(), "core.example:4370".into()],
        certs_dir: Some(PathBuf::from("/flag/certs")),
    };
    let c = load_with_env(None, &e, &o).unwrap();
    assert_eq!(c.listeners.mqtt_bind, addr("127.0.0.1:0"));
    assert_eq!(c.listeners.ws_bind, Some(addr("127.0.0.1:0")));
    assert_eq!(c.listeners.http_bind, Some(addr("127.0.0.1:0")));
    assert_eq!(c.node.data_dir, PathBuf::from("/flag/data"));
    assert_eq!(c.cluster.cores, ["10.0.0.1:4370", "core.example:4370"]);
    assert_eq!(c.cluster.certs_dir, Some(PathBuf::from("/flag/certs")));
    assert_eq!(c.node.name, "flag-node");
}

#[test]
fn unknown_key_in_toml_is_an_error() {
    let f = TempToml::new("[mqtt]\nreceive_maximun = 10\n");
    let err = load_with_env(Some(f.path()), &[], &Overrides::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::Parse(_)), "{msg}");
    assert!(msg.contains("receive_maximun"), "{msg}");
    assert!(msg.contains(&f.path().display().to_string()), "{msg}");
}

#[test]
fn unknown_key_in_env_is_an_error() {
    let e = env(&[("MESHMQ_MQTT__NO_SUCH_KEY", "1")]);
    let msg = load_with_env(None, &e, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no_such_key"), "{msg}");
}

#[test]
fn unknown_section_is_an_error() {
    let f = TempToml::new("[clusters]\ncores = []\n");
    let msg = load_with_env(Some(f.path()), &[], &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("clusters"), "{msg}");
}

#[test]
fn cluster_section_reads_cores_from_file_and_env() {
    let f = TempToml::new("[cluster]\ncores = [\"10.0.0.1:4370\"]\nlease_ttl_ms = 3000\n");
    let c = load_with_env(Some(f.path()), &[], &Overrides::default()).unwrap();
    assert_eq!(c.cluster.cores, ["10.0.0.1:4370"]);
    assert_eq!(c.cluster.lease_ttl_ms, 3000);
    let e = env(&[("MESHMQ_CLUSTER__LEASE_TTL_MS", "4000")]);
    let c = load_with_env(Some(f.path()), &e, &Overrides::default()).unwrap();
    assert_eq!(c.cluster.lease_ttl_ms, 4000);
}

#[test]
fn bad_env_value_names_the_variable() {
    let e = env(&[("MESHMQ_MQTT__RECEIVE_MAXIMUM", "lots")]);
    let msg = load_with_env(None, &e, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("MESHMQ_MQTT__RECEIVE_MAXIMUM"), "{msg}");
}

#[test]
fn bad_toml_value_names_key_and_file() {
    let f = TempToml::new("[listeners]\nmqtt_bind = \"not an address\"\n");
    let msg = load_with_env(Some(f.path()), &[], &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("mqtt_bind"), "{msg}");
    assert!(msg.contains(&f.path().display().to_string()), "{msg}");
}

#[test]
fn toml_syntax_error_is_an_error() {
    let f = TempToml::new("[mqtt\n");
    let err = load_with_env(Some(f.path()), &[], &Overrides::default()).unwrap_err();
    assert!(matches!(err, ConfigError::Parse(_)), "{err}");
}

#[test]
fn missing_file_is_an_error_naming_the_path() {
    let path = std::env::temp_dir().join("meshmq-config-test-does-not-exist.toml");
    let err = load_with_env(Some(&path), &[], &Overrides::default()).unwrap_err();
    assert!(matches!(err, ConfigError::File { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn directory_as_file_is_an_error() {
    let dir = std::env::temp_dir();
    let err = load_with_env(Some(&dir), &[], &Overrides::default()).unwrap_err();
    assert!(matches!(err, ConfigError::File { .. }), "{err}");
}

#[test]
fn out_of_range_values_are_rejected_with_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("MESHMQ_MQTT__RECEIVE_MAXIMUM", "0", "mqtt.receive_maximum"),
        ("MESHMQ_MQTT__MAX_INFLIGHT", "0", "mqtt.max_inflight"),
        ("MESHMQ_MQTT__MAX_PACKET_SIZE", "63", "mqtt.max_packet_size"),
        (
            "MESHMQ_MQTT__MAX_PACKET_SIZE",
            "268435461",
            "mqtt.max_packet_size",
        ),
        (
            "MESHMQ_MQTT__MAX_CLIENTID_LEN",
            "22",
            "mqtt.max_clientid_len",
        ),
        ("MESHMQ_MQTT__CONNECT_TIMEOUT", "0", "mqtt.connect_timeout"),
        (
            "MESHMQ_LISTENERS__MAX_CONNECTIONS",
            "0",
            "listeners.max_connections",
        ),
        ("MESHMQ_LISTENERS__BACKLOG", "0", "listeners.backlog"),
        ("MESHMQ_LOG__LEVEL", "loud", "log.level"),
        ("MESHMQ_TRACE__RETENTION", "1s", "trace.retention"),
        ("MESHMQ_TRACE__MAX_TRACES", "0", "trace.max_traces"),
        ("MESHMQ_TRACE__MAX_FILE_SIZE", "10", "trace.max_file_size"),
        ("MESHMQ_NODE__NAME", " ", "node.name"),
        ("MESHMQ_MQTT__MAX_MQUEUE_LEN", "0", "mqtt.max_mqueue_len"),
        (
            "MESHMQ_MQTT__MAX_MQUEUE_BYTES",
            "0",
            "mqtt.max_mqueue_bytes",
        ),
        (
            "MESHMQ_MQTT__MAX_NODE_MQUEUE_BYTES",
            "1000",
            "mqtt.max_node_mqueue_bytes",
        ),
        (
            "MESHMQ_MQTT__MAX_WRITE_BUFFER_BYTES",
            "0",
            "mqtt.max_write_buffer_bytes",
        ),
        (
            "MESHMQ_MQTT__MAX_TOPIC_ALIAS_BYTES",
            "0",
            "mqtt.max_topic_alias_bytes",
        ),
        (
            "MESHMQ_CLUSTER__PEER_QUEUE_LEN",
            "0",
            "cluster.peer_queue_len",
        ),
        (
            "MESHMQ_CLUSTER__PEER_QUEUE_BYTES",
            "0",
            "cluster.peer_queue_bytes",
        ),
        (
            "MESHMQ_FLAPPING_DETECT__MAX_COUNT",
            "0",
            "flapping_detect.max_count",
        ),
        (
            "MESHMQ_FLAPPING_DETECT__WINDOW_TIME",
            "1x",
            "flapping_detect.window_time",
        ),
        (
            "MESHMQ_FLAPPING_DETECT__BAN_TIME",
            "0s",
            "flapping_detect.ban_time",
        ),
        (
            "MESHMQ_SYS_TOPICS__SYS_MSG_INTERVAL",
            "100ms",
            "sys_topics.sys_msg_interval",
        ),
    ];
    for (var, value, key) in cases {
        let err = load_with_env(None, &env(&[(var, value)]), &Overrides::default()).unwrap_err();
        match &err {
            ConfigError::Invalid { key: k, .. } => assert_eq!(k, key, "{err}"),
            other => panic!("{var}={value}: expected Invalid, got {other}"),
        }
        assert!(err.to_string().contains(key), "{err}");
        assert!(
            err.to_string().contains(var),
            "names the variable too: {err}"
        );
    }
}

#[test]
fn settings_are_named_with_their_environment_variable() {
    assert_eq!(
        env_var("listeners.mqtt_bind"),
        "MESHMQ_LISTENERS__MQTT_BIND"
    );
    assert_eq!(
        setting("cluster.certs_dir"),
        "cluster.certs_dir / MESHMQ_CLUSTER__CERTS_DIR"
    );
}

#[test]
fn packet_size_bounds_are_inclusive() {
    for v in ["64", "268435460"] {
        let e = env(&[("MESHMQ_MQTT__MAX_PACKET_SIZE", v)]);
        let c = load_with_env(None, &e, &Overrides::default()).unwrap();
        assert_eq!(c.mqtt.max_packet_size.to_string(), v);
    }
}

#[test]
fn later_env_pair_wins_and_sections_merge() {
    let e = env(&[
        ("MESHMQ_MQTT__MAX_INFLIGHT", "3"),
        ("MESHMQ_MQTT__RECEIVE_MAXIMUM", "4"),
        ("MESHMQ_MQTT__MAX_INFLIGHT", "5"),
    ]);
    let c = load_with_env(None, &e, &Overrides::default()).unwrap();
    assert_eq!((c.mqtt.max_inflight, c.mqtt.receive_maximum), (5, 4));
}

#[test]
fn load_matches_load_with_env_on_the_process_environment() {
    // `load` reads std::env; with the same pairs `load_with_env` must agree (or both fail).
    let vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let o = Overrides {
        node_name: Some("same".into()),
        ..Overrides::default()
    };
    let a = load(None, &o).map_err(|e| e.to_string());
    let b = load_with_env(None, &vars, &o).map_err(|e| e.to_string());
    assert_eq!(a, b);
}

#[test]
fn a_non_loopback_listener_without_authentication_needs_allow_anonymous() {
    let open = TempToml::new("[listeners]\nmqtt_bind = \"0.0.0.0:1883\"\n");
    let err = load_with_env(Some(open.path()), &[], &Overrides::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                key: "listeners.allow_anonymous",
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("0.0.0.0:1883") && msg.contains("[[authentication]]"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");

    // The WebSocket listener counts too.
    let ws = TempToml::new("[listeners]\nws_bind = \"[::]:8083\"\n");
    assert!(load_with_env(Some(ws.path()), &[], &Overrides::default()).is_err());

    let allowed =
        TempToml::new("[listeners]\nmqtt_bind = \"0.0.0.0:1883\"\nallow_anonymous = true\n");
    assert!(load_with_env(Some(allowed.path()), &[], &Overrides::default()).is_ok());

    // Loopback (the default) needs nothing.
    assert!(load_with_env(None, &[], &Overrides::default()).is_ok());
}

#[test]
fn an_authentication_chain_in_emqx_form_loads_and_closes_the_open_listener() {
    let f = TempToml::new(
        "[listeners]\nmqtt_bind = \"0.0.0.0:1883\"\n\n\
         [[authentication]]\nmechanism = \"password_based\"\nbackend = \"built_in_database\"\n\
         user_id_type = \"clientid\"\n\
         password_hash_algorithm = { name = \"pbkdf2\", mac_fun = \"sha512\", iterations = 1000 }\n",
    );
    let config = load_with_env(Some(f.path()), &[], &Overrides::default()).expect("loads");
    assert_eq!(config.authentication.len(), 1);
    assert_eq!(
        config.authentication[0].id(),
        "password_based:built_in_database"
    );

    // A disabled authenticator does not count: the listener is open again.
    let off = TempToml::new(
        "[listeners]\nmqtt_bind = \"0.0.0.0:1883\"\n\n\
         [[authentication]]\nmechanism = \"password_based\"\nbackend = \"built_in_database\"\nenable = false\n",
    );
    assert!(load_with_env(Some(off.path()), &[], &Overrides::default()).is_err());

    let bad = TempToml::new(
        "[[authentication]]\nmechanism = \"password_based\"\nbackend = \"built_in_database\"\n\
         password_hash_algorithm = { name = \"pbkdf2\", mac_fun = \"sha512\", iterations = 0 }\n",
    );
    let err = load_with_env(Some(bad.path()), &[], &Overrides::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("authentication.password_hash_algorithm"),
        "{err}"
    );
}

#[test]
fn an_http_api_off_loopback_needs_an_api_key() {
    let open = TempToml::new("[listeners]\nhttp_bind = \"0.0.0.0:18083\"\n");
    let err = load_with_env(Some(open.path()), &[], &Overrides::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                key: "listeners.api_key",
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("0.0.0.0:18083") && !msg.contains('\n'),
        "{msg}"
    );
    let keyed = TempToml::new(
        "[listeners]\nhttp_bind = \"0.0.0.0:18083\"\napi_key = \"k3y-0123456789abc\"\n",
    );
    assert!(load_with_env(Some(keyed.path()), &[], &Overrides::default()).is_ok());
    // A bootstrap file of API keys is a key source too (set through the environment).
    let env = [(
        "MESHMQ_API_KEY__BOOTSTRAP_FILE".to_owned(),
        "/etc/meshmq/api_keys".to_owned(),
    )];
    let booted = load_with_env(Some(open.path()), &env, &Overrides::default()).expect("loads");
    assert_eq!(
        booted.api_key.bootstrap_file.as_deref(),
        Some(std::path::Path::new("/etc/meshmq/api_keys"))
    );
}

#[test]
fn an_authenticator_is_named_by_mechanism_and_backend() {
    let load = |text: &str| {
        let f = TempToml::new(text);
        load_with_env(Some(f.path()), &[], &Overrides::default()).map_err(|e| e.to_string())
    };
    let unknown = load("[[authentication]]\nmechanism = \"password_based\"\nbackend = \"ldap\"\n")
        .unwrap_err();
    assert!(
        unknown.contains("password_based:ldap")
            && unknown.contains("password_based:built_in_database"),
        "{unknown}"
    );
    let missing = load("[[authentication]]\nbackend = \"built_in_database\"\n").unwrap_err();
    assert!(missing.contains("mechanism"), "{missing}");
    let typo = load(
        "[[authentication]]\nmechanism = \"password_based\"\nbackend = \"built_in_database\"\n\
         user_id_typ = \"clientid\"\n",
    )
    .unwrap_err();
    assert!(
        typo.contains("user_id_typ"),
        "an unknown key is named: {typo}"
    );
}

#[test]
fn a_scram_authenticator_loads_in_emqx_form_and_its_iteration_count_is_checked() {
    use crate::auth::scram::ScramAlgorithm;
    use crate::config::AuthenticatorConfig;
    let load = |text: &str| {
        let f = TempToml::new(text);
        load_with_env(Some(f.path()), &[], &Overrides::default())
    };
    let config = load(
        "[[authentication]]\nmechanism = \"scram\"\nbackend = \"built_in_database\"\n\
         algorithm = \"sha512\"\niteration_count = 8192\n",
    )
    .expect("loads");
    let AuthenticatorConfig::Scram(c) = &config.authentication[0] else {
        panic!("a SCRAM authenticator: {:?}", config.authentication);
    };
    assert_eq!(
        (c.algorithm, c.iteration_count),
        (ScramAlgorithm::Sha512, 8192)
    );
    assert_eq!(config.authentication[0].id(), "scram:built_in_database");
    let defaults =
        load("[[authentication]]\nmechanism = \"scram\"\nbackend = \"built_in_database\"\n")
            .expect("loads");
    let AuthenticatorConfig::Scram(d) = &defaults.authentication[0] else {
        panic!("a SCRAM authenticator");
    };
    assert_eq!(
        (d.algorithm, d.iteration_count),
        (ScramAlgorithm::Sha256, 4096)
    );
    for bad in ["iteration_count = 0", "iteration_count = 1000001"] {
        let err = load(&format!(
            "[[authentication]]\nmechanism = \"scram\"\nbackend = \"built_in_database\"\n{bad}\n"
        ))
        .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "authentication.iteration_count",
                    ..
                }
            ),
            "{err}"
        );
    }
    let sha1 = load(
        "[[authentication]]\nmechanism = \"scram\"\nbackend = \"built_in_database\"\n\
         algorithm = \"sha1\"\n",
    )
    .unwrap_err();
    assert!(sha1.to_string().contains("sha1"), "{sha1}");
}

#[test]
fn a_static_api_key_needs_16_characters_and_the_error_never_shows_it() {
    for short in ["", "k", "sh0rt-s3cr3t-15"] {
        let toml = TempToml::new(&format!("[listeners]\napi_key = \"{short}\"\n"));
        let err = load_with_env(Some(toml.path()), &[], &Overrides::default()).unwrap_err();
        let msg = err.to_string();
        let ConfigError::Invalid { key, .. } = err else {
            panic!("{msg}")
        };
        assert_eq!(key, "listeners.api_key", "{msg}");
        assert!(msg.contains("at least 16 characters"), "{msg}");
        assert!(short.len() < 8 || !msg.contains(short), "{msg}");
    }
    let ok = TempToml::new("[listeners]\napi_key = \"sixteen-chars-ok\"\n");
    assert!(load_with_env(Some(ok.path()), &[], &Overrides::default()).is_ok());
}
