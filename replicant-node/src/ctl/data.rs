//! `ctl data export [--file F]` and `ctl data import F`: the cluster's backup document
//! (`GET /api/v5/data/export`, `POST /api/v5/data/import`, docs/api.md).
//!
//! Owns only these two commands; they may take minutes on a large cluster, so they have
//! their own deadline ([`DATA_TIMEOUT`]) and bound ([`MAX_DOCUMENT`], the import's limit:
//! a larger export could not be imported again).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;

use super::{To, call_within, expect_ok};

/// Deadline of a data export or import (a large document takes a while).
const DATA_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest document read or sent (the import's body limit).
const MAX_DOCUMENT: usize = 512 * 1024 * 1024;

/// `ctl data ...`
#[derive(Debug, Clone, Subcommand)]
pub enum Data {
    /// Export users, rules, bans, retained messages and settings (to stdout, or a file).
    Export {
        /// Write the document to this file instead of printing it.
        #[arg(long, value_name = "F")]
        file: Option<PathBuf>,
    },
    /// Import a document made by `data export` (upsert).
    Import {
        /// The document.
        file: PathBuf,
    },
}

/// Runs `d`: the export (printed, or a line saying where it was written) or the import's
/// answer.
pub(super) async fn run(to: To<'_>, d: Data) -> anyhow::Result<String> {
    match d {
        Data::Export { file } => {
            let call = ("GET", "/api/v5/data/export", Vec::new());
            let body = expect_ok(call_within(to, call, DATA_TIMEOUT, MAX_DOCUMENT).await?)?;
            let Some(file) = file else { return Ok(body) };
            std::fs::write(&file, body.as_bytes())
                .with_context(|| format!("writing {}", file.display()))?;
            Ok(format!(
                "exported {} bytes to {}",
                body.len(),
                file.display()
            ))
        }
        Data::Import { file } => {
            let doc =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let call = ("POST", "/api/v5/data/import", doc);
            expect_ok(call_within(to, call, DATA_TIMEOUT, MAX_DOCUMENT).await?)
        }
    }
}
