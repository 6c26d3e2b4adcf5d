//! What the TLS server tests share: a dev CA writing files into a temporary directory, a
//! loopback server that takes a fresh acceptor from a `ServerTls` per connection, answers
//! `hi` after the handshake and echoes, and a real tokio-rustls client.

#![allow(clippy::unwrap_used, dead_code)] // tests may unwrap; not every test uses every helper

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshmq_shared::config::tls::{SslOptions, Verify};
use meshmq_shared::tls::ServerTls;
use meshmq_shared::tls::dev_ca::DevCa;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Bound on every network wait of these tests.
pub const T: Duration = Duration::from_secs(5);

/// A CA and a directory to write certificates into.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: DevCa,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        Pki {
            dir: tempfile::tempdir().unwrap(),
            ca: DevCa::new(name).unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the CA, a `localhost` server certificate as `server.{pem,key}`, and returns
    /// options with those (verify none).
    pub fn server_options(&self) -> SslOptions {
        let ca = self.ca.write_ca(self.dir.path()).unwrap();
        let (cert, key) = self
            .ca
            .write_server(self.dir.path(), "server", &["localhost", "127.0.0.1"])
            .unwrap();
        SslOptions {
            certfile: Some(cert),
            keyfile: Some(key),
            cacertfile: Some(ca),
            ..SslOptions::default()
        }
    }

    /// Like [`server_options`](Self::server_options) with client certificates `verify`.
    pub fn mtls_options(&self, verify: Verify) -> SslOptions {
        SslOptions {
            verify,
            ..self.server_options()
        }
    }
}

/// What the server saw of one handshake.
#[derive(Debug)]
pub enum Seen {
    /// Finished: the client's certificates (DER), the ALPN protocol, the SNI name.
    Ok {
        peer: Vec<Vec<u8>>,
        alpn: Option<Vec<u8>>,
        sni: Option<String>,
    },
    /// Failed, with the error.
    Failed(String),
}

/// A loopback server: every accepted socket gets `tls.acceptor()` at accept time.
pub struct Server {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl Server {
    pub async fn start(tls: Arc<ServerTls>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = tls.acceptor();
                let timeout = tls.handshake_timeout();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut stream = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            let _ = tx.send(Seen::Failed(e.to_string()));
                            return;
                        }
                        Err(_) => {
                            let _ = tx.send(Seen::Failed("handshake timeout".into()));
                            return;
                        }
                    };
                    let conn = stream.get_ref().1;
                    let _ = tx.send(Seen::Ok {
                        peer: conn
                            .peer_certificates()
                            .map(|c| c.iter().map(|c| c.to_vec()).collect())
                            .unwrap_or_default(),
                        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
                        sni: conn.server_name().map(str::to_owned),
                    });
                    if stream.write_all(b"hi").await.is_err() {
                        return;
                    }
                    let mut buf = [0u8; 256];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Server { addr, seen }
    }

    /// What the server saw of the next handshake.
    pub async fn next_seen(&mut self) -> Seen {
        tokio::time::timeout(T, self.seen.recv())
            .await
            .expect("server saw no handshake in time")
            .expect("server gone")
    }
}

/// The OCSP response the client was given, captured by its verifier.
pub type Stapled = Arc<Mutex<Option<Vec<u8>>>>;

/// A client's settings.
pub struct ClientOpts<'a> {
    /// Trust roots (PEM).
    pub ca_pem: &'a str,
    /// Client certificate chain and key (PEM).
    pub cert: Option<(&'a str, &'a str)>,
    pub versions: &'a [&'static rustls::SupportedProtocolVersion],
    pub alpn: &'a [&'a str],
}

impl<'a> ClientOpts<'a> {
    pub fn new(ca_pem: &'a str) -> Self {
        ClientOpts {
            ca_pem,
            cert: None,
            versions: rustls::DEFAULT_VERSIONS,
            alpn: &[],
        }
    }
}

/// A client configuration (ring provider) and where its verifier records OCSP staples.
pub fn client_config(o: &ClientOpts<'_>) -> (Arc<ClientConfig>, Stapled) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(o.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let stapled: Stapled = Arc::default();
    let verifier = Arc::new(Recording {
        inner: WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap(),
        stapled: stapled.clone(),
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(o.versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match o.cert {
        Some((chain, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(chain.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = o.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    (Arc::new(config), stapled)
}

/// Connects, handshakes and reads the server's `hi` (in TLS 1.3 a refused client
/// certificate shows only then). Errors as text.
pub async fn connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = tokio::time::timeout(T, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    connect_over(tcp, name, config).await
}

/// [`connect`] over a TCP connection opened earlier.
pub async fn connect_over(
    tcp: TcpStream,
    name: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, String> {
    let work = async {
        let name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
        let mut stream = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut hi = [0u8; 2];
        stream
            .read_exact(&mut hi)
            .await
            .map_err(|e| e.to_string())?;
        if &hi != b"hi" {
            return Err(format!("unexpected greeting {hi:?}"));
        }
        Ok(stream)
    };
    tokio::time::timeout(T, work)
        .await
        .map_err(|_| "client timed out".to_owned())?
}

/// Sends `msg` and expects it echoed.
pub async fn echo(stream: &mut TlsStream<TcpStream>, msg: &[u8]) -> Result<(), String> {
    let work = async {
        stream.write_all(msg).await.map_err(|e| e.to_string())?;
        let mut back = vec![0u8; msg.len()];
        stream
            .read_exact(&mut back)
            .await
            .map_err(|e| e.to_string())?;
        if back != msg {
            return Err("echo differs".into());
        }
        Ok(())
    };
    tokio::time::timeout(T, work)
        .await
        .map_err(|_| "echo timed out".to_owned())?
}

/// The leaf certificate the server presented on `stream`.
pub fn served_leaf(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// The DER of the first certificate of a PEM chain.
pub fn leaf_der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// Writes `text` to `path`, replacing it.
pub fn put(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// A webpki server verifier that also records the stapled OCSP response.
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    stapled: Stapled,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.stapled.lock().unwrap() = Some(ocsp_response.to_vec());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
