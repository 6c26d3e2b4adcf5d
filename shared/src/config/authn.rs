//! The authentication chain's settings (`[[authentication]]`, EMQX's `authentication`
//! list): authenticators tried in order.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::password::{Algorithm, SaltPosition};

/// One authenticator of the chain. Each answers allow, deny or ignore; the first allow or
/// deny decides; when every one ignores, the client is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthenticatorConfig {
    /// Password-based, users in the cluster tables (EMQX's
    /// `password_based:built_in_database`).
    BuiltInDatabase {
        /// Only `password_based` (EMQX's name, kept so its configuration reads the same).
        #[serde(default = "password_based")]
        mechanism: String,
        /// Which CONNECT field names the user.
        #[serde(default)]
        user_id_type: UserIdType,
        /// How new passwords are hashed (`name` and its parameters: docs/configuration.md,
        /// "Authentication"); stored users carry their own algorithm, so imports keep theirs.
        #[serde(default = "default_algorithm")]
        password_hash_algorithm: Algorithm,
        /// False: skipped, as if absent.
        #[serde(default = "enabled")]
        enable: bool,
    },
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

fn password_based() -> String {
    "password_based".into()
}

fn enabled() -> bool {
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
            AuthenticatorConfig::BuiltInDatabase { enable, .. } => *enable,
        }
    }

    /// EMQX's id of the authenticator (`mechanism:backend`), used in metrics and the API.
    pub fn id(&self) -> &'static str {
        match self {
            AuthenticatorConfig::BuiltInDatabase { .. } => "password_based:built_in_database",
        }
    }
}
