//! `import_users` and `export_users` of the built-in database authenticator.
//!
//! Import (`POST /api/v5/authentication/{id}/import_users?type=hash|plain|mosquitto`): the
//! file comes as EMQX sends it, a `multipart/form-data` field named `filename` whose file
//! name's extension (`.json`, `.csv`) gives the format, or as the raw body with
//! `Content-Type: application/json` or `text/csv`. `type=mosquitto` reads a mosquitto
//! `password_file` whatever the container says. The answer is EMQX's `{total, success,
//! override, skipped, failed}` plus `errors: [{line, message}]` (at most
//! [`import::MAX_REPORTED_ERRORS`]). As in EMQX, an existing user is replaced (`override`),
//! an identical one left alone (`skipped`). One import runs at a time on a node (it holds
//! its file and rows in memory): another one meanwhile is answered 429 `TOO_MANY_REQUESTS`
//! before its body is read.
//!
//! Rows are written through the cores in batches of at most `MAX_OPS_PER_ENTRY` ops and
//! [`BATCH_BYTES`] encoded bytes (well under one AppendEntries request's 256 KiB budget),
//! with at most [`IN_FLIGHT`] batches committing at once. When the cores cannot commit, no
//! further batch starts and the answer is 503 saying how many users were written; importing
//! the same file again is safe (users already written are skipped).
//!
//! Export (`GET .../export_users`, our own route: EMQX has none) streams every user as the
//! JSON list that `type=hash` imports, each row with its `password_hash_algorithm`, so export
//! → import round-trips. It is read page by page from this node's replica: users written
//! during the export may or may not be in it.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use core_node::api::MAX_OPS_PER_ENTRY;
use meshmq_proto::tables::{AuthUser, AuthUserSet, Op, op, op_result::Outcome};
use meshmq_shared::auth::password::Algorithm;
use meshmq_shared::auth::stored;
use meshmq_shared::metrics as m;
use prost::Message as _;
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinSet;

use super::api::{built_in, check_key, fail};
use super::import::{self, Format, Parsed, PasswordType, Row, Secret};
use super::new_password::NewPassword;
use crate::cluster;
use crate::ctx::Ctx;
use crate::http::api::{Denied, ErrorBody, bad_request, error, unavailable};

/// Most encoded bytes of one import batch (one Raft entry): a quarter of the 256 KiB an
/// AppendEntries request carries, so a batch never travels alone in an oversized request.
pub const BATCH_BYTES: usize = 64 * 1024;
/// Most import batches committing at once (the rest of the file waits, parsed, in memory).
pub const IN_FLIGHT: usize = 4;
/// Rows converted per hashing-pool task when the authenticator's hash is cheap (salted
/// SHA, about a microsecond each).
const CHEAP_CHUNK: usize = 256;
/// The same for slow hashes (bcrypt, PBKDF2, Argon2): one row per task, so that CONNECTs
/// waiting for the pool (it serves waiters in order) take turns with the import instead of
/// waiting behind hundreds of its hashes.
const SLOW_CHUNK: usize = 1;
/// Users per replica read while exporting.
const EXPORT_PAGE: usize = 1000;

/// Query of `import_users`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ImportQuery {
    /// `hash` (the default), `plain` or `mosquitto`.
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// A user ready to write: where it was in the file, the row, and what it does to the table.
struct Ready {
    at: usize,
    user: AuthUser,
    class: Class,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Success,
    Override,
    Skipped,
}

/// Counts of an import.
#[derive(Default)]
struct Tally {
    success: usize,
    overridden: usize,
    skipped: usize,
}

/// Imports users from a JSON or CSV file (multipart field `filename`, or the raw body).
#[utoipa::path(post, path = "/api/v5/authentication/{id}/import_users", tag = "authentication",
    params(("id" = String, Path, description = "Authenticator id, `password_based:built_in_database`"), ImportQuery),
    request_body(content = Object, description = "The file: multipart/form-data, application/json \
or text/csv", content_type = "multipart/form-data"),
    responses((status = 200, description = "`{total, success, override, skipped, failed, errors}`", body = Object),
              Denied, (status = 400, description = "Bad query or file", body = ErrorBody),
              (status = 404, description = "No such authenticator", body = ErrorBody),
              (status = 413, description = "The file is too large", body = ErrorBody),
              (status = 429, description = "An import is already running on this node", body = ErrorBody),
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
pub(super) async fn import_users(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    query: Result<Query<ImportQuery>, QueryRejection>,
    request: Request,
) -> Response {
    if let Err(e) = check_key(&ctx, request.headers()) {
        return fail(e);
    }
    let recipe = match built_in(&ctx, &id) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let Ok(Query(q)) = query else {
        return fail(bad_request("query: type must be hash, plain or mosquitto"));
    };
    let (kind, mosquitto) = match q.kind.as_deref() {
        None | Some("hash") => (PasswordType::Hash, false),
        Some("plain") => (PasswordType::Plain, false),
        Some("mosquitto") => (PasswordType::Hash, true),
        Some(_) => return fail(bad_request("type must be hash, plain or mosquitto")),
    };
    // Before the body is read: a second import meanwhile is refused, not buffered.
    let Some(_turn) = ctx.authn.import_turn() else {
        return fail(error(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            "an import is already running on this node: try again when it has finished",
        ));
    };
    let (format, data) = match read_file(request).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let format = match (mosquitto, format) {
        (true, _) => Format::Mosquitto,
        (false, Some(f)) => f,
        (false, None) => {
            return fail(bad_request(
                "unknown file format: send a multipart field `filename` whose file name ends \
                 in .json or .csv, or a body with Content-Type application/json or text/csv \
                 (type=mosquitto for a mosquitto password file)",
            ));
        }
    };
    let started = std::time::Instant::now();
    // Imported hashes are named by the authenticator's algorithm (EMQX); a SCRAM
    // authenticator has none, so its users are imported in clear (or from a mosquitto file,
    // whose lines name their own).
    let default_hash = Algorithm::Sha256 {
        salt_position: meshmq_shared::auth::password::SaltPosition::Suffix,
    };
    let algorithm = match (recipe.hash_algorithm(), kind, format) {
        (Some(a), _, _) => a.clone(),
        (None, PasswordType::Hash, f) if f != Format::Mosquitto => {
            return fail(bad_request(
                "a scram authenticator imports users with type=plain (or type=mosquitto)",
            ));
        }
        (None, _, _) => default_hash,
    };
    let mut parsed = match import::parse(format, kind, &data, &algorithm) {
        Ok(p) => p,
        Err(e) => return fail(bad_request(e)),
    };
    drop(data);
    let total = parsed.total();
    let rows = std::mem::take(&mut parsed.rows);
    let ready = match prepare(&ctx, &recipe, rows, &mut parsed).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let (tally, stopped) = commit(&ctx, ready, &mut parsed).await;
    tracing::info!(
        authenticator = %id,
        total,
        success = tally.success,
        overridden = tally.overridden,
        skipped = tally.skipped,
        failed = parsed.failed,
        stopped = stopped.is_some(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "import_users"
    );
    for (result, n) in [
        ("success", tally.success),
        ("override", tally.overridden),
        ("skipped", tally.skipped),
        ("failed", parsed.failed),
    ] {
        metrics::counter!(m::AUTHN_IMPORT_ROWS_TOTAL, "result" => result).increment(n as u64);
    }
    if let Some(e) = stopped {
        return fail(unavailable(format!(
            "the cores could not commit ({e}): {} of {total} users were written before the \
             import stopped (and a batch that timed out may have been too); importing the \
             same file again is safe",
            tally.success + tally.overridden
        )));
    }
    Json(json!({
        "total": total,
        "success": tally.success,
        "override": tally.overridden,
        "skipped": tally.skipped,
        "failed": parsed.failed,
        "errors": parsed.errors,
    }))
    .into_response()
}

/// The file's bytes and, when the request says, its format.
async fn read_file(request: Request) -> Result<(Option<Format>, Bytes), Response> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !content_type.starts_with("multipart/form-data") {
        let format = if content_type.starts_with("application/json") {
            Some(Format::Json)
        } else if content_type.starts_with("text/csv") {
            Some(Format::Csv)
        } else {
            None
        };
        return match axum::body::to_bytes(request.into_body(), import::MAX_IMPORT_BYTES).await {
            Ok(b) => Ok((format, b)),
            Err(_) => Err(too_large()),
        };
    }
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| fail(bad_request(e.body_text())))?;
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.name() == Some("filename") => {
                let name = field.file_name().unwrap_or("").to_ascii_lowercase();
                let format = if name.ends_with(".json") {
                    Some(Format::Json)
                } else if name.ends_with(".csv") {
                    Some(Format::Csv)
                } else {
                    None
                };
                return match field.bytes().await {
                    Ok(b) => Ok((format, b)),
                    Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
                    Err(e) => Err(fail(bad_request(e.body_text()))),
                };
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(fail(bad_request(
                    "the multipart body has no field named `filename`",
                )));
            }
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => return Err(fail(bad_request(e.body_text()))),
        }
    }
}

fn too_large() -> Response {
    fail(error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!(
            "the file is larger than {} bytes, or could not be read",
            import::MAX_IMPORT_BYTES
        ),
    ))
}

/// Table rows of `rows` (plain passwords hashed on the hashing pool, a chunk per task), each
/// classified against this node's replica. Rows that cannot be hashed are refused.
async fn prepare(
    ctx: &Ctx,
    recipe: &NewPassword,
    rows: Vec<Row>,
    parsed: &mut Parsed,
) -> Result<Vec<Ready>, Response> {
    let mut ready = Vec::with_capacity(rows.len());
    let any_plain = rows.iter().any(|r| matches!(r.secret, Secret::Plain(_)));
    let per_task = if any_plain && !recipe.is_cheap() {
        SLOW_CHUNK
    } else {
        CHEAP_CHUNK
    };
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Row> = rows.by_ref().take(per_task).collect();
        let converted = if chunk.iter().any(|r| matches!(r.secret, Secret::Plain(_))) {
            let recipe = recipe.clone();
            match ctx.authn.pool().run(move || convert(&recipe, chunk)).await {
                Some(c) => c,
                None => return Err(fail(unavailable("the password-hashing queue is full"))),
            }
        } else {
            convert(recipe, chunk)
        };
        let users: Vec<(usize, AuthUser)> = converted
            .into_iter()
            .filter_map(|(at, user)| match user {
                Ok(u) => Some((at, u)),
                Err(e) => {
                    parsed.refuse(at, e);
                    None
                }
            })
            .collect();
        let classes: Vec<Class> = ctx.tables.core.read(|t| {
            users
                .iter()
                .map(|(_, u)| match t.auth_user(&u.user_id) {
                    None => Class::Success,
                    Some(old) if old == u => Class::Skipped,
                    Some(_) => Class::Override,
                })
                .collect()
        });
        ready.extend(
            users
                .into_iter()
                .zip(classes)
                .map(|((at, user), class)| Ready { at, user, class }),
        );
    }
    Ok(ready)
}

/// Rows → table rows (hashing plain passwords: run on the hashing pool when any is plain).
fn convert(recipe: &NewPassword, rows: Vec<Row>) -> Vec<(usize, Result<AuthUser, String>)> {
    rows.into_iter()
        .map(|r| {
            let row = match r.secret {
                Secret::Stored(s) => Ok(stored::to_row(&s)),
                Secret::Plain(p) => recipe.make(&p).map_err(|e| format!("password: {e}")),
            };
            let user = row.map(|row| AuthUser {
                user_id: r.user_id,
                is_superuser: r.is_superuser,
                password: Some(row),
            });
            (r.at, user)
        })
        .collect()
}

/// One batch: its ops and, per op, the row's place in the file and class.
#[derive(Default)]
struct Batch {
    ops: Vec<Op>,
    rows: Vec<(usize, Class)>,
    bytes: usize,
}

/// Writes `ready` in batches, at most [`IN_FLIGHT`] at once. Returns the counts and, when
/// the cores could not commit, why (no batch was started after that).
async fn commit(ctx: &Arc<Ctx>, ready: Vec<Ready>, parsed: &mut Parsed) -> (Tally, Option<String>) {
    let mut tally = Tally::default();
    let mut stopped: Option<String> = None;
    let mut running: JoinSet<(Batch, Result<Vec<Outcome>, String>)> = JoinSet::new();
    let mut batch = Batch::default();
    let mut ready = ready.into_iter().peekable();
    loop {
        let next = if stopped.is_none() {
            ready.next()
        } else {
            None
        };
        let full = match &next {
            Some(r) => {
                let len = op_len(&r.user);
                !batch.ops.is_empty()
                    && (batch.ops.len() >= MAX_OPS_PER_ENTRY || batch.bytes + len > BATCH_BYTES)
            }
            None => !batch.ops.is_empty(),
        };
        if full && stopped.is_none() {
            while running.len() >= IN_FLIGHT {
                if let Some(done) = running.join_next().await {
                    settle(done, &mut tally, parsed, &mut stopped);
                }
            }
            if stopped.is_none() {
                let ctx = ctx.clone();
                let b = std::mem::take(&mut batch);
                running.spawn(async move {
                    let ops = b.ops.clone();
                    let result = cluster::try_transact(&ctx.tables, ops)
                        .await
                        .map_err(|e| e.to_string());
                    (b, result)
                });
            }
        }
        let Some(r) = next else { break };
        if stopped.is_some() {
            break;
        }
        if r.class == Class::Skipped {
            tally.skipped += 1;
            continue;
        }
        batch.bytes += op_len(&r.user);
        batch.rows.push((r.at, r.class));
        batch.ops.push(Op {
            kind: Some(op::Kind::AuthUserSet(AuthUserSet { user: Some(r.user) })),
        });
    }
    while let Some(done) = running.join_next().await {
        settle(done, &mut tally, parsed, &mut stopped);
    }
    (tally, stopped)
}

/// Encoded size of the op that writes `user`.
fn op_len(user: &AuthUser) -> usize {
    // The op and batch framing add a few bytes per row.
    user.encoded_len() + 8
}

/// Counts a finished batch.
fn settle(
    done: Result<(Batch, Result<Vec<Outcome>, String>), tokio::task::JoinError>,
    tally: &mut Tally,
    parsed: &mut Parsed,
    stopped: &mut Option<String>,
) {
    let (batch, result) = match done {
        Ok(d) => d,
        Err(e) => {
            stopped.get_or_insert_with(|| format!("a commit task failed: {e}"));
            return;
        }
    };
    match result {
        Ok(outcomes) => {
            for (i, (at, class)) in batch.rows.into_iter().enumerate() {
                match outcomes.get(i) {
                    Some(Outcome::Rejected(r)) => {
                        parsed.refuse(at, format!("the tables refused the user: {}", r.reason));
                    }
                    _ if class == Class::Override => tally.overridden += 1,
                    _ => tally.success += 1,
                }
            }
        }
        Err(e) => {
            stopped.get_or_insert(e);
        }
    }
}

/// Every user as the JSON list `type=hash` imports (streamed).
#[utoipa::path(get, path = "/api/v5/authentication/{id}/export_users", tag = "authentication",
    params(("id" = String, Path, description = "Authenticator id, `password_based:built_in_database`")),
    responses((status = 200, description = "`[{user_id, password_hash, salt, ...}]`", body = [Object]),
              Denied, (status = 400, description = "An authenticator that keeps no users", body = ErrorBody),
              (status = 404, description = "No such authenticator", body = ErrorBody)))]
pub(super) async fn export_users(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Err(e) = check_key(&ctx, &headers) {
        return fail(e);
    }
    if let Err(e) = built_in(&ctx, &id) {
        return fail(e);
    }
    // State: the broker, the last user id sent, whether any row was sent; None when done.
    let start = Some((ctx, None::<String>, false));
    let stream = futures_util::stream::unfold(start, |state| async move {
        let (ctx, after, mut wrote) = state?;
        let page: Vec<AuthUser> = ctx.tables.core.read(|t| {
            t.auth_users_page(after.as_deref(), EXPORT_PAGE)
                .into_iter()
                .cloned()
                .collect()
        });
        let mut out = String::new();
        if after.is_none() {
            out.push('[');
        }
        for u in &page {
            let Some(row) = export_row(u) else { continue };
            if wrote {
                out.push(',');
            }
            out.push('\n');
            out.push_str(&row);
            wrote = true;
        }
        let last = page.last().map(|u| u.user_id.clone());
        let next = match last {
            Some(l) if page.len() == EXPORT_PAGE => Some((ctx, Some(l), wrote)),
            _ => {
                out.push_str("\n]\n");
                None
            }
        };
        Some((Ok::<_, std::convert::Infallible>(out), next))
    });
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"users.json\"",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// One user as `type=hash` imports it (with its algorithm), or `None` for a row whose
/// password the table could not read (the table refuses such rows; never expected).
fn export_row(u: &AuthUser) -> Option<String> {
    let s = stored::from_row(u.password.as_ref()?).ok()?;
    let row = json!({
        "user_id": u.user_id,
        "password_hash": s.hash,
        "salt": s.salt,
        "is_superuser": u.is_superuser,
        "password_hash_algorithm": s.algorithm,
    });
    serde_json::to_string(&row).ok()
}
