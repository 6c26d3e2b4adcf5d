//! The authentication chain's settings (`[[authentication]]`, EMQX's `authentication`
//! list): authenticators tried in order.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::authn_http::HttpAuthnConfig;
use super::authn_jwt::JwtConfig;
use crate::auth::password::{Algorithm, SaltPosition};
use crate::auth::scram::ScramAlgorithm;

/// One authenticator of the chain. Each answers allow, deny or ignore; the first allow or
/// deny decides; when every one ignores, the client is refused.
///
/// An entry names its kind as EMQX does, by `mechanism` and (where the mechanism has
/// several) `backend`: `password_based` + `built_in_database`. Each kind is its own struct
/// carrying those two keys, so the file reads exactly like EMQX's `authentication` list and
/// a wrong pair is refused with the list of known ones.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum AuthenticatorConfig {
    /// `mechanism = "password_based"`, `backend = "built_in_database"`.
    BuiltInDatabase(BuiltInDatabaseConfig),
    /// `mechanism = "scram"`, `backend = "built_in_database"`.
    Scram(ScramConfig),
    /// `mechanism = "jwt"`.
    Jwt(JwtConfig),
    /// `mechanism = "password_based"`, `backend = "http"`.
    Http(HttpAuthnConfig),
}

/// Password-based, users in the cluster tables (EMQX's `password_based:built_in_database`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuiltInDatabaseConfig {
    /// `password_based`.
    pub mechanism: PasswordBased,
    /// `built_in_database`.
    pub backend: BuiltInDatabase,
    /// Which CONNECT field names the user.
    #[serde(default)]
    pub user_id_type: UserIdType,
    /// How new passwords are hashed (`name` and its parameters: docs/configuration.md,
    /// "Authentication"); stored users carry their own algorithm, so imports keep theirs.
    #[serde(default = "default_algorithm")]
    pub password_hash_algorithm: Algorithm,
    /// False: skipped, as if absent.
    #[serde(default = "enabled")]
    pub enable: bool,
}

impl Default for BuiltInDatabaseConfig {
    fn default() -> Self {
        BuiltInDatabaseConfig {
            mechanism: PasswordBased::PasswordBased,
            backend: BuiltInDatabase::BuiltInDatabase,
            user_id_type: UserIdType::default(),
            password_hash_algorithm: default_algorithm(),
            enable: true,
        }
    }
}

/// `mechanism = "password_based"`: the CONNECT's password is checked by a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PasswordBased {
    /// The only value.
    #[serde(rename = "password_based")]
    PasswordBased,
}

/// `backend = "built_in_database"`: users in the cluster tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BuiltInDatabase {
    /// The only value.
    #[serde(rename = "built_in_database")]
    BuiltInDatabase,
}

/// The `mechanism` / `backend` pairs known, as `mechanism:backend` (EMQX's authenticator
/// ids), for error messages.
pub const KNOWN_AUTHENTICATORS: &[&str] = &[
    "password_based:built_in_database",
    "scram:built_in_database",
    "password_based:http",
    "jwt",
];

impl<'de> Deserialize<'de> for AuthenticatorConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(d)?;
        let field = |k: &str| value.get(k).and_then(serde_json::Value::as_str);
        let (Some(mechanism), backend) = (field("mechanism"), field("backend")) else {
            return Err(D::Error::custom(format!(
                "an authenticator needs `mechanism` (and `backend`): one of {}",
                KNOWN_AUTHENTICATORS.join(", ")
            )));
        };
        let parsed = match (mechanism, backend) {
            ("password_based", Some("built_in_database")) => {
                serde_json::from_value(value.clone()).map(AuthenticatorConfig::BuiltInDatabase)
            }
            ("scram", Some("built_in_database")) => {
                serde_json::from_value(value.clone()).map(AuthenticatorConfig::Scram)
            }
            ("password_based", Some("http")) => {
                serde_json::from_value(value.clone()).map(AuthenticatorConfig::Http)
            }
            ("jwt", None) => serde_json::from_value(value.clone()).map(AuthenticatorConfig::Jwt),
            _ => {
                let id = backend.map_or(mechanism.to_owned(), |b| format!("{mechanism}:{b}"));
                return Err(D::Error::custom(format!(
                    "unknown authenticator {id:?}: mechanism and backend must be one of {}",
                    KNOWN_AUTHENTICATORS.join(", ")
                )));
            }
        };
        parsed.map_err(|e| {
            let id = backend.map_or(mechanism.to_owned(), |b| format!("{mechanism}:{b}"));
            D::Error::custom(format!("{id}: {e}"))
        })
    }
}

/// The CONNECT field that names a built-in database user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserIdType {
    /// The username (EMQX's default).
    #[default]
    Username,
    /// The client identifier.
    Clientid,
}

pub(super) fn enabled() -> bool {
    true
}

fn default_algorithm() -> Algorithm {
    Algorithm::Sha256 {
        salt_position: SaltPosition::Suffix,
    }
}

impl AuthenticatorConfig {
    /// Whether this authenticator takes part.
    pub fn enabled(&self) -> bool {
        match self {
            AuthenticatorConfig::BuiltInDatabase(c) => c.enable,
            AuthenticatorConfig::Scram(c) => c.enable,
            AuthenticatorConfig::Jwt(c) => c.enable,
            AuthenticatorConfig::Http(c) => c.enable,
        }
    }

    /// EMQX's id of the authenticator (`mechanism:backend`), used in metrics and the API.
    pub fn id(&self) -> &'static str {
        match self {
            AuthenticatorConfig::BuiltInDatabase(_) => "password_based:built_in_database",
            AuthenticatorConfig::Scram(_) => "scram:built_in_database",
            AuthenticatorConfig::Jwt(_) => "jwt",
            AuthenticatorConfig::Http(_) => "password_based:http",
        }
    }
}

/// MQTT 5.0 enhanced authentication with SCRAM, users in the cluster tables (EMQX's
/// `scram:built_in_database`): a CONNECT with Authentication Method `SCRAM-SHA-256` (or
/// `SCRAM-SHA-512`) is authenticated by the AUTH exchange of RFC 5802 (docs/scram.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScramConfig {
    /// `scram`.
    pub mechanism: ScramMechanism,
    /// `built_in_database`.
    pub backend: BuiltInDatabase,
    /// `sha256` (method `SCRAM-SHA-256`) or `sha512` (`SCRAM-SHA-512`).
    #[serde(default)]
    pub algorithm: ScramAlgorithm,
    /// Iteration count of new users' credentials (and of the exchange offered for an
    /// unknown user); 1 to 1 000 000, RFC 7677 asks for at least 4096. Stored users keep
    /// their own.
    #[serde(default = "default_iteration_count")]
    pub iteration_count: u32,
    /// False: skipped, as if absent.
    #[serde(default = "enabled")]
    pub enable: bool,
}

impl Default for ScramConfig {
    fn default() -> Self {
        ScramConfig {
            mechanism: ScramMechanism::Scram,
            backend: BuiltInDatabase::BuiltInDatabase,
            algorithm: ScramAlgorithm::default(),
            iteration_count: default_iteration_count(),
            enable: true,
        }
    }
}

/// `mechanism = "scram"`: MQTT 5.0 enhanced authentication (AUTH packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ScramMechanism {
    /// The only value.
    #[serde(rename = "scram")]
    Scram,
}

fn default_iteration_count() -> u32 {
    4096
}
