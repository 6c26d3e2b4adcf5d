//! The transport flags shared by the client subcommands and `fanout`: `--tls` with its
//! trust, client certificate, SNI, ALPN and session-resumption flags, `--ws`, and
//! `--ifaddr`; and their validation into a [`Transport`].
//!
//! It reads the TLS files (in [`TransportArgs::transport`]) but never opens a socket.

use std::path::PathBuf;

use anyhow::ensure;
use clap::Args;

use crate::transport::tls::{TlsClient, TlsOptions};
use crate::transport::{LocalAddrs, Transport};

/// How clients reach the broker.
#[derive(Debug, Clone, Args)]
pub struct TransportArgs {
    /// Connect over TLS.
    #[arg(long)]
    pub tls: bool,
    /// CA certificates (PEM) to trust with --tls (default: the system bundle).
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// Client certificate (PEM) with --tls.
    #[arg(long, value_name = "FILE")]
    pub certfile: Option<PathBuf>,
    /// Client private key (PEM) with --tls.
    #[arg(long, value_name = "FILE")]
    pub keyfile: Option<PathBuf>,
    /// With --tls, accept any server certificate.
    #[arg(long)]
    pub insecure: bool,
    /// With --tls, the server name sent (SNI) and checked against the certificate
    /// (default: the host).
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// With --tls, ALPN protocols to offer, comma-separated (e.g. `mqtt`).
    #[arg(long, value_name = "PROTO,...", value_delimiter = ',')]
    pub alpn: Vec<String>,
    /// With --tls, resume TLS sessions (tickets / session ids) from a store per broker
    /// address shared by this process's clients; the report counts resumed handshakes.
    #[arg(long)]
    pub tls_resume: bool,
    /// MQTT over WebSocket (wss with --tls).
    #[arg(long)]
    pub ws: bool,
    /// WebSocket path.
    #[arg(long, default_value = "/mqtt", value_name = "PATH")]
    pub ws_path: String,
    /// Local addresses to connect from, comma-separated, taken in turn (emqtt-bench's
    /// --ifaddr). Each one has its own ephemeral ports: past ~14 000 connections to one
    /// broker port from one address, the kernel's port search dominates the run (on
    /// loopback use 127.0.0.1,127.0.0.2,...).
    #[arg(long, value_name = "IP,...", value_delimiter = ',')]
    pub ifaddr: Vec<std::net::IpAddr>,
}

impl TransportArgs {
    /// The transport of every client (TLS files are read here).
    pub fn transport(&self) -> anyhow::Result<Transport> {
        let tls_flags = self.cafile.is_some()
            || self.certfile.is_some()
            || self.keyfile.is_some()
            || self.insecure
            || self.sni.is_some()
            || !self.alpn.is_empty()
            || self.tls_resume;
        ensure!(
            self.tls || !tls_flags,
            "--cafile/--certfile/--keyfile/--insecure/--sni/--alpn/--tls-resume need --tls"
        );
        let tls = if self.tls {
            Some(TlsClient::new(&TlsOptions {
                cafile: self.cafile.clone(),
                certfile: self.certfile.clone(),
                keyfile: self.keyfile.clone(),
                insecure: self.insecure,
                sni: self.sni.clone(),
                alpn: self.alpn.clone(),
                resume: self.tls_resume,
            })?)
        } else {
            None
        };
        ensure!(self.ws_path.starts_with('/'), "--ws-path must start with /");
        Ok(Transport {
            tls,
            ws_path: self.ws.then(|| self.ws_path.clone()),
            local: LocalAddrs::new(&self.ifaddr),
        })
    }
}
