//! Where trace definitions are kept: the cluster's `settings` table, namespace [`NS`], key =
//! the trace's name, value = the definition as JSON. Every replicant reads them from its
//! replica, so a trace created through one node is recorded on every node.
//!
//! [`TraceDefs`] is this node's decoded copy, refreshed from the table ([`TraceDefs::reload`])
//! whenever the replica applies an entry, so that connections and the recorder sync read
//! definitions without decoding. Writes go through the cores (`crate::settings`). It never
//! decides anything about a trace (bounds, validity): the API does.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use tracing::warn;

use super::spec::TraceSpec;
use crate::ctx::Ctx;
use crate::settings::{self, SettingsError};

/// The `settings` namespace of trace definitions.
pub const NS: &str = "trace";

/// This node's copy of the trace definitions.
#[derive(Default)]
pub struct TraceDefs {
    /// By name.
    map: Mutex<BTreeMap<String, TraceSpec>>,
}

impl TraceDefs {
    /// Every definition, by name.
    pub fn list(&self) -> Vec<TraceSpec> {
        self.map.lock().values().cloned().collect()
    }

    /// The definition named `name`.
    pub fn get(&self, name: &str) -> Option<TraceSpec> {
        self.map.lock().get(name).cloned()
    }

    /// Re-reads the definitions from this node's replica (a value that does not decode, or
    /// whose name the API would refuse, is skipped with a warning: the name becomes a file
    /// name, and a row written by another way than the API must not reach outside the
    /// trace directory).
    pub fn reload(&self, ctx: &Ctx) {
        let rows = settings::list(ctx, NS)
            .into_iter()
            .map(|(name, value, _)| (name, value));
        *self.map.lock() = decode_rows(rows);
    }

    /// Stores `spec` through the cores (when `new`, only if no trace has its name:
    /// [`SettingsError::Conflict`] otherwise), then reloads.
    pub async fn put(&self, ctx: &Ctx, spec: &TraceSpec, new: bool) -> Result<(), SettingsError> {
        let value = serde_json::to_vec(spec).map_err(|e| SettingsError::Invalid(e.to_string()))?;
        let expect = new.then_some(0);
        settings::put(ctx, NS, &spec.name, value, expect).await?;
        self.reload(ctx);
        Ok(())
    }

    /// Removes the definition named `name` through the cores, then reloads; whether there
    /// was one.
    pub async fn delete(&self, ctx: &Ctx, name: &str) -> Result<bool, SettingsError> {
        let had = settings::delete(ctx, NS, name, None).await?;
        self.reload(ctx);
        Ok(had)
    }

    /// Sets the copy directly (unit tests without a cluster).
    #[cfg(test)]
    pub(crate) fn set_local(&self, specs: Vec<TraceSpec>) {
        *self.map.lock() = specs.into_iter().map(|s| (s.name.clone(), s)).collect();
    }
}

/// The definitions among `rows` (name, stored value) that decode, carry their row's name,
/// and whose name is one the API accepts.
fn decode_rows(rows: impl Iterator<Item = (String, Vec<u8>)>) -> BTreeMap<String, TraceSpec> {
    let mut map = BTreeMap::new();
    for (name, value) in rows {
        match serde_json::from_slice::<TraceSpec>(&value) {
            Ok(spec) if spec.name == name && super::spec::valid_name(&name) => {
                map.insert(name, spec);
            }
            _ => warn!(trace = %name, "a trace definition that does not decode is skipped"),
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::spec::{PayloadEncode, TraceFilter};

    fn row(name: &str) -> (String, Vec<u8>) {
        let spec = TraceSpec {
            name: name.into(),
            filter: TraceFilter::Clientid("c1".into()),
            start_at: 1,
            end_at: 2,
            payload_encode: PayloadEncode::Hidden,
            stopped_at: None,
            created_ms: 1,
        };
        (name.into(), serde_json::to_vec(&spec).expect("json"))
    }

    #[test]
    fn rows_with_names_the_api_refuses_are_skipped() {
        let mut renamed = row("ok-2");
        renamed.0 = "other".into();
        let rows = [
            row("ok_1"),
            row("../../etc/x"),
            row("/abs"),
            row("a.b"),
            renamed,
            ("junk".into(), b"{".to_vec()),
        ];
        let map = decode_rows(rows.into_iter());
        assert_eq!(map.keys().collect::<Vec<_>>(), ["ok_1"]);
    }
}
