//! Where trace definitions are kept, behind the few calls the API and the recorder sync
//! need (`list`, `get`, `put`, `delete`, `watch`).
//!
//! Today an in-memory map on this node (so a trace is defined per node, through that node's
//! API); the calls are async so that moving the definitions into the cluster's `settings`
//! table (namespace `trace`, value = the definition's JSON) changes nothing for callers.
//! It never decides anything about a trace (bounds, validity): the API does.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::spec::TraceSpec;

/// Why a definition could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DefsError {
    /// The store could not commit the change (cluster storage: no core answered).
    #[error("the trace definitions could not be written: {0}")]
    Unavailable(String),
}

/// The trace definitions.
pub struct TraceDefs {
    /// By name.
    map: Mutex<BTreeMap<String, TraceSpec>>,
    /// Bumped on every change; the recorder sync waits on it.
    version: watch::Sender<u64>,
}

impl Default for TraceDefs {
    fn default() -> Self {
        TraceDefs {
            map: Mutex::new(BTreeMap::new()),
            version: watch::Sender::new(0),
        }
    }
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

    /// Stores `spec` (replacing one of the same name).
    pub async fn put(&self, spec: TraceSpec) -> Result<(), DefsError> {
        self.map.lock().insert(spec.name.clone(), spec);
        self.version.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Removes the definition named `name`; whether there was one.
    pub async fn delete(&self, name: &str) -> Result<bool, DefsError> {
        let had = self.map.lock().remove(name).is_some();
        self.version.send_modify(|v| *v += 1);
        Ok(had)
    }

    /// Changes from now on.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}
