//! Certificate reloads of the TLS listeners without a restart: `SIGHUP` re-reads every TLS
//! listener's files, a poll every `ssl_options.reload_interval_ms` re-reads those whose
//! files changed, and the API reloads one ([`reload_now`]). New handshakes use the new
//! configuration; established connections keep theirs. A file that does not load leaves
//! the previous configuration in use; the error (file and reason, never a password) is
//! logged and answered. Every attempt that read the files is counted in
//! `meshmq_tls_reload_total{listener,result}` (`ok`: new files in use, `unchanged`, `error`).

use std::sync::Arc;

use meshmq_shared::metrics as m;
use meshmq_shared::tls::TlsLoadError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Listener, Listeners};

/// Why a reload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The listener has no TLS (or is not running).
    #[error("{0} is not a running TLS listener")]
    NotTls(String),
    /// The new files do not load; the previous certificate stays in use.
    #[error("{listener}: {error}; the previous certificate stays in use")]
    Load {
        /// The listener.
        listener: String,
        /// What is wrong with the files.
        error: TlsLoadError,
    },
    /// The blocking task that reads the files failed.
    #[error("{0}: the reload did not run")]
    Aborted(String),
}

/// How a reload went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Re-read every file (SIGHUP, the API).
    Always,
    /// Only when a file's time or size changed (the poll).
    IfChanged,
}

/// Reloads `listener`'s certificates now; `Ok(true)` when new files are in use.
pub async fn reload_now(listener: &Arc<Listener>) -> Result<bool, ReloadError> {
    run(listener, Mode::Always)
        .await
        .map(|r| r.unwrap_or_default())
}

/// Reads the files off the runtime's threads; `Ok(None)` when the poll found no change.
async fn run(listener: &Arc<Listener>, mode: Mode) -> Result<Option<bool>, ReloadError> {
    let Some(tls) = listener.tls.clone() else {
        return Err(ReloadError::NotTls(listener.id.clone()));
    };
    let id = listener.id.clone();
    let read = tokio::task::spawn_blocking(move || match mode {
        Mode::Always => tls.reload().map(Some),
        Mode::IfChanged => tls
            .reload_if_changed()
            .map(|changed| changed.then_some(true)),
    });
    let result = match read.await {
        Ok(Ok(None)) => return Ok(None),
        Ok(Ok(Some(true))) => {
            info!(listener = %id, "TLS certificates reloaded");
            Ok(Some(true))
        }
        Ok(Ok(Some(false))) => Ok(Some(false)),
        Ok(Err(error)) => {
            warn!(listener = %id, %error, "TLS reload failed; the previous certificate stays in use");
            Err(ReloadError::Load {
                listener: id.clone(),
                error,
            })
        }
        Err(_) => Err(ReloadError::Aborted(id.clone())),
    };
    let label = match &result {
        Ok(Some(true)) => "ok",
        Ok(_) => "unchanged",
        Err(_) => "error",
    };
    metrics::counter!(m::TLS_RELOAD_TOTAL, "listener" => id, "result" => label).increment(1);
    result
}

/// Starts the reloaders: one `SIGHUP` handler for every TLS listener, and one poll per TLS
/// listener with a `reload_interval_ms`. They stop with `shutdown`.
pub fn spawn(listeners: &Listeners, shutdown: &CancellationToken, tasks: &mut JoinSet<()>) {
    let tls: Vec<Arc<Listener>> = listeners
        .all()
        .iter()
        .filter(|l| l.tls.is_some())
        .cloned()
        .collect();
    if tls.is_empty() {
        return;
    }
    for l in &tls {
        let Some(every) = l.tls.as_ref().and_then(|t| t.reload_interval()) else {
            continue;
        };
        let (l, token) = (l.clone(), shutdown.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tick.tick() => { let _ = run(&l, Mode::IfChanged).await; }
                }
            }
        });
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGHUP: certificates reload by file change and API only");
                return;
            }
        };
        let token = shutdown.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    got = hup.recv() => {
                        if got.is_none() {
                            return;
                        }
                        info!("SIGHUP: reloading TLS certificates");
                        for l in &tls {
                            let _ = run(l, Mode::Always).await;
                        }
                    }
                }
            }
        });
    }
}
