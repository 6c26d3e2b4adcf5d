//! TLS for client listeners (`ssl` and `wss`): the rustls server configuration built from
//! `ssl_options` ([`server::ServerTls`]), what a client certificate says about its holder
//! ([`identity`]), and a throw-away CA for tests and development ([`dev_ca`]).
//!
//! Always the `ring` provider, passed explicitly; the process-wide default provider is never
//! installed or consulted. Nothing here opens a socket: listeners take an acceptor from
//! [`ServerTls::acceptor`] per connection and run the handshake under their own timeout.

mod build;
mod cert_files;
mod client_verify;
mod crl_select;
pub mod dev_ca;
mod error;
pub mod identity;
mod key_file;
mod resumption;
pub mod server;
mod sni;
mod suites;

pub use server::{ServerTls, TlsLoadError};
