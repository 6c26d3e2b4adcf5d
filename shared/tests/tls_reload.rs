//! `ServerTls` over time and what it tells about clients: session resumption (also across a
//! reload), OCSP stapling, reloading certificates under live connections (a bad file keeps
//! the old ones), the API summary, and the identity values of a client certificate.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod tls_common;

use base64::Engine as _;
use meshmq_shared::config::tls::{PeerCertAs, SslOptions, Verify};
use meshmq_shared::tls::identity::{common_name, peer_cert_value, subject_dn};
use meshmq_shared::tls::{ServerTls, TlsLoadError};
use rustls::HandshakeKind;
use std::sync::Arc;
use tls_common::*;

const MQTT: &[&str] = &["mqtt"];

fn kind(s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Option<HandshakeKind> {
    s.get_ref().1.handshake_kind()
}

#[tokio::test]
async fn sessions_resume_and_survive_reload() {
    let pki = Pki::new("root");
    let opts = pki.server_options();
    let tls = ServerTls::load(&opts, MQTT).unwrap();
    let server = Server::start(tls.clone()).await;
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (config, _) = client_config(&ClientOpts {
            versions: &[version],
            ..ClientOpts::new(pki.ca.ca_pem())
        });
        let first = connect(server.addr, "localhost", config.clone())
            .await
            .unwrap();
        assert_eq!(kind(&first), Some(HandshakeKind::Full));
        let second = connect(server.addr, "localhost", config.clone())
            .await
            .unwrap();
        assert_eq!(kind(&second), Some(HandshakeKind::Resumed), "{version:?}");
    }
    // A new certificate: tickets issued before are still accepted.
    let (config, _) = client_config(&ClientOpts::new(pki.ca.ca_pem()));
    connect(server.addr, "localhost", config.clone())
        .await
        .unwrap();
    pki.ca
        .write_server(pki.dir.path(), "server", &["localhost"])
        .unwrap();
    assert!(tls.reload().unwrap());
    let after = connect(server.addr, "localhost", config).await.unwrap();
    assert_eq!(kind(&after), Some(HandshakeKind::Resumed));

    // reuse_sessions = false: every handshake is full.
    let off = SslOptions {
        reuse_sessions: false,
        ..opts
    };
    let server = Server::start(ServerTls::load(&off, MQTT).unwrap()).await;
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (config, _) = client_config(&ClientOpts {
            versions: &[version],
            ..ClientOpts::new(pki.ca.ca_pem())
        });
        connect(server.addr, "localhost", config.clone())
            .await
            .unwrap();
        let again = connect(server.addr, "localhost", config).await.unwrap();
        assert_eq!(kind(&again), Some(HandshakeKind::Full), "{version:?}");
    }
}

#[tokio::test]
async fn ocsp_response_is_stapled() {
    let pki = Pki::new("root");
    let staple = b"\x30\x03\x0a\x01\x00 pretend OCSP response".to_vec();
    std::fs::write(pki.path("ocsp.der"), &staple).unwrap();
    let opts = SslOptions {
        ocsp_response_file: Some(pki.path("ocsp.der")),
        ..pki.server_options()
    };
    let tls = ServerTls::load(&opts, MQTT).unwrap();
    let server = Server::start(tls.clone()).await;
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (config, stapled) = client_config(&ClientOpts {
            versions: &[version],
            ..ClientOpts::new(pki.ca.ca_pem())
        });
        connect(server.addr, "localhost", config).await.unwrap();
        assert_eq!(
            stapled.lock().unwrap().as_deref(),
            Some(&staple[..]),
            "{version:?}"
        );
    }
    // The staple is refreshed by a reload.
    std::fs::write(pki.path("ocsp.der"), b"newer").unwrap();
    assert!(tls.reload().unwrap());
    let (config, stapled) = client_config(&ClientOpts::new(pki.ca.ca_pem()));
    connect(server.addr, "localhost", config).await.unwrap();
    assert_eq!(stapled.lock().unwrap().as_deref(), Some(&b"newer"[..]));
}

#[tokio::test]
async fn reload_under_live_connections() {
    let pki = Pki::new("root");
    let opts = SslOptions {
        reload_interval_ms: 1000,
        ..pki.server_options()
    };
    let tls = ServerTls::load(&opts, MQTT).unwrap();
    let server = Server::start(tls.clone()).await;
    // A new client configuration per connection: a resumed session shows no certificate.
    let config = || client_config(&ClientOpts::new(pki.ca.ca_pem())).0;
    let certfile = opts.certfile.clone().unwrap();
    let keyfile = opts.keyfile.clone().unwrap();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();

    let mut old = connect(server.addr, "localhost", config()).await.unwrap();
    let first_leaf = served_leaf(&old);
    assert!(!tls.reload().unwrap(), "nothing changed yet");
    assert!(!tls.reload_if_changed().unwrap());

    // A new certificate and key: new handshakes get it, the old connection carries on.
    let (chain, key) = pki.ca.server(&["localhost"]).unwrap();
    put(&certfile, &chain);
    put(&keyfile, &key);
    assert!(tls.reload_if_changed().unwrap());
    let fresh = connect(server.addr, "localhost", config()).await.unwrap();
    assert_eq!(served_leaf(&fresh), leaf_der(&chain));
    assert_ne!(served_leaf(&fresh), first_leaf);
    echo(&mut old, b"still here").await.unwrap();

    // A broken certificate file: the error names it, the previous certificate stays.
    put(
        &certfile,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    let err = tls.reload().unwrap_err();
    assert!(
        err.to_string().contains(&certfile.display().to_string()),
        "{err}"
    );
    let s = connect(server.addr, "localhost", config()).await.unwrap();
    assert_eq!(served_leaf(&s), leaf_der(&chain));
    // The failed files are not retried until they change again.
    assert!(!tls.reload_if_changed().unwrap());

    // A key that does not belong to the certificate is refused the same way.
    put(&certfile, &chain);
    let (_, other_key) = pki.ca.server(&["localhost"]).unwrap();
    put(&keyfile, &other_key);
    let err = tls.reload_if_changed().unwrap_err();
    assert!(matches!(err, TlsLoadError::KeyMismatch { .. }), "{err:?}");
    // A missing file likewise.
    std::fs::remove_file(&keyfile).unwrap();
    assert!(matches!(tls.reload(), Err(TlsLoadError::Read { .. })));
    let s = connect(server.addr, "localhost", config()).await.unwrap();
    assert_eq!(served_leaf(&s), leaf_der(&chain));
    echo(&mut old, b"and still").await.unwrap();

    put(&keyfile, &key);
    assert!(tls.reload_if_changed().is_ok());
    assert_eq!(read(&certfile), chain);
    assert_eq!(
        tls.reload_interval(),
        Some(std::time::Duration::from_secs(1))
    );
}

#[tokio::test]
async fn summary_names_the_certificate() {
    let pki = Pki::new("root");
    let opts = pki.server_options();
    let tls = ServerTls::load(&opts, MQTT).unwrap();
    let s = tls.summary();
    assert_eq!(s["subject_cn"], "localhost");
    let not_after = s["not_after"].as_str().unwrap();
    assert!(
        not_after.ends_with('Z') && not_after.len() == 20,
        "{not_after}"
    );
    assert!(s["loaded_at_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(
        tls.client_auth(),
        meshmq_shared::config::tls::ClientAuth::None
    );
    assert!(!format!("{tls:?}").is_empty());
}

#[tokio::test]
async fn identity_values_from_client_certificate() {
    let pki = Pki::new("root");
    let tls = ServerTls::load(&pki.mtls_options(Verify::Required), MQTT).unwrap();
    let mut server = Server::start(tls).await;
    let (chain, key) = pki.ca.client("device, #42").unwrap();
    let (config, _) = client_config(&ClientOpts {
        cert: Some((&chain, &key)),
        ..ClientOpts::new(pki.ca.ca_pem())
    });
    connect(server.addr, "localhost", config).await.unwrap();
    let Seen::Ok { peer, .. } = server.next_seen().await else {
        panic!("handshake failed")
    };
    let der = &peer[0];
    assert_eq!(der, &leaf_der(&chain));
    assert_eq!(common_name(der).as_deref(), Some("device, #42"));
    assert_eq!(
        subject_dn(der).as_deref(),
        Some("CN=device\\, #42,O=meshmq dev")
    );
    assert_eq!(peer_cert_value(der, PeerCertAs::Cn), common_name(der));
    assert_eq!(peer_cert_value(der, PeerCertAs::Dn), subject_dn(der));
    assert_eq!(peer_cert_value(der, PeerCertAs::Disabled), None);
    let crt = peer_cert_value(der, PeerCertAs::Crt).unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(crt)
            .unwrap(),
        *der
    );
    let pem = peer_cert_value(der, PeerCertAs::Pem).unwrap();
    let first_pem: String = chain
        .split_inclusive('\n')
        .take_while(|l| !l.starts_with("-----END"))
        .chain(std::iter::once("-----END CERTIFICATE-----\n"))
        .collect();
    assert_eq!(pem.replace("\r\n", "\n"), first_pem.replace("\r\n", "\n"));
    // md5 checked against coreutils' md5sum of the same DER.
    let md5 = peer_cert_value(der, PeerCertAs::Md5).unwrap();
    std::fs::write(pki.path("leaf.der"), der).unwrap();
    match std::process::Command::new("md5sum")
        .arg(pki.path("leaf.der"))
        .output()
    {
        Ok(o) if o.status.success() => {
            let out = String::from_utf8(o.stdout).unwrap();
            assert_eq!(out.split_whitespace().next(), Some(md5.as_str()));
        }
        _ => eprintln!("md5sum not available: md5 checked for shape only"),
    }
    assert!(
        md5.len() == 32
            && md5
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
}

/// A listener with `opts` (mutual TLS), and a client of `pki`'s CA whose second connection
/// resumed the first one's session: (listener TLS, server, client chain, client config).
async fn resumed_mtls_client(
    pki: &Pki,
    opts: &SslOptions,
) -> (Arc<ServerTls>, Server, String, Arc<rustls::ClientConfig>) {
    let tls = ServerTls::load(opts, MQTT).unwrap();
    let server = Server::start(tls.clone()).await;
    let (chain, key) = pki.ca.client("device").unwrap();
    let (config, _) = client_config(&ClientOpts {
        cert: Some((&chain, &key)),
        ..ClientOpts::new(pki.ca.ca_pem())
    });
    connect(server.addr, "localhost", config.clone())
        .await
        .unwrap();
    let resumed = connect(server.addr, "localhost", config.clone())
        .await
        .unwrap();
    assert_eq!(kind(&resumed), Some(HandshakeKind::Resumed));
    (tls, server, chain, config)
}

#[tokio::test]
async fn new_crl_stops_resumption_of_revoked_client() {
    let pki = Pki::new("root");
    let crl = pki.ca.write_crl(pki.dir.path(), "root", &[]).unwrap();
    let opts = SslOptions {
        crlfile: vec![crl],
        ..pki.mtls_options(Verify::Required)
    };
    let (tls, server, chain, config) = resumed_mtls_client(&pki, &opts).await;

    pki.ca.write_crl(pki.dir.path(), "root", &[&chain]).unwrap();
    assert!(tls.reload().unwrap());
    // The old ticket is not honoured: a full handshake, and the revoked certificate fails.
    assert!(connect(server.addr, "localhost", config).await.is_err());
}

/// A CRL that passes its nextUpdate refuses its CA's clients, and no session from before
/// resumes past that (it would skip the check): not over a connection accepted before the
/// expiry whose ClientHello comes after it, not after a reload of the server certificate
/// alone, not later.
#[tokio::test]
async fn expired_crl_stops_resumption() {
    let pki = Pki::new("root");
    let next_update = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let crl = pki.dir.path().join("expiring.crl.pem");
    std::fs::write(&crl, pki.ca.crl_until(&[], next_update).unwrap()).unwrap();
    let opts = SslOptions {
        crlfile: vec![crl],
        ..pki.mtls_options(Verify::Required)
    };
    let (tls, server, _, config) = resumed_mtls_client(&pki, &opts).await;
    // Accepted now (the server takes its configuration at accept), handshake after expiry.
    let early = tokio::net::TcpStream::connect(server.addr).await.unwrap();

    // Wait (bounded) for the clock to pass nextUpdate.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while time::OffsetDateTime::now_utc().unix_timestamp() <= next_update.unix_timestamp() + 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "clock did not advance"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        connect_over(early, "localhost", config.clone())
            .await
            .is_err()
    );
    // A new server certificate only (the trust files unchanged), before any other handshake.
    pki.ca
        .write_server(pki.dir.path(), "server", &["localhost", "127.0.0.1"])
        .unwrap();
    assert!(tls.reload().unwrap());
    assert!(
        connect(server.addr, "localhost", config.clone())
            .await
            .is_err()
    );
    assert!(connect(server.addr, "localhost", config).await.is_err());
}

#[tokio::test]
async fn dev_tls_set_works_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let files =
        meshmq_shared::tls::dev_ca::write_dev_tls(dir.path(), &["localhost"], &["c1"]).unwrap();
    let opts = SslOptions {
        certfile: Some(files.server_cert.clone()),
        keyfile: Some(files.server_key.clone()),
        cacertfile: Some(files.ca.clone()),
        crlfile: vec![files.crl.clone()],
        verify: Verify::Required,
        ..SslOptions::default()
    };
    let mut server = Server::start(ServerTls::load(&opts, MQTT).unwrap()).await;
    let ca = std::fs::read_to_string(&files.ca).unwrap();
    let (_, cert, key) = &files.clients[0];
    let (chain, key) = (
        std::fs::read_to_string(cert).unwrap(),
        std::fs::read_to_string(key).unwrap(),
    );
    let (config, _) = client_config(&ClientOpts {
        cert: Some((&chain, &key)),
        ..ClientOpts::new(&ca)
    });
    connect(server.addr, "localhost", config).await.unwrap();
    assert!(matches!(server.next_seen().await, Seen::Ok { peer, .. } if peer.len() == 1));
    assert!(meshmq_shared::tls::dev_ca::write_dev_tls(dir.path(), &["x"], &["../evil"]).is_err());
}
