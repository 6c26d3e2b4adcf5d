//! The authentication chain: every way a client gets in (a CONNECT over TCP or WebSocket,
//! which is also how a client comes back after a takeover, an evacuation or a rebalance)
//! asks [`Chain::authenticate`] before it may claim its client id.
//!
//! Authenticators are tried in the configured order (`[[authentication]]`); each answers
//! allow, deny or ignore; the first allow or deny decides; when every one ignores, the
//! client is refused (5.0 0x87 Not authorized, 3.1.1 code 5). A deny is 0x86 Bad user name
//! or password (3.1.1 code 4). With no authenticator enabled every client is allowed: the
//! start-up check (`listeners.allow_anonymous`) keeps such a node on loopback unless the
//! operator says otherwise.
//!
//! A CONNECT with an Authentication Method (MQTT 5.0 enhanced authentication) does not run
//! the chain: the method's authenticator ([`Chain::scram`], SCRAM-SHA-256/512) decides
//! through the AUTH exchange the connection drives; a method no authenticator answers is
//! refused 0x8C. In the password chain a SCRAM authenticator ignores.
//!
//! The authenticators: the built-in database ([`builtin`]), SCRAM ([`scram`]), JWT ([`jwt`])
//! and an HTTP service ([`http`]). An allow may carry the client's own rules ([`acl`]) for
//! authorization, and an expiry that closes the connection (a JWT's `exp`). An
//! authenticator that cannot decide (a service down, a timeout, keys not fetched yet)
//! counts `error` and is treated as ignore.
//!
//! Owns the decision and its metrics (`meshmq_authentication_total{authenticator,result}`,
//! `meshmq_authentication_results_total{result}` once per CONNECT,
//! `meshmq_authentication_seconds{authenticator}`). It never logs a password, a hash or a
//! salt, and never runs a slow hash on the runtime's threads ([`pool`]).

pub mod acl;
pub mod api;
mod builtin;
mod chain_api;
pub(crate) mod http;
pub mod import;
mod import_json;
#[cfg(test)]
mod import_tests;
mod jwt;
mod new_password;
pub mod pool;
pub mod scram;
pub(crate) mod template;
pub(crate) mod transfer;

use std::time::Instant;

use meshmq_shared::codec::ReasonCode;
use meshmq_shared::config::{AuthenticatorConfig, Config};
use meshmq_shared::metrics as m;

use crate::ctx::TableState;

/// What a CONNECT presents. Its `Debug` never shows the password.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The client identifier (as assigned, if the client sent none).
    pub client_id: &'a str,
    /// The User Name field.
    pub username: Option<&'a str>,
    /// The Password field.
    pub password: Option<&'a [u8]>,
    /// The client's address (`${peerhost}`, banned addresses, rules by address).
    pub peerhost: std::net::IpAddr,
    /// The client certificate's names (TLS listeners; `${cert_common_name}`,
    /// `${cert_subject}`).
    pub cert: Option<&'a crate::listeners::CertNames>,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.map(|_| "<redacted>"))
            .field("peerhost", &self.peerhost)
            .field("cert", &self.cert)
            .finish()
    }
}

/// One authenticator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The client may connect; a superuser skips authorization.
    Allow {
        /// Authorization is skipped for this client.
        superuser: bool,
        /// Rules for this client handed over by the authenticator (a JWT's `acl` claim,
        /// an HTTP service's `acl` field), for authorization.
        acl: Option<acl::Acl>,
        /// When the credentials stop being valid (a JWT's `exp` with
        /// `disconnect_after_expire`): the connection is closed then.
        expires: Option<std::time::SystemTime>,
        /// The client's user name from now on (see [`UserName`]).
        username: UserName,
    },
    /// The credentials are wrong: refuse.
    Deny,
    /// Not this authenticator's client (unknown user, no password): ask the next.
    Ignore,
}

/// The user name a client has once it is let in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UserName {
    /// The User Name field of its CONNECT.
    #[default]
    AsSent,
    /// Not the field: it carried a credential (a JWT read `from = "username"`), which must
    /// never be shown as the user's name ($SYS events, the clients API, traces, `${username}`
    /// rules, bans). This name comes from the token's claims, or there is none.
    Replaced(Option<String>),
}

/// The chain's verdict on a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it in.
    Allowed {
        /// Authorization is skipped for this client.
        superuser: bool,
        /// The client's own rules from its authenticator (see [`Decision::Allow`]).
        acl: Option<acl::Acl>,
        /// When the connection must be closed (see [`Decision::Allow`]).
        expires: Option<std::time::SystemTime>,
        /// The client's user name from now on (see [`UserName`]).
        username: UserName,
    },
    /// Refuse with this reason code (the codec maps it for 3.1.1).
    Refused(ReasonCode),
}

/// An authenticator of the chain.
enum Authenticator {
    BuiltIn(builtin::BuiltIn),
    Scram(scram::Scram),
    Jwt(jwt::JwtAuth),
    Http(http::HttpAuth),
}

impl Authenticator {
    fn id(&self) -> &'static str {
        match self {
            Authenticator::BuiltIn(_) => "password_based:built_in_database",
            Authenticator::Scram(_) => scram::ID,
            Authenticator::Jwt(_) => "jwt",
            Authenticator::Http(_) => "password_based:http",
        }
    }
}

/// The configured chain and the hashing pool it uses.
pub struct Chain {
    authenticators: Vec<Authenticator>,
    pool: pool::HashPool,
    /// One `import_users` at a time on this node: each holds its file (up to 64 MiB) and
    /// its rows in memory.
    imports: tokio::sync::Semaphore,
}

/// Why an authenticator could not decide (counted as `error`, then treated as ignore).
#[derive(Debug)]
pub(crate) enum Failure {
    /// The stored row cannot be checked.
    Corrupt,
    /// The hashing queue is full.
    Overloaded,
    /// The authenticator's service or keys could not be reached (an HTTP error or timeout,
    /// a JWKS not fetched yet): ignore.
    Unavailable,
}

/// An authenticator that could not be built from its (validated) settings.
#[derive(Debug, thiserror::Error)]
#[error("authentication[{index}] ({id}): {reason}")]
pub struct ChainError {
    /// Its position in `[[authentication]]`.
    pub index: usize,
    /// Its EMQX id.
    pub id: &'static str,
    /// What failed.
    pub reason: String,
}

impl Chain {
    /// The chain of `config.authentication` (disabled entries left out). Starts the JWKS
    /// refresh tasks, so it runs inside the runtime.
    pub fn new(config: &Config) -> Result<Self, ChainError> {
        let mut authenticators = Vec::new();
        for (index, a) in config.authentication.iter().enumerate() {
            if !a.enabled() {
                continue;
            }
            let built = match a {
                AuthenticatorConfig::BuiltInDatabase(c) => Ok(Authenticator::BuiltIn(
                    builtin::BuiltIn::new(c.user_id_type),
                )),
                AuthenticatorConfig::Scram(c) => Ok(Authenticator::Scram(scram::Scram::new(
                    c.algorithm,
                    c.iteration_count,
                ))),
                AuthenticatorConfig::Jwt(c) => jwt::JwtAuth::new(c).map(Authenticator::Jwt),
                AuthenticatorConfig::Http(c) => http::HttpAuth::new(c).map(Authenticator::Http),
            };
            authenticators.push(built.map_err(|reason| ChainError {
                index,
                id: a.id(),
                reason,
            })?);
        }
        Ok(Chain {
            authenticators,
            pool: pool::HashPool::new(),
            imports: tokio::sync::Semaphore::new(1),
        })
    }

    /// The turn an `import_users` holds while it runs (one per node).
    pub(crate) fn import_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.imports.try_acquire().ok()
    }

    /// The pool that runs slow hashes (also for passwords set through the API).
    pub fn pool(&self) -> &pool::HashPool {
        &self.pool
    }

    /// Whether any authenticator is enabled (false: anonymous access).
    pub fn is_enabled(&self) -> bool {
        !self.authenticators.is_empty()
    }

    /// Whether a CONNECT's User Name may carry a credential (a JWT authenticator reads its
    /// token from it): then the field is never recorded as the user's name.
    pub fn username_is_secret(&self) -> bool {
        self.authenticators
            .iter()
            .any(|a| matches!(a, Authenticator::Jwt(j) if j.reads_username()))
    }

    /// The enabled SCRAM authenticator answering the Authentication Method `method` (the
    /// first in the chain's order); `None`: the method is refused (0x8C).
    pub(crate) fn scram(&self, method: &str) -> Option<&scram::Scram> {
        self.authenticators.iter().find_map(|a| match a {
            Authenticator::Scram(s) if s.answers(method) => Some(s),
            _ => None,
        })
    }

    /// Runs the chain for one CONNECT.
    pub async fn authenticate(&self, tables: &TableState, creds: Credentials<'_>) -> Verdict {
        if self.authenticators.is_empty() {
            return Verdict::Allowed {
                superuser: false,
                acl: None,
                expires: None,
                username: UserName::AsSent,
            };
        }
        let mut overloaded = false;
        for a in &self.authenticators {
            let started = Instant::now();
            let decided = match a {
                Authenticator::BuiltIn(b) => b.check(tables, &self.pool, creds).await,
                // Enhanced authentication only: a CONNECT without a method is not its client.
                Authenticator::Scram(_) => Ok(Decision::Ignore),
                Authenticator::Jwt(j) => j.check(&self.pool, creds).await,
                Authenticator::Http(h) => h.check(creds).await,
            };
            let id = a.id();
            metrics::histogram!(m::AUTHN_SECONDS, "authenticator" => id)
                .record(started.elapsed().as_secs_f64());
            let result = match decided {
                Ok(Decision::Allow { .. }) => "allow",
                Ok(Decision::Deny) => "deny",
                Ok(Decision::Ignore) => "ignore",
                Err(_) => "error",
            };
            metrics::counter!(m::AUTHN_TOTAL, "authenticator" => id, "result" => result)
                .increment(1);
            match decided {
                Ok(Decision::Allow {
                    superuser,
                    acl,
                    expires,
                    username,
                }) => {
                    return Verdict::Allowed {
                        superuser,
                        acl,
                        expires,
                        username,
                    };
                }
                Ok(Decision::Deny) => {
                    return Verdict::Refused(ReasonCode::BadUserNameOrPassword);
                }
                Ok(Decision::Ignore) => {}
                // The user exists but its stored password cannot be checked: refuse rather
                // than let a later authenticator decide for this user (as EMQX stops the
                // chain on an error of a known user).
                Err(Failure::Corrupt) => return Verdict::Refused(ReasonCode::NotAuthorized),
                Err(Failure::Overloaded) => overloaded = true,
                Err(Failure::Unavailable) => {}
            }
        }
        if overloaded {
            // Nobody allowed, and a check could not run: "try again later", not "not
            // authorized" (5.0 0x89 Server busy, 3.1.1 code 3).
            metrics::counter!(m::AUTHN_OVERLOAD_TOTAL).increment(1);
            return Verdict::Refused(ReasonCode::ServerBusy);
        }
        Verdict::Refused(ReasonCode::NotAuthorized)
    }
}

/// Counts the authentication outcome of one CONNECT, once
/// (`meshmq_authentication_results_total{result}`): `allowed` by an authenticator or, when
/// `anonymous`, without one being asked; otherwise refused.
pub(crate) fn count_result(allowed: bool, anonymous: bool) {
    let result = match (allowed, anonymous) {
        (true, true) => "success_anonymous",
        (true, false) => "success",
        (false, _) => "failure",
    };
    metrics::counter!(m::AUTHN_RESULTS_TOTAL, "result" => result).increment(1);
}
