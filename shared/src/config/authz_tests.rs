//! `[authorization]` read from a TOML file through the normal loading path: the example of
//! docs/authorization.md loads and compiles, and each invalid form is refused with the key.

use super::{ConfigError, Overrides, load_with_env};
use crate::config::{AuthzSourceConfig, DenyAction, NoMatch};

fn load(text: &str) -> Result<crate::config::Config, ConfigError> {
    let path = std::env::temp_dir().join(format!(
        "meshmq-authz-config-{}-{}.toml",
        std::process::id(),
        crate::auth::acl::MAX_RULE_TOPIC_LEN ^ text.len()
    ));
    std::fs::write(&path, text).expect("write temp config");
    let loaded = load_with_env(Some(&path), &[], &Overrides::default());
    let _ = std::fs::remove_file(&path);
    loaded
}

const EXAMPLE: &str = r##"
[authorization]
no_match = "deny"
deny_action = "disconnect"
cache = { enable = true, max_size = 64, ttl_ms = 1000 }

[[authorization.sources]]
type = "file"
rules = [
  { permission = "allow", who = { username = "admin" }, action = "all", topics = ["#"] },
  { permission = "allow", who = "all", action = "all", topics = ["users/${username}/#"] },
  { permission = "deny",  who = "all", action = { action = "publish", retain = true }, topics = ["telemetry/#"] },
  { permission = "allow", who = { ipaddr = "10.0.0.0/8" }, action = { action = "subscribe", qos = [0, 1] }, topics = ["telemetry/#"] },
  { permission = "allow", who = { or = [{ clientid_re = "^dev-" }, { ipaddrs = ["::1", "127.0.0.1"] }] }, action = "subscribe", topics = ["eq alerts/#"] },
]

[[authorization.sources]]
type = "built_in_database"

[[authorization.sources]]
type = "http"
method = "post"
url = "http://127.0.0.1:8080/authz"
headers = { authorization = "Bearer s3cr3t-token" }
body = { username = "${username}", topic = "${topic}", action = "${action}", qos = "${qos}" }
request_timeout = 2
pool_size = 16
"##;

#[test]
fn the_documented_example_loads() {
    let c = load(EXAMPLE).expect("example loads");
    let a = &c.authorization;
    assert_eq!(a.no_match, NoMatch::Deny);
    assert_eq!(a.deny_action, DenyAction::Disconnect);
    assert_eq!((a.cache.max_size, a.cache.ttl_ms), (64, 1000));
    assert_eq!(a.sources.len(), 3);
    let AuthzSourceConfig::File { rules, .. } = &a.sources[0] else {
        panic!("file source first: {:?}", a.sources[0]);
    };
    assert_eq!(
        super::super::authz::compile_rules(rules).map(|r| r.len()),
        Ok(5)
    );
    let AuthzSourceConfig::Http(h) = &a.sources[2] else {
        panic!("http source third: {:?}", a.sources[2]);
    };
    assert_eq!((h.request_timeout, h.pool_size, h.body.len()), (2, 16, 4));
    let shown = format!("{:?}", a.sources[2]);
    assert!(
        !shown.contains("s3cr3t"),
        "Debug hides header values: {shown}"
    );
    assert!(shown.contains("authorization"), "{shown}");
}

#[test]
fn invalid_forms_name_the_key() {
    let source = |body: &str| format!("[[authorization.sources]]\n{body}\n");
    for (text, key) in [
        (
            "[authorization]\ncache = { max_size = 0 }".to_owned(),
            "authorization.cache.max_size",
        ),
        (
            "[authorization]\ncache = { max_size = 5000 }".to_owned(),
            "authorization.cache.max_size",
        ),
        (
            "[authorization]\ncache = { ttl_ms = 0 }".to_owned(),
            "authorization.cache.ttl_ms",
        ),
        (
            source("type = \"file\"\npath = \"/x\""),
            "authorization.sources",
        ),
        (
            source("type = \"file\"\nformat = \"mosquitto\""),
            "authorization.sources",
        ),
        (
            source(
                "type = \"file\"\nrules = [{ permission = \"allow\", who = { username_re = \"(\" }, action = \"all\", topics = [\"t\"] }]",
            ),
            "authorization.sources",
        ),
        (
            source(
                "type = \"built_in_database\"\n[[authorization.sources]]\ntype = \"built_in_database\"",
            ),
            "authorization.sources",
        ),
        (
            source("type = \"http\"\nurl = \"ftp://x/\""),
            "authorization.sources.url",
        ),
        (
            source("type = \"http\"\nurl = \"http://x/\"\nrequest_timeout = 0"),
            "authorization.sources.request_timeout",
        ),
        (
            source("type = \"http\"\nurl = \"http://x/\"\npool_size = 5000"),
            "authorization.sources.pool_size",
        ),
        (
            source("type = \"http\"\nurl = \"http://x/\"\nbody = { p = \"${password}\" }"),
            "authorization.sources.body",
        ),
        (
            source("type = \"http\"\nurl = \"http://x/\"\nheaders = { \"a b\" = \"v\" }"),
            "authorization.sources.headers",
        ),
    ] {
        match load(&text) {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
            other => panic!("{text}: expected an invalid {key}, got {other:?}"),
        }
    }
    for text in [
        source("type = \"http\""),
        source(
            "type = \"file\"\nrules = [{ permission = \"maybe\", who = \"all\", action = \"all\", topics = [\"t\"] }]",
        ),
        source(
            "type = \"file\"\nrules = [{ permission = \"allow\", who = \"everyone\", action = \"all\", topics = [\"t\"] }]",
        ),
        "[authorization]\nno_match = \"perhaps\"".to_owned(),
    ] {
        assert!(load(&text).is_err(), "{text} must be refused");
    }
}
