//! The plan of a data import: the document read and every row checked before anything is
//! written, each row turned into the ops that upsert it.
//!
//! Every row is checked by the tables' own rules, by applying its ops to an empty scratch
//! copy of the tables (`Tables::apply` is pure): what applies there can only be refused on
//! the cluster by what the cluster already holds (a quota, a ban in force), never for its
//! own content. On top: duplicates within the file, the API's checks of rules and bans,
//! run-time config keys and values checked with the node's configuration and the
//! overrides already stored, API key records readable. The first bad row refuses the whole
//! import ([`DataError::Row`], naming its table and index). This module never writes.

use std::collections::{BTreeMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use core_node::api::{MAX_ENTRY_BYTES, batch_bytes};
use meshmq_proto::tables::{
    AuthUserSet, AuthzRulesSet, BannedAdd, BannedDelete, Op, RetainedSet, SettingRow, SettingSet,
    op,
};
use meshmq_shared::config::runtime::{apply_overrides, is_runtime_key};
use meshmq_shared::tables::{Tables, rejection};
use serde::Deserialize;
use serde_json::Value;

use super::rows::{AuthzJson, BannedJson, RetainedJson, UserJson};
use super::{DataError, FORMAT_VERSION, LOCAL_NAMESPACES, TABLES};
use crate::api_keys::record::{self, KeyRecord};
use crate::cluster::{self, RetainLimits};
use crate::ctx::Ctx;

/// The document `POST /api/v5/data/import` takes (what the export writes).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// The format version ([`FORMAT_VERSION`]).
    pub version: u64,
    /// The exporting node (informative).
    #[serde(default)]
    pub node: Option<String>,
    /// When it was exported (informative).
    #[serde(default)]
    pub exported_at: Option<String>,
    /// The exporter's replica index (informative).
    #[serde(default)]
    pub applied_index: Option<u64>,
    /// Built-in users.
    #[serde(default)]
    pub auth_users: Vec<UserJson>,
    /// Built-in authorization rule lists.
    #[serde(default)]
    pub authz_rules: Vec<AuthzJson>,
    /// Bans.
    #[serde(default)]
    pub banned: Vec<BannedJson>,
    /// Retained messages.
    #[serde(default)]
    pub retained: Vec<RetainedJson>,
    /// Settings whose values are JSON: namespace → key → value.
    #[serde(default)]
    pub settings: BTreeMap<String, BTreeMap<String, Value>>,
    /// Settings whose values are not JSON text: namespace → key → base64.
    #[serde(default)]
    pub settings_base64: BTreeMap<String, BTreeMap<String, String>>,
}

/// Only the version, read first so that a document of another version is refused for its
/// version rather than for a field this one does not know.
#[derive(Deserialize)]
struct Probe {
    version: Option<Value>,
}

/// One row to write: its ops go in one batch (a ban is a delete and an add).
#[derive(Debug)]
pub struct Item {
    /// The table it belongs to (an index into [`TABLES`]).
    pub table: usize,
    /// Where it is in the document (`banned[3]`, `settings.config["mqtt.x"]`).
    pub at: String,
    /// The ops.
    pub ops: Vec<Op>,
}

/// Every row to write, in table order, and the rows left out on purpose.
#[derive(Debug, Default)]
pub struct Plan {
    /// The rows.
    pub items: Vec<Item>,
    /// Per table (as [`TABLES`]): rows left out (ended bans, expired retained messages,
    /// `$SYS` topics).
    pub skipped: [usize; TABLES.len()],
    /// Whether run-time config overrides are among the rows (the node re-reads them).
    pub has_config: bool,
}

/// Reads and checks `body` against this node's state; the plan, or the first problem.
pub fn build(ctx: &Ctx, body: &[u8]) -> Result<Plan, DataError> {
    let probe: Probe = serde_json::from_slice(body).map_err(|e| DataError::Json(e.to_string()))?;
    match probe.version {
        Some(Value::Number(n)) if n.as_u64() == Some(FORMAT_VERSION) => {}
        Some(_) => return Err(DataError::Version),
        None => return Err(DataError::Field("`version` is missing".into())),
    }
    let doc: Document = crate::http::api::parse_json(body).map_err(|e| {
        DataError::Field(
            e.message
                .trim_start_matches("invalid request body: ")
                .into(),
        )
    })?;
    let mut planner = Planner::new(ctx);
    planner.users(doc.auth_users)?;
    planner.authz(&doc.authz_rules)?;
    planner.banned(&doc.banned)?;
    planner.retained(doc.retained)?;
    planner.settings(doc.settings, doc.settings_base64)?;
    Ok(planner.plan)
}

/// Builds a plan: the scratch tables every row is applied to, and the clocks and limits.
struct Planner<'a> {
    ctx: &'a Ctx,
    scratch: Tables,
    plan: Plan,
    now_ms: u64,
    limits: RetainLimits,
}

fn row_error(table: usize, index: usize, message: impl Into<String>) -> DataError {
    DataError::Row {
        at: format!("{}[{index}]", TABLES[table]),
        message: message.into(),
    }
}

impl<'a> Planner<'a> {
    fn new(ctx: &'a Ctx) -> Self {
        Planner {
            ctx,
            scratch: Tables::new(),
            plan: Plan::default(),
            now_ms: cluster::now_ms(),
            limits: RetainLimits::of(&ctx.runtime.current().config.mqtt),
        }
    }

    /// Applies `ops` to the scratch tables; the table's refusal of any, as the row's error.
    /// Also refuses a row too large for one log entry.
    fn admit(&mut self, table: usize, at: String, ops: Vec<Op>) -> Result<(), DataError> {
        // Written alone in its batch if need be, but one log entry is the most.
        let bytes = batch_bytes(&ops);
        if bytes > MAX_ENTRY_BYTES {
            return Err(DataError::Row {
                at,
                message: format!(
                    "the row is {bytes} bytes, over the {MAX_ENTRY_BYTES} of one log entry"
                ),
            });
        }
        for o in &ops {
            let index = self.scratch.applied_index() + 1;
            let result = self.scratch.apply(index, o);
            if let Some((reason, detail)) = rejection(&result) {
                return Err(DataError::Row {
                    at,
                    message: format!("refused by the table ({reason:?}): {detail}"),
                });
            }
        }
        self.plan.items.push(Item { table, at, ops });
        Ok(())
    }

    fn users(&mut self, users: Vec<UserJson>) -> Result<(), DataError> {
        let mut seen = HashSet::new();
        for (i, u) in users.into_iter().enumerate() {
            let user = u.to_row().map_err(|e| row_error(0, i, e))?;
            if !seen.insert(user.user_id.clone()) {
                return Err(row_error(0, i, "user_id appears twice"));
            }
            let set = op::Kind::AuthUserSet(AuthUserSet { user: Some(user) });
            self.admit(0, format!("auth_users[{i}]"), vec![cluster::op(set)])?;
        }
        Ok(())
    }

    fn authz(&mut self, lists: &[AuthzJson]) -> Result<(), DataError> {
        let mut seen = HashSet::new();
        for (i, a) in lists.iter().enumerate() {
            let rules = a.to_row().map_err(|e| row_error(1, i, e))?;
            if !seen.insert((rules.kind, rules.key.clone())) {
                return Err(row_error(1, i, "the same kind and key appear twice"));
            }
            let set = op::Kind::AuthzRulesSet(AuthzRulesSet { rules: Some(rules) });
            self.admit(1, format!("authz_rules[{i}]"), vec![cluster::op(set)])?;
        }
        Ok(())
    }

    fn banned(&mut self, bans: &[BannedJson]) -> Result<(), DataError> {
        let now_s = self.now_ms / 1000;
        let mut seen = HashSet::new();
        for (i, b) in bans.iter().enumerate() {
            let row = b.to_row().map_err(|e| row_error(2, i, e))?;
            if !seen.insert(BannedJson::key(&row)) {
                return Err(row_error(2, i, "the same `as` and `who` appear twice"));
            }
            if row.until != 0 && row.until <= now_s {
                self.plan.skipped[2] += 1;
                continue;
            }
            // Upsert: a ban in force with the same key would refuse the add.
            let delete = op::Kind::BannedDelete(BannedDelete {
                kind: row.kind,
                who: row.who.clone(),
                all: false,
            });
            let add = op::Kind::BannedAdd(BannedAdd {
                row: Some(row),
                now_s,
            });
            let ops = vec![cluster::op(delete), cluster::op(add)];
            self.admit(2, format!("banned[{i}]"), ops)?;
        }
        Ok(())
    }

    fn retained(&mut self, messages: Vec<RetainedJson>) -> Result<(), DataError> {
        let mut seen = HashSet::new();
        let mut rows = Vec::with_capacity(messages.len());
        for (i, r) in messages.into_iter().enumerate() {
            let m = r.to_row().map_err(|e| row_error(3, i, e))?;
            if !seen.insert(m.topic.clone()) {
                return Err(row_error(3, i, "the topic appears twice"));
            }
            if crate::authz::is_sys_topic(&m.topic)
                || m.expires_at_ms.is_some_and(|e| e <= self.now_ms)
            {
                self.plan.skipped[3] += 1;
                continue;
            }
            rows.push((i, m));
        }
        self.retained_quota(&rows)?;
        for (i, m) in rows {
            let set = op::Kind::RetainedSet(RetainedSet {
                message: Some(m),
                max_messages: self.limits.max_messages,
                max_bytes: self.limits.max_bytes,
            });
            self.admit(3, format!("retained[{i}]"), vec![cluster::op(set)])?;
        }
        Ok(())
    }

    /// Refuses an import that would take the retained table past this node's limits
    /// beside what the cluster holds now (the tables would refuse its last rows).
    fn retained_quota(
        &self,
        rows: &[(usize, meshmq_proto::tables::RetainedMessage)],
    ) -> Result<(), DataError> {
        use meshmq_shared::tables::retained_quota::{counted, message_bytes};
        let l = self.limits;
        let (count, bytes) = self.ctx.tables.core.read(|t| {
            let (mut count, mut bytes) = (t.retained_count() as u64, t.retained_bytes());
            for (_, m) in rows.iter().filter(|(_, m)| counted(&m.topic)) {
                match t.retained(&m.topic) {
                    Some(old) => bytes = bytes.saturating_sub(message_bytes(old)),
                    None => count += 1,
                }
                bytes += message_bytes(m);
            }
            (count, bytes)
        });
        if l.max_messages != 0 && count > l.max_messages {
            return Err(DataError::Quota(format!(
                "the retained table would hold {count} messages, over \
                 mqtt.max_retained_messages = {}",
                l.max_messages
            )));
        }
        if l.max_bytes != 0 && bytes > l.max_bytes {
            return Err(DataError::Quota(format!(
                "the retained table would hold {bytes} bytes, over mqtt.max_retained_bytes = {}",
                l.max_bytes
            )));
        }
        Ok(())
    }

    fn settings(
        &mut self,
        json: BTreeMap<String, BTreeMap<String, Value>>,
        raw: BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<(), DataError> {
        let mut rows: Vec<(String, SettingRow)> = Vec::new();
        for (ns, keys) in json {
            if ns == crate::configs::NS {
                self.check_config(&keys)?;
                self.plan.has_config |= !keys.is_empty();
            }
            for (key, value) in keys {
                let at = format!("settings.{ns}[{key:?}]");
                if ns == record::NS {
                    check_api_key(&key, &value).map_err(|message| DataError::Row {
                        at: at.clone(),
                        message,
                    })?;
                }
                let value = Bytes::from(value.to_string().into_bytes());
                rows.push((at, setting(&ns, key, value)));
            }
        }
        for (ns, keys) in raw {
            if [crate::configs::NS, record::NS].contains(&ns.as_str()) {
                return Err(DataError::Row {
                    at: format!("settings_base64.{ns}"),
                    message: "this namespace holds JSON: put it under `settings`".into(),
                });
            }
            for (key, text) in keys {
                let at = format!("settings_base64.{ns}[{key:?}]");
                let value = B64.decode(&text).map_err(|_| DataError::Row {
                    at: at.clone(),
                    message: "the value is not base64".into(),
                })?;
                rows.push((at, setting(&ns, key, value.into())));
            }
        }
        for (at, row) in rows {
            if LOCAL_NAMESPACES.contains(&row.ns.as_str()) {
                return Err(DataError::Row {
                    at,
                    message: "this namespace is tied to a node's files and is not imported".into(),
                });
            }
            let set = op::Kind::SettingSet(SettingSet {
                row: Some(row),
                expect_version: None,
            });
            self.admit(4, at, vec![cluster::op(set)])?;
        }
        Ok(())
    }

    /// The overrides already stored with these on top must apply to this node's
    /// configuration, as `PUT /api/v5/configs` requires.
    fn check_config(&self, keys: &BTreeMap<String, Value>) -> Result<(), DataError> {
        let mut all: Vec<(String, Value)> = crate::configs::stored(self.ctx)
            .into_iter()
            .filter(|(k, _, _)| !keys.contains_key(k))
            .map(|(k, v, _)| (k, v))
            .collect();
        for (key, value) in keys {
            if !is_runtime_key(key) {
                return Err(DataError::Row {
                    at: format!("settings.config[{key:?}]"),
                    message: "not a run-time configuration key".into(),
                });
            }
            all.push((key.clone(), value.clone()));
        }
        apply_overrides(self.ctx.runtime.base(), &all).map_err(|e| DataError::Row {
            at: "settings.config".into(),
            message: e.to_string(),
        })?;
        Ok(())
    }
}

fn setting(ns: &str, key: String, value: Bytes) -> SettingRow {
    SettingRow {
        ns: ns.to_owned(),
        key,
        value,
        version: 0,
    }
}

/// An API key row: a valid name and a readable record with a valid id.
fn check_api_key(name: &str, value: &Value) -> Result<(), String> {
    record::check_name(name)?;
    let bytes = serde_json::to_vec(value).map_err(|_| "not JSON".to_owned())?;
    let rec = KeyRecord::decode(&bytes).ok_or("not an API key record")?;
    record::check_key_id(&rec.key_id)
}
