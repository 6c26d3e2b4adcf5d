//! The configuration as the REST API shows it (`GET /api/v5/configs`): JSON with every
//! secret replaced by [`REDACTED`], as EMQX does.
//!
//! Owns the list of secret-bearing fields: the API key, TLS key passwords, JWT HMAC
//! secrets, HTTP authenticator/authorizer header values (they may carry credentials) and
//! credentials in a URL (`https://user:pass@host`). Paths to key files are not secret and
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
/// Object keys holding a URL whose user information is hidden.
const URL_KEYS: &[&str] = &["url", "endpoint", "webhook_urls"];

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
                } else if URL_KEYS.contains(&k.as_str()) {
                    match v {
                        Value::String(s) => *s = without_userinfo(s),
                        Value::Array(urls) => {
                            for u in urls.iter_mut() {
                                if let Value::String(s) = u {
                                    *s = without_userinfo(s);
                                }
                            }
                        }
                        _ => {}
                    }
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
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
url = "https://SECRET-user:SECRET-url-pass@auth.example/check"
headers = { authorization = "Bearer SECRET-authn-header" }

[[authentication]]
mechanism = "jwt"
use_jwks = true
endpoint = "https://SECRET-jwks-user:SECRET-jwks-pass@jwks.example/keys"

[alarms]
webhook_urls = ["https://SECRET-hook-user:SECRET-hook-pass@hooks.example/a"]
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
        assert_eq!(raw.matches("SECRET-").count(), 13, "{raw}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("/etc/meshmq/key.pem"), "{shown}");
        assert!(
            shown.contains("https://******@auth.example/check"),
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
