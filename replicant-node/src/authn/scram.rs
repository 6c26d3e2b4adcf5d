//! The SCRAM authenticator (EMQX's `scram:built_in_database`): MQTT 5.0 enhanced
//! authentication with SCRAM-SHA-256 or SCRAM-SHA-512 against the SCRAM credentials of the
//! `auth_users` table (rows `scram_sha256` / `scram_sha512`, made when the user is created).
//!
//! Owns the two steps of one exchange, as the connection drives them ([`Scram::start`] on
//! client-first, [`Pending::finish`] on client-final), and the decision's metrics. Login work
//! is a table read and a few HMACs, never PBKDF2, so it runs on the connection's task. An
//! unknown user, a user whose row is not SCRAM credentials of this algorithm, or a wrong
//! proof all end the same way, at the proof, after the same work: the client cannot tell
//! which (RFC 5802 section 9). The only answer is "not authorized".

use std::time::Instant;

use bytes::Bytes;
use meshmq_shared::auth::scram::{self, ScramAlgorithm};
use meshmq_shared::auth::scram_exchange::{self as exchange, ScramError, ServerState};
use meshmq_shared::metrics as m;
use tracing::debug;

use crate::ctx::TableState;

/// The authenticator id in metrics and the API.
pub(crate) const ID: &str = "scram:built_in_database";

/// A configured SCRAM authenticator.
pub(crate) struct Scram {
    algorithm: ScramAlgorithm,
    iteration_count: u32,
    /// Node secret behind unknown users' fake salts and keys.
    secret: [u8; 32],
}

/// An exchange between server-first and client-final. Its `Debug` hides the keys.
#[derive(Debug)]
pub struct Pending {
    state: ServerState,
    username: String,
    known: bool,
    superuser: bool,
    started: Instant,
}

/// A successful exchange.
#[derive(Debug)]
pub struct Allowed {
    /// The SCRAM user name (the user id of the `auth_users` row).
    pub username: String,
    /// Authorization is skipped for this client.
    pub superuser: bool,
    /// server-final (`v=<server signature>`), for the client to check.
    pub server_final: Bytes,
}

impl Scram {
    pub(crate) fn new(algorithm: ScramAlgorithm, iteration_count: u32) -> Self {
        Scram {
            algorithm,
            iteration_count,
            secret: rand::random(),
        }
    }

    /// Whether this authenticator answers the Authentication Method `method`.
    pub(crate) fn answers(&self, method: &str) -> bool {
        self.algorithm.mechanism() == method
    }

    /// Answers client-first with server-first. A refusal here (malformed message, channel
    /// binding asked) is counted as a deny.
    pub(crate) fn start(
        &self,
        tables: &TableState,
        client_first: &[u8],
    ) -> Result<(Pending, Bytes), ScramError> {
        let started = Instant::now();
        let first = exchange::parse_client_first(client_first)
            .inspect_err(|&e| record(started, None, Err(e)))?;
        let row = tables.core.read(|t| {
            t.auth_user(&first.username)
                .map(|u| (u.is_superuser, u.password.clone()))
        });
        let creds = row.and_then(|(superuser, p)| {
            let c = p.as_ref().and_then(|p| scram::from_row(p).ok())?;
            (c.algorithm == self.algorithm).then_some((superuser, c))
        });
        let known = creds.is_some();
        let (superuser, creds) = creds.unwrap_or_else(|| {
            let fake = exchange::fake_credentials(
                self.algorithm,
                &self.secret,
                &first.username,
                self.iteration_count,
            );
            (false, fake)
        });
        let username = first.username.clone();
        let nonce = exchange::server_nonce(&rand::random::<[u8; 18]>());
        let (state, server_first) = exchange::server_first(first, creds, known, &nonce);
        let pending = Pending {
            state,
            username,
            known,
            superuser,
            started,
        };
        Ok((pending, Bytes::from(server_first)))
    }
}

impl Pending {
    /// The SCRAM user name of client-first.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Checks client-final. `expected_username`: the identity the connection already has
    /// (its CONNECT User Name, or the user of the first exchange on a re-authentication);
    /// another SCRAM user is refused, so an exchange cannot switch identities.
    pub(crate) fn finish(
        self,
        client_final: &[u8],
        expected_username: Option<&str>,
    ) -> Result<Allowed, ScramError> {
        let checked = self.state.client_final(client_final);
        let outcome = match checked {
            Ok(_) if expected_username.is_some_and(|u| u != self.username) => {
                Err(Failure::UsernameMismatch)
            }
            Ok(server_final) => Ok(server_final),
            Err(ScramError::InvalidProof) if !self.known => Err(Failure::UnknownUser),
            Err(e) => Err(Failure::Scram(e)),
        };
        record(
            self.started,
            Some(&self.username),
            outcome.as_ref().map(|_| ()).map_err(|f| *f),
        );
        match outcome {
            Ok(server_final) => Ok(Allowed {
                username: self.username,
                superuser: self.superuser,
                server_final: Bytes::from(server_final),
            }),
            // The client learns nothing more than "invalid proof" either way.
            Err(_) => Err(ScramError::InvalidProof),
        }
    }
}

/// Why an exchange failed: logged at `debug`, and counted (less finely, see [`record`]).
#[derive(Debug, Clone, Copy)]
enum Failure {
    Scram(ScramError),
    UnknownUser,
    UsernameMismatch,
}

impl From<ScramError> for Failure {
    fn from(e: ScramError) -> Self {
        Failure::Scram(e)
    }
}

impl Failure {
    /// The reason as logged (`debug`): an unknown user is told from a wrong proof.
    fn reason(self) -> &'static str {
        match self {
            Failure::Scram(e) => e.label(),
            Failure::UnknownUser => "unknown_user",
            Failure::UsernameMismatch => "username_mismatch",
        }
    }

    /// The reason as counted. The metrics endpoint needs no key, so an unknown user counts
    /// as `invalid_proof` like a wrong proof: the metric must not tell whether a user
    /// exists (an attacker could try a name and watch which counter moved).
    fn label(self) -> &'static str {
        match self {
            Failure::UnknownUser => ScramError::InvalidProof.label(),
            f => f.reason(),
        }
    }
}

/// Counts one decision (`allow` or `deny`, and the failure's reason) and its latency.
/// `username`: the SCRAM user name, once client-first named one (logged at `debug` only).
fn record<E: Into<Failure>>(started: Instant, username: Option<&str>, outcome: Result<(), E>) {
    metrics::histogram!(m::AUTHN_SECONDS, "authenticator" => ID)
        .record(started.elapsed().as_secs_f64());
    let result = match outcome {
        Ok(()) => "allow",
        Err(e) => {
            let failure = e.into();
            debug!(reason = failure.reason(), username, "SCRAM exchange failed");
            count_failure(failure.label());
            "deny"
        }
    };
    metrics::counter!(m::AUTHN_TOTAL, "authenticator" => ID, "result" => result).increment(1);
}

/// Counts a failed exchange by reason (also for failures outside the SCRAM messages: an
/// MQTT protocol error or a timeout in the middle of the exchange).
pub(crate) fn count_failure(reason: &'static str) {
    metrics::counter!(m::AUTHN_SCRAM_FAILURES_TOTAL, "reason" => reason).increment(1);
}
