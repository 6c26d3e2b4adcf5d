//! API keys of the HTTP API (EMQX's `/api/v5/api_key`): who may call the operator routes.
//!
//! A request carries `Authorization: Basic base64(api_key:api_secret)` (EMQX's scheme) or
//! `Authorization: Bearer <api_key>:<api_secret>`; the static `listeners.api_key` is still
//! accepted as `Authorization: Bearer <listeners.api_key>`. Keys are rows of the cluster
//! `settings` table ([`record`]), created through the API ([`api`]), from
//! `api_key.bootstrap_file` or, for the standalone binary, generated at first start
//! ([`bootstrap`]).
//!
//! Owns the check of a request's credentials ([`ApiKeys::check`]) and the index from key id
//! to record that makes it cheap (rebuilt from the replica when the namespace changed). It
//! never logs a secret or an `Authorization` header, and its answer never tells a wrong
//! secret from an unknown, disabled or expired key: an unknown id is checked against a
//! dummy record, so that it costs the same hash and compare.

pub mod api;
pub mod bootstrap;
pub mod mode;
pub mod record;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use meshmq_shared::metrics as m;
use subtle::ConstantTimeEq;

use crate::ctx::Ctx;
use crate::http::api::{ApiError, error};
use record::{KeyRecord, NS};

/// Longest `Authorization` value looked at.
const MAX_HEADER_LEN: usize = 1024;
/// The one answer to credentials that do not let the caller in.
pub const INVALID: &str = "invalid or expired API key";

/// The index of the API keys in the replica, by key id.
#[derive(Default)]
pub struct ApiKeys {
    index: Mutex<Index>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys").finish_non_exhaustive()
    }
}

/// The namespace as last read: (name, version) of every row, and the records by key id.
#[derive(Default)]
struct Index {
    /// The rows the index was built from: name, version and value. The value is compared
    /// too: a version restarts at 1 when a name is deleted and written again, so (name,
    /// version) alone would keep a revoked key's record.
    rows: Vec<(String, u64, Vec<u8>)>,
    by_id: HashMap<String, Arc<KeyRecord>>,
}

/// Why credentials were refused (a metric label; never shown to the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header, or a scheme other than Basic and Bearer.
    Missing,
    /// A header that does not decode to `id:secret`.
    Malformed,
    /// Unknown id or wrong secret.
    Invalid,
    /// The right secret of a disabled key.
    Disabled,
    /// The right secret of an expired key.
    Expired,
}

impl Refusal {
    /// The metric label: `missing` and `malformed` say only what the request held; every
    /// refusal that depends on the cluster's keys is `invalid`, so that the open `/metrics`
    /// never tells an unknown id from a wrong secret or a disabled or expired key (which
    /// would confirm a guessed id or secret). [`Refusal::detail`] goes to the log instead.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Invalid | Refusal::Disabled | Refusal::Expired => "invalid",
        }
    }

    /// What exactly was refused, for the log.
    pub fn detail(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Invalid => "unknown key or wrong secret",
            Refusal::Disabled => "disabled key",
            Refusal::Expired => "expired key",
        }
    }
}

/// Checked against when the id is unknown: same work, never a match.
static DUMMY: LazyLock<KeyRecord> = LazyLock::new(|| {
    let (id, secret) = record::generate();
    KeyRecord::new(&id, &secret, String::new(), false, 0)
});

impl ApiKeys {
    /// Whether an operator route needs a key, decided for the cluster ([`mode`]): this node
    /// or another has a key source configured, or the cluster holds an API key.
    pub fn required(ctx: &Ctx) -> bool {
        mode::configured_here(ctx)
            || mode::configured_anywhere(ctx)
            || ctx.tables.core.read(|t| t.settings_in(NS).next().is_some())
    }

    /// The record of key id `id`, if the cluster holds one.
    pub fn by_id(&self, ctx: &Ctx, id: &str) -> Option<Arc<KeyRecord>> {
        self.with_index(ctx, |i| i.by_id.get(id).cloned())
    }

    /// Checks the request's credentials at `now` (unix seconds).
    pub fn check(&self, ctx: &Ctx, headers: &HeaderMap, now: u64) -> Result<(), Refusal> {
        let value = headers
            .get(header::AUTHORIZATION)
            .filter(|v| v.len() <= MAX_HEADER_LEN)
            .and_then(|v| v.to_str().ok())
            .ok_or(Refusal::Missing)?;
        let (scheme, rest) = value.split_once(' ').ok_or(Refusal::Missing)?;
        let rest = rest.trim();
        let pair = if scheme.eq_ignore_ascii_case("basic") {
            let bytes = STANDARD.decode(rest).map_err(|_| Refusal::Malformed)?;
            String::from_utf8(bytes).map_err(|_| Refusal::Malformed)?
        } else if scheme.eq_ignore_ascii_case("bearer") {
            if let Some(key) = ctx.config.listeners.api_key.as_deref()
                && bool::from(digest(rest).ct_eq(&digest(key)))
            {
                return Ok(());
            }
            rest.to_owned()
        } else {
            return Err(Refusal::Missing);
        };
        let (id, secret) = pair.split_once(':').ok_or(Refusal::Malformed)?;
        self.check_pair(ctx, id, secret, now)
    }

    /// Checks `id` and `secret`: the hash is computed and compared whether the id is known
    /// or not; disabled and expired are only told apart once the secret matched.
    fn check_pair(&self, ctx: &Ctx, id: &str, secret: &str, now: u64) -> Result<(), Refusal> {
        let found = self.by_id(ctx, id);
        let rec: &KeyRecord = found.as_deref().unwrap_or(&DUMMY);
        let matched = rec.verify(secret) && found.is_some();
        if !matched {
            return Err(Refusal::Invalid);
        }
        let refused = if !rec.enable {
            Refusal::Disabled
        } else if rec.expired(now) {
            Refusal::Expired
        } else {
            return Ok(());
        };
        // The right secret of a key that may not be used: the operator wants to know which
        // (the id is the key's public half; an id that matched nothing is never logged).
        tracing::info!(api_key = %rec.key_id, reason = refused.detail(), "API key refused");
        Err(refused)
    }

    /// Runs `f` on the index, rebuilt first if the namespace changed in the replica.
    fn with_index<T>(&self, ctx: &Ctx, f: impl FnOnce(&Index) -> T) -> T {
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = ctx.tables.core.read(|t| {
            let mut rows = t.settings_in(NS);
            let same = index.rows.iter().all(|(k, v, b)| {
                rows.next()
                    .is_some_and(|r| &r.key == k && r.version == *v && r.value[..] == b[..])
            });
            if same && rows.next().is_none() {
                return None;
            }
            Some(
                t.settings_in(NS)
                    .map(|r| {
                        let rec = KeyRecord::decode(&r.value);
                        (r.key.clone(), r.version, r.value.to_vec(), rec)
                    })
                    .collect::<Vec<_>>(),
            )
        });
        if let Some(rows) = fresh {
            index.rows = rows
                .iter()
                .map(|(k, v, b, _)| (k.clone(), *v, b.clone()))
                .collect();
            index.by_id.clear();
            for (_, _, _, rec) in rows {
                // A value that is not a record is skipped; the first row of an id wins.
                if let Some(rec) = rec {
                    index
                        .by_id
                        .entry(rec.key_id.clone())
                        .or_insert_with(|| Arc::new(rec));
                }
            }
        }
        f(&index)
    }
}

/// The operator check with keys required: 401 `UNAUTHORIZED` unless the request's
/// credentials are good, counted in `meshmq_api_key_refused_total{reason}`.
pub fn authorize(ctx: &Ctx, headers: &HeaderMap) -> Result<(), ApiError> {
    let now = crate::banned::now_s();
    ctx.api_keys.check(ctx, headers, now).map_err(|r| {
        metrics::counter!(m::API_KEY_REFUSED_TOTAL, "reason" => r.label()).increment(1);
        tracing::debug!(
            reason = r.detail(),
            "API request refused for its credentials"
        );
        let message = match r {
            Refusal::Missing => {
                "this route needs an API key: Authorization: Basic base64(api_key:api_secret)"
            }
            _ => INVALID,
        };
        error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    })
}

fn digest(s: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::Refusal;

    #[test]
    fn the_metric_label_never_tells_what_the_cluster_knows_of_a_key() {
        let key_dependent = [Refusal::Invalid, Refusal::Disabled, Refusal::Expired];
        for r in key_dependent {
            assert_eq!(r.label(), "invalid", "{r:?}");
        }
        assert_eq!(Refusal::Missing.label(), "missing");
        assert_eq!(Refusal::Malformed.label(), "malformed");
        let details: std::collections::HashSet<_> =
            key_dependent.iter().map(|r| r.detail()).collect();
        assert_eq!(details.len(), 3, "the log keeps the detail");
    }
}
