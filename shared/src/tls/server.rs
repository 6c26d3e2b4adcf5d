//! [`ServerTls`]: the TLS side of one `ssl` or `wss` listener. Holds the current rustls
//! configuration and swaps it when the files change; a handshake takes the configuration
//! current when it starts, so a reload never touches established connections. A bad new
//! file leaves the previous configuration in use, and the error says which file and why.
//!
//! Session tickets and the TLS 1.2 session cache outlive reloads: clients resume across a
//! certificate change. Not across a change of `cacertfile` or `crlfile`, though: a resumed
//! session skips the client-certificate check, so new trust files mean new ticket keys. Nothing here opens a socket or spawns a task; the listener calls
//! [`ServerTls::reload_if_changed`] on its own timer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::build::{Built, build};
use super::cert_files::{Stamp, stamp};
pub use super::error::TlsLoadError;
use super::identity;
use super::resumption::{Resumption, first_after, unix_now};
use crate::config::tls::{ClientAuth, SslOptions};

/// The TLS configuration of one listener, reloadable.
pub struct ServerTls {
    /// The settings (file names, policy); fixed for the listener's life.
    options: SslOptions,
    /// ALPN protocols offered (configured or the listener kind's default).
    alpn: Vec<Vec<u8>>,
    /// What handshakes use now.
    current: RwLock<Current>,
    /// The files' (mtime, size) when last looked at by a reload, changed or failed; its lock
    /// is also the reload lock.
    seen: Mutex<Vec<Stamp>>,
    /// Unix second at which the next CRL in use expires and resumption starts afresh
    /// (`i64::MAX`: no CRL, or all expired and done). Checked on every handshake, so it holds
    /// without a reload timer.
    sessions_end_at: AtomicI64,
}

/// The configuration in use and what it was built from.
struct Current {
    config: Arc<ServerConfig>,
    /// Ticket keys and session cache, kept by reloads that leave the trust files alone.
    resumption: Resumption,
    fingerprint: [u8; 32],
    trust: [u8; 32],
    leaf: Vec<u8>,
    loaded_at_ms: u64,
    /// When the CRLs in use expire (Unix seconds, ascending).
    crl_expiries: Vec<i64>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("options", &self.options) // SslOptions redacts the password
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads every file named by `options` and builds the rustls server configuration (the
    /// `ring` provider, never the process default). `default_alpn` applies when
    /// `options.alpn` is unset (`["mqtt"]` on ssl listeners, `["http/1.1"]` on wss).
    pub fn load(
        options: &SslOptions,
        default_alpn: &[&str],
    ) -> Result<Arc<ServerTls>, TlsLoadError> {
        let alpn: Vec<Vec<u8>> = match &options.alpn {
            Some(list) => list.iter().map(|p| p.as_bytes().to_vec()).collect(),
            None => default_alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
        };
        if alpn.iter().any(|p| p.is_empty() || p.len() > 255) {
            return Err(TlsLoadError::Option {
                key: "alpn",
                reason: "protocol names are 1 to 255 bytes".into(),
            });
        }
        let stamps = stamps(&watched(options));
        let built = build(options, &alpn)?;
        let ends = first_after(&built.crl_expiries, unix_now());
        let resumption = Resumption::new(options.reuse_sessions, ends)?;
        Ok(Arc::new(ServerTls {
            options: options.clone(),
            alpn,
            current: RwLock::new(current(built, resumption)),
            seen: Mutex::new(stamps),
            sessions_end_at: AtomicI64::new(ends),
        }))
    }

    /// The acceptor for the next handshake, with the certificates current now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config())
    }

    /// The rustls configuration current now.
    pub fn config(&self) -> Arc<ServerConfig> {
        if unix_now() >= self.sessions_end_at.load(Ordering::Acquire) {
            self.end_sessions_past_crl_expiry();
        }
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .config
            .clone()
    }

    /// A CRL in use has expired: from now on the check refuses every client of its CA. The
    /// old keys and cache already resume nothing (their deadline passed); clients of other
    /// CAs get new ones, valid until the next CRL expiry.
    fn end_sessions_past_crl_expiry(&self) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let now = unix_now();
        if now < self.sessions_end_at.load(Ordering::Acquire) {
            return; // another handshake did it
        }
        let next = first_after(&current.crl_expiries, now);
        let resumption = match Resumption::new(self.options.reuse_sessions, next) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "no new session ticket keys: resumption off");
                Resumption::none()
            }
        };
        let mut config = (*current.config).clone();
        resumption.apply(&mut config);
        current.config = Arc::new(config);
        current.resumption = resumption;
        self.sessions_end_at.store(next, Ordering::Release);
        tracing::warn!(
            "a CRL of this listener has expired: its CA's clients are refused and sessions \
             from before are not resumed; publish a fresh CRL"
        );
    }

    /// Re-reads every file now. On any error the previous configuration stays in use and
    /// the error says which file and why. `Ok(true)` when a file's content changed (the new
    /// configuration is in use), `Ok(false)` when everything read the same. Blocking file
    /// reads and key parsing: call it from a blocking context (`spawn_blocking`).
    pub fn reload(&self) -> Result<bool, TlsLoadError> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        self.reload_locked(&mut seen)
    }

    /// Reloads with the reload lock held (`seen`): reloads run one at a time, so an older
    /// read of the files can never replace a newer one.
    fn reload_locked(&self, seen: &mut Vec<Stamp>) -> Result<bool, TlsLoadError> {
        *seen = stamps(&watched(&self.options));
        let built = build(&self.options, &self.alpn)?;
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.fingerprint == built.fingerprint {
            return Ok(false);
        }
        // Sessions resume across a certificate change, but not across a change of the CA
        // or CRLs: a resumed session skips the client-certificate check.
        // Nor past a CRL expiry: keys whose deadline passed are replaced, not kept.
        let ends = first_after(&built.crl_expiries, unix_now());
        let resumption = if current.trust == built.trust && !current.resumption.expired() {
            current.resumption.clone()
        } else {
            Resumption::new(self.options.reuse_sessions, ends)?
        };
        *current = self::current(built, resumption);
        self.sessions_end_at.store(ends, Ordering::Release);
        Ok(true)
    }

    /// Like [`reload`](Self::reload), but only when a watched file's modification time or
    /// size differs from the last look. A failed reload is not retried until the files
    /// change again (a file caught half-written changes again when the write finishes).
    pub fn reload_if_changed(&self) -> Result<bool, TlsLoadError> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if *seen == stamps(&watched(&self.options)) {
            return Ok(false);
        }
        self.reload_locked(&mut seen)
    }

    /// Most time from TCP accept to a finished handshake.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.options.handshake_timeout_ms)
    }

    /// How often to look for changed files; `None` when only SIGHUP and the API reload.
    pub fn reload_interval(&self) -> Option<Duration> {
        (self.options.reload_interval_ms > 0)
            .then(|| Duration::from_millis(self.options.reload_interval_ms))
    }

    /// The client-certificate policy.
    pub fn client_auth(&self) -> ClientAuth {
        self.options.client_auth()
    }

    /// When the default certificate in use expires (its `notAfter`, Unix seconds); `None`
    /// if it cannot be read.
    pub fn not_after_unix(&self) -> Option<i64> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        identity::not_after_unix(&current.leaf)
    }

    /// For the API: the default certificate's subject CN (`subject_cn`), its expiry
    /// (`not_after`, RFC 3339), when it was loaded (`loaded_at_ms`, unix ms), and the SNI
    /// names served with other certificates (`sni`).
    pub fn summary(&self) -> serde_json::Value {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        serde_json::json!({
            "subject_cn": identity::common_name(&current.leaf),
            "not_after": identity::not_after_rfc3339(&current.leaf),
            "loaded_at_ms": current.loaded_at_ms,
            "sni": self.options.sni.iter().map(|s| s.server_name.clone()).collect::<Vec<_>>(),
        })
    }
}

/// Every file the configuration is built from.
fn watched(options: &SslOptions) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        &options.certfile,
        &options.keyfile,
        &options.ocsp_response_file,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    if options.client_auth() != ClientAuth::None {
        files.extend(options.cacertfile.iter().cloned());
        files.extend(options.crlfile.iter().cloned());
    }
    for s in &options.sni {
        files.extend(s.certfile.iter().cloned());
        files.extend(s.keyfile.iter().cloned());
    }
    files
}

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files.iter().map(|f| stamp(f)).collect()
}

fn current(built: Built, resumption: Resumption) -> Current {
    let mut config = built.config;
    resumption.apply(&mut config);
    Current {
        config: Arc::new(config),
        resumption,
        fingerprint: built.fingerprint,
        trust: built.trust,
        leaf: built.leaf,
        crl_expiries: built.crl_expiries,
        loaded_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    }
}
