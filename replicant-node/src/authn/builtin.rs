//! The built-in database authenticator (EMQX's `password_based:built_in_database`): the
//! user named by the username or the client id (`user_id_type`) in the `auth_users` table,
//! its password checked against the stored hash (or against its SCRAM credentials: a
//! SCRAM user may also log in with its password).
//!
//! Unknown user, or no user name / password presented: ignore (the next authenticator
//! decides). A row that cannot be checked: an error (counted), then ignore.

use meshmq_shared::auth::{password, scram, stored};
use meshmq_shared::config::UserIdType;
use tracing::warn;

use super::pool::HashPool;
use super::{Credentials, Decision, Failure, UserName};
use crate::ctx::TableState;

pub(super) struct BuiltIn {
    user_id_type: UserIdType,
}

impl BuiltIn {
    pub(super) fn new(user_id_type: UserIdType) -> Self {
        BuiltIn { user_id_type }
    }

    pub(super) async fn check(
        &self,
        tables: &TableState,
        pool: &HashPool,
        creds: Credentials<'_>,
    ) -> Result<Decision, Failure> {
        let user_id = match self.user_id_type {
            UserIdType::Username => creds.username,
            UserIdType::Clientid => Some(creds.client_id),
        };
        let (Some(user_id), Some(given)) = (user_id, creds.password) else {
            return Ok(Decision::Ignore);
        };
        let Some((superuser, row)) = tables.core.read(|t| {
            t.auth_user(user_id)
                .map(|u| (u.is_superuser, u.password.clone()))
        }) else {
            return Ok(Decision::Ignore);
        };
        if let Some(creds) = row
            .as_ref()
            .and_then(|p| scram::is_row(p).then(|| scram::from_row(p)))
        {
            // A SCRAM user logging in with its password (3.1.1, or 5.0 without a method):
            // the PBKDF2 of its credentials, on the pool.
            let Ok(creds) = creds else {
                warn!(
                    user_id,
                    "built-in database: stored SCRAM credentials unusable"
                );
                return Err(Failure::Corrupt);
            };
            let given = given.to_vec();
            let matched = pool
                .run(move || scram::verify_password(&creds, &given))
                .await
                .ok_or(Failure::Overloaded)?;
            return Ok(if matched {
                Decision::Allow {
                    superuser,
                    acl: None,
                    expires: None,
                    username: UserName::AsSent,
                }
            } else {
                Decision::Deny
            });
        }
        let Some(stored) = row.as_ref().and_then(|p| stored::from_row(p).ok()) else {
            warn!(user_id, "built-in database: stored password unusable");
            return Err(Failure::Corrupt);
        };
        let matched = if is_cheap(&stored.algorithm) {
            password::verify(&stored, given)
        } else {
            let given = given.to_vec();
            pool.run(move || password::verify(&stored, &given))
                .await
                .ok_or(Failure::Overloaded)?
        };
        match matched {
            Ok(true) => Ok(Decision::Allow {
                superuser,
                acl: None,
                expires: None,
                username: UserName::AsSent,
            }),
            Ok(false) => Ok(Decision::Deny),
            Err(e) => {
                warn!(user_id, error = %e, "built-in database: stored password unusable");
                Err(Failure::Corrupt)
            }
        }
    }
}

/// Hashes that cost about a microsecond: checked on the connection's task.
pub(super) fn is_cheap(a: &password::Algorithm) -> bool {
    use password::Algorithm::*;
    matches!(a, Plain | Sha256 { .. } | Sha512 { .. } | MosquittoSha512)
}
