//! The export document, streamed: one capture of this node's replica (a
//! [`SnapshotSource`], O(number of tables) under the replica's lock), then its rows read a
//! page at a time and written as JSON chunks of about [`CHUNK_BYTES`], so a large retained
//! store is never held twice in memory. Every row comes from the same applied index (the
//! document's `applied_index`): the export is consistent, whatever is written meanwhile.
//!
//! Left out: expired retained messages and the broker's own `$SYS` ones, the
//! [`LOCAL_NAMESPACES`] of `settings`. A settings value that is JSON text is written as
//! JSON under `settings` (re-serialised: the same value, keys possibly reordered), any
//! other under `settings_base64`. Owns the document's layout; never logs a row.

use std::collections::BTreeMap;
use std::convert::Infallible;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::Stream;
use meshmq_proto::tables::BannedRow;
use meshmq_shared::tables::{SnapshotSource, Table};
use serde::Serialize;
use serde_json::Value;

use super::rows::{AuthzJson, BannedJson, RetainedJson, UserJson};
use super::{FORMAT_VERSION, LOCAL_NAMESPACES};
use crate::ctx::Ctx;

/// Rows read from the capture at once.
pub const PAGE: usize = 500;
/// A chunk is sent once it holds about this many bytes.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Where the export is.
enum Stage {
    Head,
    Users(Option<String>),
    Authz(Option<(i32, String)>),
    Banned(Vec<BannedRow>, usize),
    Retained(Option<String>),
    Settings,
    Done,
}

/// The export's state between chunks.
struct Export {
    source: SnapshotSource,
    node: String,
    now_ms: u64,
    stage: Stage,
    /// No row written yet in the current list.
    first: bool,
}

/// The document, as a stream of JSON text chunks.
pub fn document(ctx: &Ctx) -> impl Stream<Item = Result<String, Infallible>> + Send + 'static {
    let export = Export {
        source: ctx.tables.core.read(|t| t.snapshot_source()),
        node: ctx.node().to_owned(),
        now_ms: crate::cluster::now_ms(),
        stage: Stage::Head,
        first: true,
    };
    futures_util::stream::unfold(export, |mut e| async move {
        if matches!(e.stage, Stage::Done) {
            return None;
        }
        let chunk = e.step();
        Some((Ok(chunk), e))
    })
}

/// Appends `row` to a JSON list being written.
fn push<T: Serialize>(out: &mut String, first: &mut bool, row: &T) {
    if let Ok(text) = serde_json::to_string(row) {
        out.push_str(if *first { "\n" } else { ",\n" });
        out.push_str(&text);
        *first = false;
    }
}

impl Export {
    /// The next chunk; moves the stage on.
    fn step(&mut self) -> String {
        let mut out = String::new();
        let stage = std::mem::replace(&mut self.stage, Stage::Done);
        self.stage = match stage {
            Stage::Head => {
                let head = serde_json::json!({
                    "version": FORMAT_VERSION,
                    "node": self.node,
                    "exported_at": crate::api::rfc3339_ms(self.now_ms),
                    "applied_index": self.source.applied_index(),
                })
                .to_string();
                // The head object without its closing brace, then the first list.
                out.push_str(head.trim_end_matches('}'));
                out.push_str(",\n\"auth_users\":[");
                Stage::Users(None)
            }
            Stage::Users(after) => self.users(&mut out, after),
            Stage::Authz(after) => self.authz(&mut out, after),
            Stage::Banned(rows, at) => self.banned(&mut out, rows, at),
            Stage::Retained(after) => self.retained(&mut out, after),
            Stage::Settings => {
                self.settings(&mut out);
                out.push_str("}\n");
                Stage::Done
            }
            Stage::Done => Stage::Done,
        };
        out
    }

    /// Closes the list being written and opens `next`.
    fn next_list(&mut self, out: &mut String, next: &str) {
        out.push_str("\n],\n\"");
        out.push_str(next);
        out.push_str("\":[");
        self.first = true;
    }

    fn users(&mut self, out: &mut String, after: Option<String>) -> Stage {
        let page = self.source.auth_users_page(after.as_deref(), PAGE);
        for u in &page {
            push(out, &mut self.first, &UserJson::from_row(u));
        }
        match page.last() {
            Some(u) if page.len() == PAGE => Stage::Users(Some(u.user_id.clone())),
            _ => {
                self.next_list(out, "authz_rules");
                Stage::Authz(None)
            }
        }
    }

    fn authz(&mut self, out: &mut String, after: Option<(i32, String)>) -> Stage {
        let from = after.as_ref().map(|(k, key)| (*k, key.as_str()));
        let page = self.source.authz_rules_page(from, PAGE);
        for r in &page {
            push(out, &mut self.first, &AuthzJson::from_row(r));
        }
        match page.last() {
            Some(r) if page.len() == PAGE => Stage::Authz(Some((r.kind, r.key.clone()))),
            _ => {
                self.next_list(out, "banned");
                // The banned table is bounded (`MAX_BANNED_ROWS`) and small per row.
                Stage::Banned(self.source.table(Table::Banned).banned, 0)
            }
        }
    }

    fn banned(&mut self, out: &mut String, rows: Vec<BannedRow>, at: usize) -> Stage {
        let end = rows.len().min(at + PAGE);
        for r in &rows[at..end] {
            push(out, &mut self.first, &BannedJson::from_row(r));
        }
        if end < rows.len() {
            return Stage::Banned(rows, end);
        }
        self.next_list(out, "retained");
        Stage::Retained(None)
    }

    fn retained(&mut self, out: &mut String, after: Option<String>) -> Stage {
        let page = self.source.retained_page(after.as_deref(), PAGE);
        let full = page.len() == PAGE;
        for m in &page {
            if crate::authz::is_sys_topic(&m.topic)
                || m.expires_at_ms.is_some_and(|e| e <= self.now_ms)
            {
                continue;
            }
            push(out, &mut self.first, &RetainedJson::from_row(m));
            if out.len() >= CHUNK_BYTES {
                return Stage::Retained(Some(m.topic.clone()));
            }
        }
        match page.last() {
            Some(m) if full => Stage::Retained(Some(m.topic.clone())),
            _ => {
                out.push_str("\n],\n");
                Stage::Settings
            }
        }
    }

    /// `"settings": {...}, "settings_base64": {...}` (the table is bounded: one chunk).
    fn settings(&mut self, out: &mut String) {
        let mut json: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        let mut raw: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for row in self.source.table(Table::Settings).settings {
            if LOCAL_NAMESPACES.contains(&row.ns.as_str()) {
                continue;
            }
            match serde_json::from_slice::<Value>(&row.value) {
                Ok(v) => {
                    json.entry(row.ns).or_default().insert(row.key, v);
                }
                Err(_) => {
                    let text = B64.encode(&row.value);
                    raw.entry(row.ns).or_default().insert(row.key, text);
                }
            }
        }
        let json = serde_json::to_string(&json).unwrap_or_else(|_| "{}".into());
        let raw = serde_json::to_string(&raw).unwrap_or_else(|_| "{}".into());
        out.push_str("\"settings\":");
        out.push_str(&json);
        out.push_str(",\n\"settings_base64\":");
        out.push_str(&raw);
    }
}
