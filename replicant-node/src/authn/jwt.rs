//! The JWT authenticator (EMQX's `jwt`): the token in the CONNECT's password (or username)
//! is verified with the configured secret or public key, or with the JWKS key its `kid`
//! names; then `exp` / `nbf` (with `leeway`) and `verify_claims` are checked.
//!
//! Answers: no token, or a value that is not a JWT at all → ignore (the next authenticator
//! decides, so JWT and passwords can share a chain); a JWT with a bad signature, an unknown
//! key, a bad time or a claim mismatch → deny; a good one → allow, superuser when the token
//! says `"is_superuser": true`, with the `acl_claim_name` claim parsed for authorization.
//! A JWKS not fetched yet → error (counted), then ignore.
//!
//! HMAC checks cost about a microsecond and run on the connection's task; RSA and ECDSA
//! checks cost 50 to 200 µs and run on the hashing pool ([`super::pool`]), so a connect
//! storm of signed tokens queues there instead of stalling delivery. Never logs a token.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use meshmq_shared::config::{JwtAlgorithm, JwtConfig, JwtFrom};
use meshmq_shared::metrics as m;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::pool::HashPool;
use super::{Credentials, Decision, Failure, UserName, acl, template};

/// Largest JWKS answer read.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Most keys kept from a JWKS.
pub const MAX_JWKS_KEYS: usize = 100;
/// Longest a JWKS fetch may take.
pub const JWKS_TIMEOUT: Duration = Duration::from_secs(10);

/// One verification key and the algorithms it may verify.
#[derive(Clone)]
struct Key {
    /// The JWKS `kid` (`None` for a configured key: it verifies any token).
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// See the module doc.
pub(super) struct JwtAuth {
    from: JwtFrom,
    /// The keys: fixed, or replaced by each good JWKS fetch.
    keys: Arc<RwLock<Arc<[Key]>>>,
    /// `verify_claims`, each value a template.
    verify_claims: Vec<(String, String)>,
    acl_claim_name: String,
    leeway: u64,
    /// Close the connection at `exp` (+ `leeway`).
    disconnect_after_expire: bool,
    /// Stops the JWKS task when the chain goes away.
    _refresh: Option<tokio_util::sync::DropGuard>,
}

/// Most keys one token is tried with (a token without `kid` against a JWKS of many keys
/// of its algorithm): an RSA or EC check costs 50-200 µs of the hashing pool, so an
/// unauthenticated client cannot make one CONNECT cost a hundred of them.
const MAX_CANDIDATE_KEYS: usize = 4;

impl JwtAuth {
    /// The authenticator of `c` (validated at load); with JWKS, starts the refresh task.
    pub(super) fn new(c: &JwtConfig) -> Result<Self, String> {
        // A token proves only what its claims say: unless a claim binds them, the CONNECT's
        // user name and client id are the client's own choice, and rules or bans by user
        // name (or `${username}` topics) trust a name nobody checked.
        let binds = |p: &str| c.verify_claims.values().any(|v| v.contains(p));
        if !binds("${username}") || !binds("${clientid}") {
            tracing::warn!(
                username_bound = binds("${username}"),
                clientid_bound = binds("${clientid}"),
                "jwt authenticator: verify_claims does not bind the user name and the client \
                 id to the token, so authorization and bans by them trust what the client \
                 sent (docs/authentication.md, JWT)"
            );
        }
        let keys: Arc<[Key]> = if c.use_jwks {
            Arc::from(Vec::new())
        } else {
            Arc::from(vec![configured_key(c)?])
        };
        let keys = Arc::new(RwLock::new(keys));
        let refresh = match (&c.endpoint, c.use_jwks) {
            (Some(endpoint), true) => {
                let client = super::http::client(1).map_err(|e| e.to_string())?;
                let stop = CancellationToken::new();
                tokio::spawn(refresh_jwks(
                    client,
                    endpoint.clone(),
                    Duration::from_secs(c.refresh_interval.max(1)),
                    Arc::downgrade(&keys),
                    stop.clone(),
                ));
                Some(stop.drop_guard())
            }
            _ => None,
        };
        Ok(JwtAuth {
            from: c.from,
            keys,
            verify_claims: c.verify_claims.clone().into_iter().collect(),
            acl_claim_name: c.acl_claim_name.clone(),
            leeway: c.leeway,
            disconnect_after_expire: c.disconnect_after_expire,
            _refresh: refresh,
        })
    }

    /// Whether the token is read from the User Name field (`from = "username"`).
    pub(super) fn reads_username(&self) -> bool {
        matches!(self.from, JwtFrom::Username)
    }

    pub(super) async fn check(
        &self,
        pool: &HashPool,
        creds: Credentials<'_>,
    ) -> Result<Decision, Failure> {
        let token = match self.from {
            JwtFrom::Password => creds.password.and_then(|p| std::str::from_utf8(p).ok()),
            JwtFrom::Username => creds.username,
        };
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(Decision::Ignore);
        };
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Ok(Decision::Ignore); // not a JWT: not ours
        };
        let keys = self.keys.read().clone();
        if keys.is_empty() {
            return Err(Failure::Unavailable); // JWKS not fetched yet
        }
        let candidates: Vec<Key> = keys
            .iter()
            .filter(|k| k.algorithms.contains(&header.alg))
            .filter(|k| match (&k.kid, &header.kid) {
                (Some(a), Some(b)) => a == b,
                (Some(_), None) | (None, _) => true,
            })
            .take(MAX_CANDIDATE_KEYS)
            .cloned()
            .collect();
        if candidates.is_empty() {
            debug!(alg = ?header.alg, "jwt: no key for the token's alg / kid");
            return Ok(Decision::Deny);
        }
        let mut validation = Validation::new(header.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = self.leeway;
        let verify = {
            let token = token.to_owned();
            move || {
                candidates.iter().find_map(|k| {
                    jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                        &token,
                        &k.key,
                        &validation,
                    )
                    .ok()
                })
            }
        };
        let claims = if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            verify()
        } else {
            pool.run(verify).await.ok_or(Failure::Overloaded)?
        };
        let Some(claims) = claims.map(|t| t.claims) else {
            return Ok(Decision::Deny);
        };
        for (name, expected) in &self.verify_claims {
            let expected = template::render(expected, &creds);
            let matched = match claims.get(name) {
                Some(serde_json::Value::String(s)) => *s == expected,
                Some(other) => serde_json::to_string(other).is_ok_and(|s| s == expected),
                None => false,
            };
            if !matched {
                debug!(claim = %name, "jwt: verify_claims mismatch");
                return Ok(Decision::Deny);
            }
        }
        let acl = match claims.get(&self.acl_claim_name) {
            None => None,
            Some(v) => match acl::parse(v) {
                Ok(a) => Some(a),
                Err(e) => {
                    debug!(error = %e, "jwt: unusable acl claim");
                    return Ok(Decision::Deny);
                }
            },
        };
        let expires = claims
            .get("exp")
            // An integer, or a float as some issuers write it (the check above accepted it):
            // whole seconds, rounded down (never later than the token says).
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            })
            .filter(|_| self.disconnect_after_expire)
            .map(|exp| {
                let at = exp.saturating_add(self.leeway);
                std::time::UNIX_EPOCH + Duration::from_secs(at.min(u64::from(u32::MAX) * 4))
            });
        // A token read from the User Name must not stay the client's name: it would be
        // shown in $SYS events, the clients API and traces, and anyone who reads it can
        // connect as this client until it expires.
        let username = match self.from {
            JwtFrom::Password => UserName::AsSent,
            JwtFrom::Username => UserName::Replaced(claimed_name(&claims)),
        };
        Ok(Decision::Allow {
            superuser: is_superuser(claims.get("is_superuser")),
            acl,
            expires,
            username,
        })
    }
}

/// The user name a token read from the User Name field stands for: its `username` claim,
/// else its `sub`, if that is a string an MQTT User Name could be (at most 65 535 bytes,
/// no U+0000); otherwise none.
fn claimed_name(claims: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    ["username", "sub"]
        .iter()
        .find_map(|c| claims.get(*c).and_then(|v| v.as_str()))
        .filter(|s| !s.is_empty() && s.len() <= usize::from(u16::MAX) && !s.contains('\0'))
        .map(str::to_owned)
}

/// EMQX's reading of `is_superuser`: `true`, `"true"` or `1`.
pub(super) fn is_superuser(v: Option<&serde_json::Value>) -> bool {
    match v {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s == "true",
        Some(serde_json::Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

/// The key of a `use_jwks = false` entry.
fn configured_key(c: &JwtConfig) -> Result<Key, String> {
    match c.algorithm {
        JwtAlgorithm::HmacBased => {
            let secret = c.secret.as_deref().unwrap_or_default();
            let key = if c.secret_base64_encoded {
                DecodingKey::from_base64_secret(secret)
            } else {
                DecodingKey::from_secret(secret.as_bytes())
            }
            .map_err(|_| "authentication.secret: unusable".to_owned())?;
            Ok(Key {
                kid: None,
                key,
                algorithms: vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            })
        }
        JwtAlgorithm::PublicKey => {
            let pem = c.public_key.as_deref().unwrap_or_default().as_bytes();
            if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
                return Ok(Key {
                    kid: None,
                    key,
                    algorithms: vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
                });
            }
            let key = DecodingKey::from_ec_pem(pem)
                .map_err(|_| "authentication.public_key: not an RSA or EC key".to_owned())?;
            Ok(Key {
                kid: None,
                key,
                algorithms: vec![Algorithm::ES256, Algorithm::ES384],
            })
        }
    }
}

/// The usable keys of a JWKS (RSA, EC P-256 / P-384), at most [`MAX_JWKS_KEYS`].
fn jwks_keys(set: &JwkSet) -> Vec<Key> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let algorithms = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => {
                    vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512]
                }
                AlgorithmParameters::EllipticCurve(p) => match p.curve {
                    EllipticCurve::P256 => vec![Algorithm::ES256],
                    EllipticCurve::P384 => vec![Algorithm::ES384],
                    _ => return None,
                },
                _ => return None,
            };
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(Key {
                kid: jwk.common.key_id.clone(),
                key,
                algorithms,
            })
        })
        .take(MAX_JWKS_KEYS)
        .collect()
}

/// Fetches the JWKS now and every `interval` until `stop` or the authenticator is gone; a
/// failed fetch keeps the last keys (counted, logged without the body).
async fn refresh_jwks(
    client: reqwest::Client,
    endpoint: String,
    interval: Duration,
    keys: std::sync::Weak<RwLock<Arc<[Key]>>>,
    stop: CancellationToken,
) {
    // Logged by host and port only: the URL may carry credentials (`user:pass@`, a token
    // in the query).
    let host = reqwest::Url::parse(&endpoint).map_or_else(
        |_| "?".to_owned(),
        |u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or("?"),
                u.port_or_known_default().unwrap_or(0)
            )
        },
    );
    loop {
        let fetched = tokio::time::timeout(JWKS_TIMEOUT, fetch_jwks(&client, &endpoint)).await;
        let result = match fetched {
            Ok(Ok(new_keys)) if !new_keys.is_empty() => {
                let Some(keys) = keys.upgrade() else { return };
                *keys.write() = Arc::from(new_keys);
                "ok"
            }
            Ok(Ok(_)) => {
                warn!(
                    jwks_host = %host,
                    "jwt: the JWKS holds no usable key; keeping the last keys"
                );
                "error"
            }
            Ok(Err(e)) => {
                warn!(jwks_host = %host, error = %e, "jwt: JWKS fetch failed; keeping the last keys");
                "error"
            }
            Err(_) => {
                warn!(jwks_host = %host, "jwt: JWKS fetch timed out; keeping the last keys");
                "error"
            }
        };
        metrics::counter!(m::AUTHN_JWKS_REFRESH_TOTAL, "result" => result).increment(1);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        if keys.strong_count() == 0 {
            return;
        }
    }
}

async fn fetch_jwks(client: &reqwest::Client, endpoint: &str) -> Result<Vec<Key>, String> {
    let resp = client
        .get(endpoint)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let body = super::http::read_bounded(resp, MAX_JWKS_BYTES).await?;
    let set: JwkSet = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(jwks_keys(&set))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn creds<'a>(password: &'a str) -> Credentials<'a> {
        Credentials {
            client_id: "c1",
            username: Some("u1"),
            password: Some(password.as_bytes()),
            peerhost: std::net::Ipv4Addr::LOCALHOST.into(),
            cert: None,
        }
    }

    fn token(secret: &[u8], claims: serde_json::Value) -> String {
        let key = EncodingKey::from_secret(secret).expect("key");
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("token")
    }

    fn auth(tweak: impl FnOnce(&mut JwtConfig)) -> JwtAuth {
        let mut c = JwtConfig {
            secret: Some("s3cret".into()),
            ..JwtConfig::default()
        };
        tweak(&mut c);
        JwtAuth::new(&c).expect("authenticator")
    }

    #[tokio::test]
    async fn superuser_acl_and_expiry_come_from_the_claims() {
        let (a, pool) = (auth(|_| {}), HashPool::new());
        let exp = 4_000_000_000u64;
        let t = token(
            b"s3cret",
            json!({"exp": exp, "is_superuser": "true",
                   "acl": [{"permission": "allow", "action": "publish", "topic": "t/${clientid}"}]}),
        );
        let Ok(Decision::Allow {
            superuser,
            acl,
            expires,
            username,
        }) = a.check(&pool, creds(&t)).await
        else {
            panic!("allowed")
        };
        assert!(superuser);
        assert_eq!(username, UserName::AsSent, "the token came as the password");
        let acl = acl.expect("rules");
        assert_eq!((acl.len(), acl[0].topic.as_str()), (1, "t/${clientid}"));
        assert_eq!(
            expires,
            Some(std::time::UNIX_EPOCH + Duration::from_secs(exp))
        );

        let plain = token(b"s3cret", json!({"is_superuser": false}));
        let decided = a.check(&pool, creds(&plain)).await.expect("decided");
        assert_eq!(
            decided,
            Decision::Allow {
                superuser: false,
                acl: None,
                expires: None,
                username: UserName::AsSent,
            },
            "no exp: no expiry"
        );
        let bad_acl = token(b"s3cret", json!({"acl": "everything"}));
        let decided = a.check(&pool, creds(&bad_acl)).await.expect("decided");
        assert_eq!(decided, Decision::Deny);
    }

    #[tokio::test]
    async fn a_base64_secret_is_decoded_and_a_renamed_acl_claim_is_read() {
        let raw = [0u8, 200, 13, 10, 255, 7];
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        let a = auth(|c| {
            c.secret = Some(encoded.clone());
            c.secret_base64_encoded = true;
            c.acl_claim_name = "rules".into();
            c.disconnect_after_expire = false;
        });
        let pool = HashPool::new();
        let t = token(
            &raw,
            json!({"exp": 4_000_000_000u64, "rules": {"sub": ["s/#"]}}),
        );
        let Ok(Decision::Allow { acl, expires, .. }) = a.check(&pool, creds(&t)).await else {
            panic!("allowed with the decoded secret")
        };
        assert_eq!(acl.expect("rules")[0].topic, "s/#");
        assert_eq!(expires, None, "disconnect_after_expire = false");
        let wrong = token(encoded.as_bytes(), json!({}));
        assert_eq!(
            a.check(&pool, creds(&wrong)).await.expect("d"),
            Decision::Deny
        );
    }
}
