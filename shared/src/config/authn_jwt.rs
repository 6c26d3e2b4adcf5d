//! The JWT authenticator's settings (`mechanism = "jwt"`, EMQX's `jwt` authenticator): where
//! the token is, how its signature is checked (a secret, a public key or a JWKS endpoint),
//! and which claims must hold.
//!
//! Owns the shape and defaults of the entry, never the checks (those are in `load.rs`) nor
//! the verification (`replicant-node/src/authn/jwt.rs`). Its `Debug` never shows the
//! secret.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// JWT authentication (EMQX's `jwt`): the CONNECT's password (or username) is a signed
/// token; a good signature and claims allow, a bad one denies, no token is ignored.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// `jwt`.
    pub mechanism: Jwt,
    /// The CONNECT field that carries the token (default `password`).
    #[serde(default)]
    pub from: JwtFrom,
    /// True: keys come from the JWKS at `endpoint`; false: from `algorithm` with `secret` or
    /// `public_key`.
    #[serde(default)]
    pub use_jwks: bool,
    /// Without JWKS, how tokens are signed: `hmac-based` (HS256/384/512 with `secret`) or
    /// `public-key` (RS256/384/512 or ES256/384 with `public_key`).
    #[serde(default)]
    pub algorithm: JwtAlgorithm,
    /// The HMAC secret (`algorithm = "hmac-based"`). Never logged.
    #[serde(default)]
    pub secret: Option<String>,
    /// True: `secret` is base64 and the key is its decoded bytes.
    #[serde(default)]
    pub secret_base64_encoded: bool,
    /// The PEM public key, RSA or EC P-256/P-384 (`algorithm = "public-key"`).
    #[serde(default)]
    pub public_key: Option<String>,
    /// The JWKS URL (`use_jwks = true`), fetched at start and every `refresh_interval`; the
    /// token's `kid` picks the key. A failed fetch keeps the last keys.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Seconds between two JWKS fetches, 1 to 86 400 (default 300, as EMQX).
    #[serde(default = "default_refresh_interval")]
    pub refresh_interval: u64,
    /// Claims the token must carry with exactly these values; `${clientid}` and
    /// `${username}` in a value are replaced by the client's (e.g. `sub = "${clientid}"`).
    #[serde(default)]
    pub verify_claims: BTreeMap<String, String>,
    /// The claim holding the client's authorization rules (EMQX's format), handed to
    /// authorization. Default `acl`.
    #[serde(default = "default_acl_claim_name")]
    pub acl_claim_name: String,
    /// Close the connection when the token's `exp` (plus `leeway`) passes, with 0x87 Not
    /// authorized (3.1.1: the socket closes); the will is sent. Default true, as EMQX.
    #[serde(default = "super::authn::enabled")]
    pub disconnect_after_expire: bool,
    /// Seconds of clock skew allowed when checking `exp` and `nbf`, at most 3 600 (default
    /// 0: EMQX allows none).
    #[serde(default)]
    pub leeway: u64,
    /// False: skipped, as if absent.
    #[serde(default = "super::authn::enabled")]
    pub enable: bool,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("from", &self.from)
            .field("use_jwks", &self.use_jwks)
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_base64_encoded", &self.secret_base64_encoded)
            .field("public_key", &self.public_key.is_some())
            .field("endpoint", &self.endpoint)
            .field("refresh_interval", &self.refresh_interval)
            .field("verify_claims", &self.verify_claims)
            .field("acl_claim_name", &self.acl_claim_name)
            .field("disconnect_after_expire", &self.disconnect_after_expire)
            .field("leeway", &self.leeway)
            .field("enable", &self.enable)
            .finish()
    }
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            mechanism: Jwt::Jwt,
            from: JwtFrom::default(),
            use_jwks: false,
            algorithm: JwtAlgorithm::default(),
            secret: None,
            secret_base64_encoded: false,
            public_key: None,
            endpoint: None,
            refresh_interval: default_refresh_interval(),
            verify_claims: BTreeMap::new(),
            acl_claim_name: default_acl_claim_name(),
            disconnect_after_expire: true,
            leeway: 0,
            enable: true,
        }
    }
}

/// `mechanism = "jwt"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Jwt {
    /// The only value.
    #[serde(rename = "jwt")]
    Jwt,
}

/// The CONNECT field that carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JwtFrom {
    /// The Password field (EMQX's default).
    #[default]
    Password,
    /// The User Name field.
    Username,
}

/// How tokens are signed when no JWKS is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum JwtAlgorithm {
    /// HS256, HS384, HS512 with `secret`.
    #[default]
    #[serde(rename = "hmac-based")]
    HmacBased,
    /// RS256, RS384, RS512 (RSA key) or ES256, ES384 (EC key) with `public_key`.
    #[serde(rename = "public-key")]
    PublicKey,
}

fn default_refresh_interval() -> u64 {
    300
}

fn default_acl_claim_name() -> String {
    "acl".to_owned()
}
