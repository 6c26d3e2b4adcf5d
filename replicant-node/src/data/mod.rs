//! Data export and import (`GET /api/v5/data/export`, `POST /api/v5/data/import`): a backup
//! of what operators configure in the cluster tables (built-in users, built-in
//! authorization rules, bans, retained messages, and the cluster-wide `settings`
//! namespaces: run-time config overrides and API keys), as one JSON document.
//!
//! - [`export`] streams the document from one consistent capture of this node's replica
//!   (a `SnapshotSource`, taken in O(number of tables)), read page by page;
//! - [`plan`] reads and checks an imported document whole before anything is written;
//! - [`import`] writes the plan through the cores in bounded batches (upsert: rows the
//!   cluster holds that the document lacks stay), so every node applies it;
//! - [`api`] holds the routes.
//!
//! Left out on purpose: traces (the `trace` namespace: a trace is tied to files on the node
//! that recorded it), the key-mode rows (`api_key.mode`: they describe this cluster's
//! nodes), sessions and routes (live state), the broker's own `$SYS` retained
//! messages. This module never logs a row (users carry hashes, API keys hashed secrets,
//! retained messages payloads): logs carry counts only.

pub mod api;
pub mod export;
pub mod import;
pub mod plan;
pub mod rows;

/// The version of the document's format, written by the export and required by the import.
pub const FORMAT_VERSION: u64 = 1;
/// Largest import body (the document is parsed whole: about twice this in memory).
pub const MAX_IMPORT_BYTES: usize = 512 * 1024 * 1024;
/// The tables of a document, in the order they are exported and written; the labels of
/// `meshmq_data_import_rows_total{table}` and the keys of the import's counts.
pub const TABLES: [&str; 5] = [
    "auth_users",
    "authz_rules",
    "banned",
    "retained",
    "settings",
];
/// `settings` namespaces that are neither exported nor imported: their rows name files on
/// the node that wrote them (traces), or describe this cluster's own nodes (which of them
/// has an API key source, whether the default key was generated: `api_keys::mode`), which
/// another cluster must not inherit.
pub const LOCAL_NAMESPACES: &[&str] = &[crate::trace::defs::NS, crate::api_keys::mode::NS_MODE];

/// Why an import was refused or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The body is not JSON (the parser's position, never the text).
    #[error("the document is not valid JSON: {0}")]
    Json(String),
    /// A field has the wrong type, is missing or unknown.
    #[error("the document is not a meshmq export: {0}")]
    Field(String),
    /// `version` is not [`FORMAT_VERSION`].
    #[error("unknown document version: this node reads version {FORMAT_VERSION}")]
    Version,
    /// A row is refused; nothing was written.
    #[error("{at}: {message}; nothing was written")]
    Row {
        /// The table and index (`banned[3]`).
        at: String,
        /// What is wrong with it.
        message: String,
    },
    /// The rows would take a table past this node's limits; nothing was written.
    #[error("{0}; nothing was written")]
    Quota(String),
    /// The body is larger than [`MAX_IMPORT_BYTES`].
    #[error("the document is larger than {MAX_IMPORT_BYTES} bytes")]
    TooLarge,
    /// Another import is running on this node.
    #[error("an import is already running on this node: try again when it has finished")]
    Busy,
    /// The cores stopped committing part-way: some rows were written.
    #[error(
        "the cores could not commit ({reason}): {written} rows were written before the import \
         stopped (a batch that timed out may have been too); importing the same document \
         again is safe"
    )]
    Unavailable {
        /// Why.
        reason: String,
        /// Rows written before.
        written: usize,
    },
}

impl DataError {
    /// The `result` label of `meshmq_data_transfers_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Unavailable { .. } => "unavailable",
            _ => "bad_request",
        }
    }
}

impl From<DataError> for crate::http::api::ApiError {
    fn from(e: DataError) -> Self {
        use crate::http::api::{bad_request, error, unavailable};
        use axum::http::StatusCode;
        match &e {
            DataError::TooLarge => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                e.to_string(),
            ),
            DataError::Busy => error(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_REQUESTS",
                e.to_string(),
            ),
            DataError::Unavailable { .. } => unavailable(e.to_string()),
            _ => bad_request(e.to_string()),
        }
    }
}
