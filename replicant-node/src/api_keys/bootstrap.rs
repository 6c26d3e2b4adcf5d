//! API keys written at start: the lines of `api_key.bootstrap_file` (EMQX's format,
//! `api_key:api_secret[:administrator]`), and, for the standalone binary with no key of any
//! kind, one generated key written to `<node.data_dir>/default_api_key.conf`.
//!
//! Owns the file's parsing and the idempotent writes: a key id already in the cluster is
//! left as it is; a new one is created as `bootstrap_<api_key>` with `expect_version` 0, so
//! nodes starting together with the same file create it once. It never logs a secret nor a
//! line of the file; an error names the file and the line number only.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::mode;
use super::record::{self, KeyRecord, NS};
use crate::ctx::Ctx;
use crate::settings::{self, SettingsError};

/// Largest bootstrap file read.
const MAX_FILE: u64 = 1 << 20;
/// Name of the generated key's file in the data directory (EMQX's default file name).
pub const DEFAULT_FILE: &str = "default_api_key.conf";
/// Description of the keys written from a file.
const BOOTSTRAP_DESC: &str = "bootstrapped from a file";

/// A key read from a file (the secret is kept only until it is hashed).
pub struct BootKey {
    /// The public half.
    pub id: String,
    /// The secret.
    secret: String,
}

impl std::fmt::Debug for BootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why the bootstrap keys could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The file could not be read.
    #[error("cannot read the API key file {} (api_key.bootstrap_file): {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line is wrong (its content is never repeated: it holds a secret).
    #[error("API key file {} (api_key.bootstrap_file), line {line}: {reason}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// From 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The cluster refused or could not commit a key.
    #[error("cannot write API key {id} from {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The key id.
        id: String,
        /// Why.
        source: SettingsError,
    },
    /// A name `bootstrap_<id>` is held by a key with another id.
    #[error("the API key name bootstrap_{id} is taken by another key (from {})", path.display())]
    NameTaken {
        /// The file.
        path: PathBuf,
        /// The key id.
        id: String,
    },
    /// The generated key's file could not be written.
    #[error("cannot write the generated API key to {} (node.data_dir): {source}", path.display())]
    Generate {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Reads and checks `path`: every non-blank line is `api_key:api_secret` or
/// `api_key:api_secret:administrator`; at most [`record::MAX_KEYS`] keys.
pub fn read(path: &Path) -> Result<Vec<BootKey>, BootstrapError> {
    let read_err = |source| BootstrapError::Read {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > MAX_FILE {
        return Err(read_err(std::io::Error::other(format!(
            "larger than {MAX_FILE} bytes"
        ))));
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    let text =
        String::from_utf8(bytes).map_err(|_| read_err(std::io::Error::other("not UTF-8 text")))?;
    parse(&text).map_err(|(line, reason)| BootstrapError::Line {
        path: path.to_owned(),
        line,
        reason,
    })
}

/// Parses the file's text; an error is (line number from 1, reason).
pub fn parse(text: &str) -> Result<Vec<BootKey>, (usize, String)> {
    let mut keys: Vec<BootKey> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split(':');
        let id = fields.next().unwrap_or("");
        let Some(secret) = fields.next() else {
            return Err((n, "expected api_key:api_secret".into()));
        };
        match fields.next() {
            None | Some("administrator") => {}
            Some(_) => {
                return Err((
                    n,
                    "the only role accepted is `administrator` (every key is one)".into(),
                ));
            }
        }
        if fields.next().is_some() {
            return Err((n, "expected api_key:api_secret[:role]".into()));
        }
        record::check_key_id(id).map_err(|e| (n, e))?;
        record::check_secret(secret).map_err(|e| (n, e))?;
        if keys.iter().any(|k| k.id == id) {
            return Err((n, "this api_key is on an earlier line too".into()));
        }
        if keys.len() >= record::MAX_KEYS {
            return Err((n, format!("more than {} keys", record::MAX_KEYS)));
        }
        keys.push(BootKey {
            id: id.to_owned(),
            secret: secret.to_owned(),
        });
    }
    Ok(keys)
}

/// Creates every key of `keys` whose id the cluster does not hold yet; `path` names the
/// file in errors. Returns how many were created.
pub async fn apply(ctx: &Ctx, path: &Path, keys: &[BootKey]) -> Result<usize, BootstrapError> {
    let mut created = 0;
    for k in keys {
        if ctx.api_keys.by_id(ctx, &k.id).is_some() {
            continue;
        }
        let name = format!("bootstrap_{}", k.id);
        let rec = KeyRecord::new(&k.id, &k.secret, BOOTSTRAP_DESC.into(), true, 0);
        match settings::put(ctx, NS, &name, rec.encode(), Some(0)).await {
            Ok(_) => created += 1,
            // Another node wrote it first: done if it is this id.
            Err(SettingsError::Conflict { .. }) => {
                let same = settings::get(ctx, NS, &name)
                    .and_then(|(v, _)| KeyRecord::decode(&v))
                    .is_some_and(|r| r.key_id == k.id);
                if !same {
                    return Err(BootstrapError::NameTaken {
                        path: path.to_owned(),
                        id: k.id.clone(),
                    });
                }
            }
            Err(source) => {
                return Err(BootstrapError::Write {
                    path: path.to_owned(),
                    id: k.id.clone(),
                    source,
                });
            }
        }
    }
    info!(file = %path.display(), created, total = keys.len(), "API keys from the bootstrap file");
    Ok(created)
}

/// The standalone binary's first start: with no key of any kind, generates one, stores it
/// and writes `api_key:api_secret` to `<data_dir>/default_api_key.conf` (mode 0600, through
/// a temporary file and a rename), records in the settings table that the cluster's default
/// key was generated (`super::mode::DEFAULT_GENERATED`), then logs the file's path.
///
/// Only once per cluster: when the file exists, its key is checked against the table and
/// only logged about (a key an operator deleted, disabled or let expire is never made
/// again); when the record exists and the file does not, nothing is generated.
pub async fn default_key(ctx: &Ctx) -> Result<(), BootstrapError> {
    let path = ctx.config.node.data_dir.join(DEFAULT_FILE);
    if path.exists() {
        if file_key_valid(ctx, &path) {
            info!(file = %path.display(), "the HTTP API's generated key is in this file");
        } else {
            warn!(
                file = %path.display(),
                "the generated API key in this file is no longer valid (deleted, disabled or \
                 expired through the API); it is not generated again"
            );
        }
        return mark_generated(ctx, &path).await;
    }
    if settings::get(ctx, mode::NS_MODE, mode::DEFAULT_GENERATED).is_some() {
        info!(
            file = %path.display(),
            "this cluster's default API key was generated before and its file is gone: no \
             other is generated (make keys through the API, or set api_key.bootstrap_file)"
        );
        return Ok(());
    }
    if super::ApiKeys::required(ctx) {
        return Ok(());
    }
    let (id, secret) = record::generate();
    let gen_err = |source| BootstrapError::Generate {
        path: path.clone(),
        source,
    };
    // The file first: a key is never stored that nobody can read back.
    write_private(&path, &format!("{id}:{secret}\n")).map_err(gen_err)?;
    let name = format!("bootstrap_{id}");
    let rec = KeyRecord::new(&id, &secret, "generated at first start".into(), true, 0);
    if let Err(source) = settings::put(ctx, NS, &name, rec.encode(), Some(0)).await {
        let _ = std::fs::remove_file(&path);
        return Err(BootstrapError::Write { path, id, source });
    }
    mark_generated(ctx, &path).await?;
    warn!(
        file = %path.display(),
        "generated an API key for the HTTP API (every operator route now needs it): \
         Authorization: Basic base64 of the line in this file"
    );
    Ok(())
}

/// Whether the key in the generated file is a valid key of the cluster now.
fn file_key_valid(ctx: &Ctx, path: &Path) -> bool {
    let Ok(keys) = read(path) else {
        return false;
    };
    let now = crate::banned::now_s();
    keys.first().is_some_and(|k| {
        ctx.api_keys
            .by_id(ctx, &k.id)
            .is_some_and(|r| r.verify(&k.secret) && r.enable && !r.expired(now))
    })
}

/// Records that the cluster's default key was generated (once; later calls find it).
async fn mark_generated(ctx: &Ctx, path: &Path) -> Result<(), BootstrapError> {
    if settings::get(ctx, mode::NS_MODE, mode::DEFAULT_GENERATED).is_some() {
        return Ok(());
    }
    let at = crate::banned::now_s().to_string().into_bytes();
    match settings::put(ctx, mode::NS_MODE, mode::DEFAULT_GENERATED, at, Some(0)).await {
        Ok(_) | Err(SettingsError::Conflict { .. }) => Ok(()),
        Err(source) => Err(BootstrapError::Write {
            path: path.to_owned(),
            id: mode::DEFAULT_GENERATED.into(),
            source,
        }),
    }
}

/// Writes `text` to `path` (which must not exist) readable by its owner only: into a new
/// temporary file next to it (mode 0600 from its creation), synced, then renamed, so the
/// file is never seen half-written or with wider permissions.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let tmp = dir.join(format!(".{name}.tmp"));
    // A temporary file left by a crash holds a key that was never stored.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let written = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_checked_and_errors_name_the_line_only() {
        let ok =
            parse("k1:0123456789abcdef\n\n k2:0123456789abcdeg:administrator \n").expect("parses");
        assert_eq!(
            ok.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            ["k1", "k2"]
        );
        let secret = "s3cr3t-s3cr3t-s3cr3t";
        for (text, line, want) in [
            (format!("k1:{secret}\nk2\n"), 2, "api_key:api_secret"),
            (format!("k1:{secret}:viewer\n"), 1, "administrator"),
            ("k1:short\n".into(), 1, "16"),
            (format!("k 1:{secret}\n"), 1, "api_key"),
            (format!("k1:{secret}\nk1:{secret}x\n"), 2, "earlier line"),
            (format!("k1:{secret}:administrator:x\n"), 1, "role"),
        ] {
            let (n, reason) = parse(&text).expect_err(&text);
            assert_eq!(n, line, "{text}");
            assert!(reason.contains(want), "{text}: {reason}");
            assert!(!reason.contains(secret), "{reason}");
        }
    }
}
