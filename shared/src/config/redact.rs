//! The configuration as the REST API shows it (`GET /api/v5/configs`): JSON with every
//! secret replaced by [`REDACTED`], as EMQX does.
//!
//! Owns the list of secret-bearing fields: the API key, TLS key passwords, JWT HMAC
//! secrets, HTTP authenticator/authorizer header values (they may carry credentials), the
//! literal values of their request bodies (templates such as `${username}` are shown),
//! credentials in a URL (`https://user:pass@host`, query values) and the path of a webhook
//! URL (Slack-style hooks keep their secret there). Paths to key files are not secret and
//! are shown. A new secret field must be added to [`SECRET_KEYS`] (the test below sets
//! every one and checks none shows).

use serde_json::Value;

use super::Config;

/// What a secret is shown as.
pub const REDACTED: &str = "******";

/// Object keys whose (non-null) value is a secret, wherever they appear.
const SECRET_KEYS: &[&str] = &["api_key", "password", "secret"];
/// Object keys whose value is a map of secrets (every value hidden, names shown).
const SECRET_MAPS: &[&str] = &["headers", "webhook_headers"];
/// Object keys holding a URL whose user information and query values are hidden.
const URL_KEYS: &[&str] = &["url", "endpoint"];
/// Object keys holding webhook URLs: only scheme, host and port are shown.
const WEBHOOK_KEYS: &[&str] = &["webhook_urls"];
/// Object keys whose value is a request body template: literal values hidden.
const BODY_MAPS: &[&str] = &["body"];

/// `config` as JSON, secrets replaced by [`REDACTED`].
pub fn redacted(config: &Config) -> Value {
    let mut tree = serde_json::to_value(config).unwrap_or(Value::Null);
    redact(&mut tree);
    tree
}

/// Replaces the secrets in a JSON tree of (part of) a configuration.
pub fn redact(tree: &mut Value) {
    match tree {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if SECRET_KEYS.contains(&k.as_str()) && !v.is_null() {
                    *v = Value::from(REDACTED);
                } else if SECRET_MAPS.contains(&k.as_str())
                    && let Value::Object(m) = v
                {
                    for value in m.values_mut() {
                        *value = Value::from(REDACTED);
                    }
                } else if BODY_MAPS.contains(&k.as_str())
                    && let Value::Object(m) = v
                {
                    for value in m.values_mut() {
                        *value = Value::from(placeholders_only(value.as_str().unwrap_or("")));
                    }
                } else if URL_KEYS.contains(&k.as_str()) {
                    each_string(v, |s| without_query_values(&without_userinfo(s)));
                } else if WEBHOOK_KEYS.contains(&k.as_str()) {
                    each_string(v, origin_only);
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// A body template as shown: its `${...}` placeholders, each literal part (which may be a
/// static token, `Bearer abc${clientid}`) as [`REDACTED`].
fn placeholders_only(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while !rest.is_empty() {
        let (literal, tail) = match rest.find("${") {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if !literal.is_empty() {
            out.push_str(REDACTED);
        }
        match tail.find('}') {
            Some(end) if !tail.is_empty() => {
                out.push_str(&tail[..=end]);
                rest = &tail[end + 1..];
            }
            _ => {
                if !tail.is_empty() {
                    out.push_str(REDACTED);
                }
                rest = "";
            }
        }
    }
    out
}

/// Applies `f` to `v` if it is a string, or to each string of an array.
fn each_string(v: &mut Value, f: impl Fn(&str) -> String) {
    match v {
        Value::String(s) => *s = f(s),
        Value::Array(items) => {
            for item in items.iter_mut() {
                if let Value::String(s) = item {
                    *s = f(s);
                }
            }
        }
        _ => {}
    }
}

/// `...?a=1&b` → `...?a=******&b` (names shown, values hidden); the fragment is dropped.
fn without_query_values(url: &str) -> String {
    let url = url.split('#').next().unwrap_or(url);
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((name, _)) => format!("{name}={REDACTED}"),
            None if p.is_empty() => String::new(),
            // A bare parameter may be the token itself.
            None => REDACTED.to_owned(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// `scheme://user:pass@host:port/path?q` → `scheme://host:port/******` (path and query
/// hidden when there are any).
fn origin_only(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return REDACTED.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host = authority
        .rfind('@')
        .map_or(authority, |at| &authority[at + 1..]);
    let tail = &rest[authority_end..];
    if tail.is_empty() || tail == "/" {
        format!("{scheme}://{host}{tail}")
    } else {
        format!("{scheme}://{host}/{REDACTED}")
    }
}

/// `scheme://user:pass@host/...` → `scheme://******@host/...`; other text unchanged.
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{REDACTED}{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    /// A configuration with every secret-bearing field set, each to a distinct marker.
    const TOML: &str = r#"
[listeners]
api_key = "SECRET-api-key"

[listeners.ssl.default]
bind = "127.0.0.1:0"
[listeners.ssl.default.ssl_options]
certfile = "/etc/meshmq/cert.pem"
keyfile = "/etc/meshmq/key.pem"
password = "SECRET-key-password"
[[listeners.ssl.default.ssl_options.sni]]
server_name = "b.example"
certfile = "/etc/meshmq/b.pem"
keyfile = "/etc/meshmq/b.key"
password = "SECRET-sni-password"

[[authentication]]
mechanism = "jwt"
algorithm = "hmac-based"
secret = "SECRET-jwt-hmac"

[[authentication]]
mechanism = "password_based"
backend = "http"
url = "https://SECRET-user:SECRET-url-pass@auth.example/check?token=SECRET-query&SECRET-bare#SECRET-frag"
headers = { authorization = "Bearer SECRET-authn-header" }
body = { username = "${username}", client_secret = "SECRET-body", auth = "Bearer SECRET-mixed-${clientid}" }

[[authentication]]
mechanism = "jwt"
use_jwks = true
endpoint = "https://SECRET-jwks-user:SECRET-jwks-pass@jwks.example/keys"

[alarms]
webhook_urls = ["https://SECRET-hook-user:SECRET-hook-pass@hooks.example/a", "https://hooks.slack.example/services/SECRET-slack-path"]
webhook_headers = { authorization = "Bearer SECRET-hook-header" }

[authorization]
[[authorization.sources]]
type = "http"
url = "https://authz.example/check"
headers = { "x-api-key" = "SECRET-authz-header" }
"#;

    #[test]
    fn no_secret_shows_and_paths_do() {
        let config: Config = toml::from_str(TOML).unwrap();
        let shown = serde_json::to_string(&redacted(&config)).unwrap();
        // Every marker really is in the unredacted form (the test would pass vacuously
        // otherwise).
        let raw = serde_json::to_string(&config).unwrap();
        assert_eq!(raw.matches("SECRET-").count(), 19, "{raw}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("/etc/meshmq/key.pem"), "{shown}");
        assert!(
            shown.contains("https://******@auth.example/check?token=******&******\""),
            "{shown}"
        );
        assert!(shown.contains("\"username\":\"${username}\""), "{shown}");
        assert!(shown.contains("\"auth\":\"******${clientid}\""), "{shown}");
        assert!(
            shown.contains("\"https://hooks.slack.example/******\""),
            "{shown}"
        );
        assert!(shown.contains("https://authz.example/check"), "{shown}");
        assert!(shown.contains("\"x-api-key\":\"******\""), "{shown}");
    }

    #[test]
    fn unset_secrets_stay_null() {
        let shown = redacted(&Config::default());
        assert_eq!(shown["listeners"]["api_key"], Value::Null);
    }
}
