//! Online traces (EMQX's log trace): while a trace is running, every event of the clients
//! it matches (by client id, topic filter or peer address) is written as one line into this
//! node's file of the trace, `<data_dir>/trace/<name>-<node>.log`.
//!
//! - [`Traces`] (in `Ctx`): the running recorders and a cheap [`Traces::active`] check for
//!   the hot paths (one relaxed atomic load when nothing is traced); [`Traces::record`]
//!   matches an [`Event`] and queues its line to each matching recorder.
//! - [`spec`]: what a trace is; [`defs`]: where definitions are kept; [`recorder`]: the
//!   file writer; [`sync`]: starts and stops recorders as definitions and windows change,
//!   and deletes finished traces after `trace.retention`; [`api`]: the REST routes, with
//!   [`cluster`] repeating changes on the other replicants and gathering their files.
//!
//! Recording never blocks a connection: lines go through a bounded queue and are dropped
//! (counted) when it is full. Payloads are written only when the trace asks for them.

pub mod api;
mod cluster;
pub mod defs;
mod event;
pub mod recorder;
pub mod spec;
pub mod sync;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use meshmq_shared::config::TraceConfig;
use parking_lot::RwLock;

pub use event::Event;
use recorder::Recorder;
use spec::TraceFilter;

/// Whom an event is about.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The client's id.
    pub client_id: &'a str,
    /// The client's address (the one a proxy header named, if any).
    pub ip: IpAddr,
}

/// This node's traces.
pub struct Traces {
    /// True while at least one recorder runs: the hot paths' check.
    any: AtomicBool,
    /// The running recorders (replaced as a whole by [`sync`]).
    running: RwLock<Arc<[Arc<Recorder>]>>,
    /// The definitions.
    pub defs: defs::TraceDefs,
    /// This node's name (in every line and file name).
    pub node: Arc<str>,
    /// Where the files go (`<data_dir>/trace`).
    pub dir: PathBuf,
    /// The bounds.
    pub config: TraceConfig,
}

impl Traces {
    /// No trace yet, for node `node`, files in `dir`.
    pub fn new(node: &str, dir: PathBuf, config: TraceConfig) -> Traces {
        Traces {
            any: AtomicBool::new(false),
            running: RwLock::new(Arc::from(Vec::new())),
            defs: defs::TraceDefs::default(),
            node: Arc::from(node),
            dir,
            config,
        }
    }

    /// Whether any trace is recording on this node (cheap: call before building an event).
    #[inline]
    pub fn active(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// Writes `event` about `who` into every running trace that matches it.
    pub fn record(&self, who: Subject<'_>, event: &Event<'_>) {
        if !self.active() {
            return;
        }
        let running = self.running.read().clone();
        let mut stamp = None;
        for r in running
            .iter()
            .filter(|r| matches(&r.spec.filter, who, event))
        {
            let ts = stamp.get_or_insert_with(core_node::logging::rfc3339_now);
            r.push(event.line(ts, &self.node, who, r.spec.payload_encode));
        }
    }

    /// The recorders now running.
    pub fn running(&self) -> Arc<[Arc<Recorder>]> {
        self.running.read().clone()
    }

    /// Replaces the running recorders.
    pub(crate) fn set_running(&self, recorders: Vec<Arc<Recorder>>) {
        let any = !recorders.is_empty();
        *self.running.write() = Arc::from(recorders);
        self.any.store(any, Ordering::Relaxed);
    }

    /// This node's file of trace `name`.
    pub fn file(&self, name: &str) -> PathBuf {
        recorder::file_path(&self.dir, name, &self.node)
    }
}

/// Whether a trace with `filter` records `event` about `who`: by client id and address,
/// every event of the client; by topic, the publishes whose topic the filter matches and
/// the (un)subscriptions to a filter it equals or covers.
fn matches(filter: &TraceFilter, who: Subject<'_>, event: &Event<'_>) -> bool {
    match filter {
        TraceFilter::Clientid(id) => id == who.client_id,
        TraceFilter::IpAddress(ip) => *ip == who.ip,
        TraceFilter::Topic(f) => event.topic().is_some_and(|t| {
            t == f || (!meshmq_shared::topic::is_wildcard(t) && meshmq_shared::topic::matches(f, t))
        }),
    }
}
