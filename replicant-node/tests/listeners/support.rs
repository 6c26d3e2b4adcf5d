//! What the listener tests share: a dev CA writing certificates into a temporary directory,
//! a broker with extra named listeners on 127.0.0.1:0, TLS client configurations (rustls
//! with the `ring` provider) for raw tokio-rustls clients and for rumqttc, PROXY headers,
//! the API and bans over HTTP, and a small HTTP authentication service that records what
//! it was asked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use meshmq_proto::tables::BannedAs;
use meshmq_shared::config::tls::{SslOptions, Verify};
use meshmq_shared::config::{
    AuthenticatorConfig, Config, HttpAuthnConfig, HttpBackend, HttpMethod, ListenerConfig,
    ListenerKind, PasswordBased,
};
use meshmq_shared::tls::dev_ca::DevCa;
use parking_lot::Mutex;
use replicant_node::{Broker, BrokerHandle};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::common::raw::RawClient;
use crate::common::{WAIT, http_call, test_config, wait_until};

/// A CA and a directory for its certificates.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: DevCa,
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        Pki {
            dir: tempfile::tempdir().expect("tempdir"),
            ca: DevCa::new(name).expect("CA"),
        }
    }

    /// `dir/name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the CA and a server certificate for `localhost` and 127.0.0.1 as
    /// `server.{pem,key}`; options with them and client certificates `verify`.
    pub fn options(&self, verify: Verify) -> SslOptions {
        let ca = self.ca.write_ca(self.dir.path()).expect("write CA");
        let (cert, key) = self
            .ca
            .write_server(self.dir.path(), "server", &["localhost", "127.0.0.1"])
            .expect("write server");
        SslOptions {
            certfile: Some(cert),
            keyfile: Some(key),
            cacertfile: Some(ca),
            verify,
            ..SslOptions::default()
        }
    }

    /// A client certificate for `cn`: (chain PEM, key PEM).
    pub fn client(&self, cn: &str) -> (String, String) {
        self.ca.client(cn).expect("client certificate")
    }
}

/// Adds the listener `kind:name` on 127.0.0.1:0 with `tweak` applied.
pub fn add_listener(
    config: &mut Config,
    kind: ListenerKind,
    name: &str,
    tweak: impl FnOnce(&mut ListenerConfig),
) {
    let mut l = ListenerConfig {
        bind: Some("127.0.0.1:0".parse().expect("addr")),
        ..ListenerConfig::default()
    };
    tweak(&mut l);
    let map = match kind {
        ListenerKind::Tcp => &mut config.listeners.tcp,
        ListenerKind::Ssl => &mut config.listeners.ssl,
        ListenerKind::Ws => &mut config.listeners.ws,
        ListenerKind::Wss => &mut config.listeners.wss,
    };
    map.insert(name.to_owned(), l);
}

/// Starts a broker on [`test_config`] with `tweak` applied.
pub async fn start(tweak: impl FnOnce(&mut Config)) -> BrokerHandle {
    let mut config = test_config();
    tweak(&mut config);
    Broker::builder(config)
        .start()
        .await
        .expect("broker starts")
}

/// Starts a broker with `ssl:default` on `options` (and `listener` applied to it).
pub async fn start_ssl(
    options: SslOptions,
    listener: impl FnOnce(&mut ListenerConfig),
    tweak: impl FnOnce(&mut Config),
) -> BrokerHandle {
    start(|c| {
        add_listener(c, ListenerKind::Ssl, "default", |l| {
            l.ssl_options = Some(options);
            listener(l);
        });
        tweak(c);
    })
    .await
}

/// The bound address of `id`.
pub fn addr(b: &BrokerHandle, id: &str) -> SocketAddr {
    b.listener_addr(id)
        .unwrap_or_else(|| panic!("listener {id} is not running"))
}

/// A rustls client configuration (ring) trusting `ca_pem`, with a client certificate if
/// given, offering `alpn`.
pub fn client_config(ca_pem: &str, cert: Option<(&str, &str)>, alpn: &[&str]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("root");
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match cert {
        Some((chain, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(chain.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("chain"),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `addr` for `name` (SNI and the name checked), within [`WAIT`].
pub async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tls_over(tcp, name, config).await
}

/// The TLS handshake over an open stream (after a PROXY header, say).
pub async fn tls_over(
    tcp: TcpStream,
    name: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    tokio::time::timeout(WAIT, TlsConnector::from(config).connect(name, tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_owned())?
        .map_err(|e| e.to_string())
}

/// A raw MQTT client over TLS to `addr` (nothing sent yet); panics if the handshake fails.
pub async fn raw_tls(addr: SocketAddr, config: Arc<ClientConfig>) -> RawClient {
    let tls = tls_connect(addr, "localhost", config)
        .await
        .expect("TLS handshake");
    RawClient::over(tls)
}

/// The common name of the certificate the server presented.
pub fn server_cn(s: &TlsStream<TcpStream>) -> Option<String> {
    let leaf = s.get_ref().1.peer_certificates()?.first()?.to_vec();
    meshmq_shared::tls::identity::common_name(&leaf)
}

/// rumqttc's transport over TLS with `config` (rustls, the ring provider it was built with).
pub fn rumqttc_tls(config: Arc<ClientConfig>) -> rumqttc::Transport {
    rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(config))
}

/// A PROXY v1 header naming `source`.
pub fn proxy_v1(source: SocketAddr, dest: SocketAddr) -> Vec<u8> {
    let fam = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {fam} {} {} {} {}\r\n",
        source.ip(),
        dest.ip(),
        source.port(),
        dest.port()
    )
    .into_bytes()
}

/// A PROXY v2 header naming `source`.
pub fn proxy_v2(source: SocketAddr, dest: SocketAddr) -> Vec<u8> {
    replicant_node::listeners::proxy_protocol::encode_v2(source, dest, &[])
}

/// `method path` on the broker's HTTP API with `key`; (status, JSON or Null).
pub async fn api(b: &BrokerHandle, method: &str, path: &str, key: Option<&str>) -> (u16, Value) {
    let addr = b.http_addr().expect("http listener");
    let (status, text) = http_call(addr, method, path, "", key).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Bans `who` as `r#as` through the API and waits until the node has it.
pub async fn ban(b: &BrokerHandle, r#as: &str, who: &str) {
    let addr = b.http_addr().expect("http listener");
    let body = json!({ "as": r#as, "who": who, "reason": "test" }).to_string();
    let (status, text) = http_call(addr, "POST", "/api/v5/banned", &body, None).await;
    assert_eq!(status, 200, "{text}");
    let kind = match r#as {
        "clientid" => BannedAs::Clientid,
        "username" => BannedAs::Username,
        "peerhost" => BannedAs::Peerhost,
        _ => BannedAs::PeerhostNet,
    };
    let applied = wait_until(WAIT, || b.core().read(|t| t.banned(kind, who).is_some())).await;
    assert!(applied, "ban {who} applied");
}

/// The value of a counter (0 when absent).
pub async fn counter(b: &BrokerHandle, name: &str, labels: &[(&str, &str)]) -> f64 {
    let addr = b.http_addr().expect("http listener");
    let (_, text) = crate::common::http_get(addr, "/metrics").await;
    crate::common::metric_sum(&text, name, labels).unwrap_or(0.0)
}

/// Waits until the counter is at least `at_least`.
pub async fn wait_counter(b: &BrokerHandle, name: &str, labels: &[(&str, &str)], at_least: f64) {
    let end = std::time::Instant::now() + WAIT;
    loop {
        let v = counter(b, name, labels).await;
        if v >= at_least {
            return;
        }
        assert!(
            std::time::Instant::now() < end,
            "{name}{labels:?} = {v}, wanted at least {at_least}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The requests an HTTP authentication service received (their fields).
pub type Asked = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

/// An HTTP service on 127.0.0.1:0 answering every POST to `/` with `{"result": "allow"}`
/// and recording each request's JSON fields.
pub async fn recording_service() -> (SocketAddr, Asked) {
    let asked: Asked = Arc::default();
    let handler = |axum::extract::State(asked): axum::extract::State<Asked>, body: String| async move {
        let fields: BTreeMap<String, String> = serde_json::from_str(&body).unwrap_or_default();
        asked.lock().push(fields);
        axum::Json(json!({"result": "allow"}))
    };
    let router = axum::Router::new()
        .route("/", axum::routing::post(handler))
        .with_state(asked.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, asked)
}

/// An HTTP authenticator that allows everyone and records what it was sent: `fields`
/// (name → template).
pub async fn recording_authn(fields: &[(&str, &str)]) -> (AuthenticatorConfig, Asked) {
    let (addr, asked) = recording_service().await;
    let config = AuthenticatorConfig::Http(HttpAuthnConfig {
        mechanism: PasswordBased::PasswordBased,
        backend: HttpBackend::Http,
        method: HttpMethod::Post,
        url: format!("http://{addr}/"),
        headers: BTreeMap::new(),
        body: fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        request_timeout: 5,
        pool_size: 4,
        enable: true,
    });
    (config, asked)
}

/// Connects over TLS and sends `connect`: the client and its CONNACK, or why there was
/// none (the handshake failed, or the server closed: a refused certificate shows in TLS 1.3
/// only after the client's handshake is done).
pub async fn connect_over_tls(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    connect: meshmq_shared::codec::Connect,
) -> Result<(RawClient, meshmq_shared::codec::ConnAck), String> {
    use meshmq_shared::codec::Packet;
    let tls = tls_connect(addr, "localhost", config).await?;
    let mut c = RawClient::over(tls);
    c.version = connect.protocol;
    if let Err(e) = c.try_send(&Packet::Connect(Box::new(connect))).await {
        return Err(e.to_string());
    }
    match c.recv().await {
        Ok(Packet::ConnAck(ack)) => Ok((c, ack)),
        other => Err(format!("no CONNACK: {other:?}")),
    }
}

/// [`connect_over_tls`] with a plain 5.0 CONNECT for `id`: the CONNACK's reason code.
pub async fn mqtt_over_tls(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    id: &str,
) -> Result<meshmq_shared::codec::ReasonCode, String> {
    use meshmq_shared::codec::ProtocolVersion;
    let connect = crate::common::raw::connect_packet(ProtocolVersion::V5, id);
    connect_over_tls(addr, config, connect)
        .await
        .map(|(_, ack)| ack.code)
}
