//! One running trace on this node: the bounded queue of its lines and the task appending
//! them to `<data_dir>/trace/<name>-<node>.log`.
//!
//! Connections only ever `try_send` into the queue: a full queue (`trace.queue_len` lines,
//! or [`QUEUE_BYTES`] bytes) drops the line (counted,
//! `meshmq_trace_events_dropped_total{reason="queue_full"}`), never waits. The file stops
//! growing at `trace.max_file_size` (further lines counted as `file_full`). The thread ends
//! when the last handle to the recorder is dropped (the trace stopped), after writing what
//! was queued.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use meshmq_shared::metrics as m;
use std::io::Write;
use tokio::sync::mpsc;
use tracing::warn;

use super::spec::TraceSpec;

/// The most bytes of lines queued for one trace's writer (a line is at most a few KiB:
/// strings and payloads are cut, see `event`).
pub const QUEUE_BYTES: usize = 8 << 20;

/// A running trace on this node.
pub struct Recorder {
    /// Its definition (what it matches, how payloads are written).
    pub spec: TraceSpec,
    /// Lines for the writer task.
    tx: mpsc::Sender<String>,
    /// Bytes of the lines in `tx`, shared with the writer.
    queued: Arc<AtomicUsize>,
}

/// The file of trace `name` on node `node` in `dir`: the node name with every character but
/// ASCII letters, digits, `-` and `.` written as `-`.
pub fn file_path(dir: &Path, name: &str, node: &str) -> PathBuf {
    let node: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    dir.join(format!("{name}-{node}.log"))
}

/// Counts a dropped line.
fn dropped(reason: &'static str) {
    metrics::counter!(m::TRACE_EVENTS_DROPPED_TOTAL, "reason" => reason).increment(1);
}

impl Recorder {
    /// Starts the writer thread of `spec` appending to `path`, at most `max_bytes` in the
    /// file, `queue_len` lines queued.
    pub fn start(spec: TraceSpec, path: PathBuf, max_bytes: u64, queue_len: usize) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(queue_len.max(1));
        let queued = Arc::new(AtomicUsize::new(0));
        let name = format!("trace-{}", spec.name.chars().take(8).collect::<String>());
        let counted = queued.clone();
        let spawned = std::thread::Builder::new()
            .name(name)
            .spawn(move || write_lines(rx, &counted, &path, max_bytes));
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start a trace writer thread");
        }
        Arc::new(Recorder { spec, tx, queued })
    }

    /// Queues `line` (a queue full in lines or bytes drops it, counted).
    pub fn push(&self, line: String) {
        let len = line.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > QUEUE_BYTES || self.tx.try_send(line).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            dropped("queue_full");
        }
    }
}

/// The writer thread (file I/O blocks: it never runs on the async runtime): appends each
/// line, flushing whenever the queue is empty, until every sender is gone.
fn write_lines(mut rx: mpsc::Receiver<String>, queued: &AtomicUsize, path: &Path, max_bytes: u64) {
    let (mut file, mut written) = match open(path) {
        Ok((f, len)) => (std::io::BufWriter::new(f), len),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot open the trace file");
            while let Some(line) = rx.blocking_recv() {
                queued.fetch_sub(line.len(), Ordering::AcqRel);
                dropped("file_error");
            }
            return;
        }
    };
    while let Some(line) = rx.blocking_recv() {
        queued.fetch_sub(line.len(), Ordering::AcqRel);
        let len = line.len() as u64;
        if written + len > max_bytes {
            dropped("file_full");
        } else if let Err(e) = file.write_all(line.as_bytes()) {
            warn!(path = %path.display(), error = %e, "cannot write the trace file");
            dropped("file_error");
        } else {
            written += len;
        }
        if rx.is_empty() {
            let _ = file.flush();
        }
    }
    let _ = file.flush();
}

/// Opens `path` for appending (creating its directory); its current length.
fn open(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let len = f.metadata()?.len();
    Ok((f, len))
}
