//! Keeps this node's recorders in step with the trace definitions: a recorder runs for
//! every trace inside its window (not stopped, start passed, end not reached); the others'
//! recorders are dropped (their writer tasks finish the queued lines and end). Woken by every
//! change of the replica and once a second (windows open and close with time).
//!
//! Definitions are re-read from the replica whenever it applies an entry; a trace that is
//! gone (deleted through any node) takes this node's file with it. Also the retention: a
//! trace finished more than `trace.retention` ago is deleted (by whichever node sees it
//! first); a file in the trace directory that belongs to no trace is deleted once it has
//! not changed for that long.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::Traces;
use super::recorder::Recorder;
use super::spec::Status;
use crate::ctx::Ctx;

/// How often windows are checked.
const TICK: Duration = Duration::from_secs(1);
/// How often the retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Unix seconds now.
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The task: syncs until the broker stops, re-reading the definitions whenever the replica
/// applies an entry.
pub async fn run(ctx: Arc<Ctx>) {
    let traces = &ctx.trace;
    let mut changes = crate::settings::watch(&ctx);
    let mut last_retention: Option<tokio::time::Instant> = None;
    let mut known: HashSet<String> = HashSet::new();
    loop {
        traces.defs.reload(&ctx);
        let now = now_s();
        sync_once(traces, now);
        // A trace deleted (through any node) takes this node's file with it.
        let names: HashSet<String> = traces.defs.list().into_iter().map(|s| s.name).collect();
        for gone in known.difference(&names) {
            let _ = std::fs::remove_file(traces.file(gone));
        }
        known = names;
        if last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY) {
            last_retention = Some(tokio::time::Instant::now());
            for name in expired(traces, now) {
                info!(trace = %name, "finished trace deleted after its retention");
                if let Err(e) = traces.defs.delete(&ctx, &name).await {
                    warn!(trace = %name, error = %e, "cannot delete a finished trace");
                }
            }
            remove_orphans(traces);
        }
        tokio::select! {
            _ = ctx.admission.shutdown.cancelled() => break,
            r = changes.changed() => if r.is_err() { break },
            _ = tokio::time::sleep(TICK) => {}
        }
    }
    traces.set_running(Vec::new());
}

/// One pass: the recorders that should run at `now`, reusing those already running.
pub fn sync_once(traces: &Traces, now: u64) {
    let running: HashMap<(String, u64), Arc<Recorder>> = traces
        .running()
        .iter()
        .map(|r| ((r.spec.name.clone(), r.spec.created_ms), r.clone()))
        .collect();
    let mut next = Vec::new();
    for spec in traces.defs.list() {
        if spec.status(now) != Status::Running {
            continue;
        }
        let key = (spec.name.clone(), spec.created_ms);
        let r = match running.get(&key) {
            Some(r) => r.clone(),
            None => {
                info!(trace = %spec.name, "trace recording starts");
                let path = traces.file(&spec.name);
                let c = &traces.config;
                Recorder::start(spec, path, c.max_file_size, c.queue_len)
            }
        };
        next.push(r);
    }
    traces.set_running(next);
}

/// The traces finished more than the retention before `now`.
pub fn expired(traces: &Traces, now: u64) -> Vec<String> {
    let keep = traces.config.retention().as_secs();
    traces
        .defs
        .list()
        .into_iter()
        .filter(|s| {
            s.finished_at(now)
                .is_some_and(|f| now.saturating_sub(f) >= keep)
        })
        .map(|s| s.name)
        .collect()
}

/// Deletes the files in the trace directory that belong to no trace and have not changed
/// for the retention.
fn remove_orphans(traces: &Traces) {
    let keep = traces.config.retention();
    let known: Vec<_> = traces
        .defs
        .list()
        .iter()
        .map(|s| traces.file(&s.name))
        .collect();
    let Ok(dir) = std::fs::read_dir(&traces.dir) else {
        return;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        if known.contains(&path) || path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let old = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= keep);
        if old {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use meshmq_shared::config::TraceConfig;

    use super::*;
    use crate::trace::spec::{PayloadEncode, TraceFilter, TraceSpec};
    use crate::trace::{Event, Subject};

    fn spec(name: &str, start_at: u64, end_at: u64) -> TraceSpec {
        TraceSpec {
            name: name.into(),
            filter: TraceFilter::Clientid("c1".into()),
            start_at,
            end_at,
            payload_encode: PayloadEncode::Hidden,
            stopped_at: None,
            created_ms: 1,
        }
    }

    #[test]
    fn recorders_follow_windows_and_finished_traces_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Traces::new("n@1", dir.path().join("trace"), TraceConfig::default());
        let now = now_s();
        t.defs.set_local(vec![
            spec("now", now - 5, now + 100),
            spec("later", now + 50, now + 100),
        ]);
        sync_once(&t, now);
        assert!(t.active());
        assert_eq!(t.running().len(), 1, "only the trace in its window");
        let who = Subject {
            client_id: "c1",
            ip: "127.0.0.1".parse().expect("ip"),
        };
        t.record(who, &Event::Unsubscribe { filter: "a/b" });
        let other = Subject {
            client_id: "c2",
            ..who
        };
        t.record(other, &Event::Unsubscribe { filter: "x" });
        let file = t.file("now");
        assert!(file.ends_with("now-n-1.log"), "{}", file.display());
        let end = Instant::now() + Duration::from_secs(5);
        let text = loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if !text.is_empty() || Instant::now() > end {
                break text;
            }
            std::thread::sleep(Duration::from_millis(10)); // polling a file, bounded
        };
        assert!(
            text.ends_with("clientid=\"c1\" peer=127.0.0.1 event=unsubscribe filter=\"a/b\"\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "c2 is not traced: {text}");
        // At the later trace's start both run; past their end none.
        sync_once(&t, now + 60);
        assert_eq!(t.running().len(), 2);
        sync_once(&t, now + 100);
        assert!(!t.active());
        // Expired once the retention after the end has passed.
        let keep = t.config.retention().as_secs();
        assert!(expired(&t, now + 100 + keep - 1).is_empty());
        assert_eq!(expired(&t, now + 100 + keep), ["later", "now"]);
    }
}
