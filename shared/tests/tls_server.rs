//! `ServerTls` against real tokio-rustls clients on loopback: server authentication,
//! client certificates (required, optional, revoked, chain depth), SNI, encrypted keys,
//! versions, cipher suites and ALPN.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod tls_common;

use meshmq_shared::config::tls::{SniCertificate, SslOptions, Verify};
use meshmq_shared::tls::dev_ca::{DevCa, encrypt_key_pem};
use meshmq_shared::tls::{ServerTls, TlsLoadError};
use tls_common::*;

const MQTT: &[&str] = &["mqtt"];

#[tokio::test]
async fn server_authentication() {
    let pki = Pki::new("root");
    let opts = pki.server_options();
    let mut server = Server::start(ServerTls::load(&opts, MQTT).unwrap()).await;
    let (config, _) = client_config(&ClientOpts::new(pki.ca.ca_pem()));
    let mut stream = connect(server.addr, "localhost", config.clone())
        .await
        .unwrap();
    echo(&mut stream, b"ping").await.unwrap();
    let served = std::fs::read_to_string(opts.certfile.as_ref().unwrap()).unwrap();
    assert_eq!(served_leaf(&stream), leaf_der(&served));
    match server.next_seen().await {
        Seen::Ok { peer, sni, .. } => {
            assert!(peer.is_empty(), "no client certificate was asked for");
            assert_eq!(sni.as_deref(), Some("localhost"));
        }
        other => panic!("{other:?}"),
    }
    // A client that trusts another CA refuses the server.
    let other = DevCa::new("other").unwrap();
    let (config, _) = client_config(&ClientOpts::new(other.ca_pem()));
    let err = connect(server.addr, "localhost", config).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn mutual_tls_required() {
    let pki = Pki::new("root");
    let tls = ServerTls::load(&pki.mtls_options(Verify::Required), MQTT).unwrap();
    let mut server = Server::start(tls).await;
    let ca = pki.ca.ca_pem();

    let (config, _) = client_config(&ClientOpts::new(ca));
    assert!(connect(server.addr, "localhost", config).await.is_err());
    assert!(matches!(server.next_seen().await, Seen::Failed(_)));

    let other = DevCa::new("other").unwrap();
    let (chain, key) = other.client("mallory").unwrap();
    let (config, _) = client_config(&ClientOpts {
        cert: Some((&chain, &key)),
        ..ClientOpts::new(ca)
    });
    assert!(connect(server.addr, "localhost", config).await.is_err());
    assert!(matches!(server.next_seen().await, Seen::Failed(e) if e.contains("UnknownIssuer")));

    let (chain, key) = pki.ca.client("alice").unwrap();
    let (config, _) = client_config(&ClientOpts {
        cert: Some((&chain, &key)),
        ..ClientOpts::new(ca)
    });
    let mut stream = connect(server.addr, "localhost", config).await.unwrap();
    echo(&mut stream, b"ping").await.unwrap();
    match server.next_seen().await {
        Seen::Ok { peer, .. } => {
            assert_eq!(peer.len(), 1);
            assert_eq!(peer[0], leaf_der(&chain));
            let cn = meshmq_shared::tls::identity::common_name(&peer[0]);
            assert_eq!(cn.as_deref(), Some("alice"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn mutual_tls_optional() {
    let pki = Pki::new("root");
    let opts = pki.mtls_options(Verify::Optional);
    let mut server = Server::start(ServerTls::load(&opts, MQTT).unwrap()).await;
    let ca = pki.ca.ca_pem();

    let (config, _) = client_config(&ClientOpts::new(ca));
    connect(server.addr, "localhost", config).await.unwrap();
    assert!(matches!(server.next_seen().await, Seen::Ok { peer, .. } if peer.is_empty()));

    let other = DevCa::new("other").unwrap();
    let (chain, key) = other.client("mallory").unwrap();
    let (config, _) = client_config(&ClientOpts {
        cert: Some((&chain, &key)),
        ..ClientOpts::new(ca)
    });
    assert!(connect(server.addr, "localhost", config).await.is_err());
    assert!(matches!(server.next_seen().await, Seen::Failed(_)));

    // fail_if_no_peer_cert turns optional into required.
    let strict = SslOptions {
        fail_if_no_peer_cert: true,
        ..opts
    };
    let server = Server::start(ServerTls::load(&strict, MQTT).unwrap()).await;
    let (config, _) = client_config(&ClientOpts::new(ca));
    assert!(connect(server.addr, "localhost", config).await.is_err());
}

#[tokio::test]
async fn revoked_certificate_refused() {
    let pki = Pki::new("root");
    let (bad_chain, bad_key) = pki.ca.client("revoked").unwrap();
    let (good_chain, good_key) = pki.ca.client("good").unwrap();
    let crl = pki
        .ca
        .write_crl(pki.dir.path(), "root", &[&bad_chain])
        .unwrap();
    let opts = SslOptions {
        crlfile: vec![crl],
        ..pki.mtls_options(Verify::Required)
    };
    let mut server = Server::start(ServerTls::load(&opts, MQTT).unwrap()).await;
    let ca = pki.ca.ca_pem();

    let (config, _) = client_config(&ClientOpts {
        cert: Some((&bad_chain, &bad_key)),
        ..ClientOpts::new(ca)
    });
    assert!(connect(server.addr, "localhost", config).await.is_err());
    assert!(matches!(server.next_seen().await, Seen::Failed(e) if e.contains("Revoked")));

    let (config, _) = client_config(&ClientOpts {
        cert: Some((&good_chain, &good_key)),
        ..ClientOpts::new(ca)
    });
    connect(server.addr, "localhost", config.clone())
        .await
        .unwrap();
    assert!(matches!(server.next_seen().await, Seen::Ok { .. }));

    // An expired CRL (nextUpdate passed) refuses every client of its CA, as OpenSSL does.
    let stale = pki
        .ca
        .crl_until(
            &[],
            time::OffsetDateTime::now_utc() - time::Duration::hours(1),
        )
        .unwrap();
    std::fs::write(&opts.crlfile[0], stale).unwrap();
    let mut server = Server::start(ServerTls::load(&opts, MQTT).unwrap()).await;
    assert!(connect(server.addr, "localhost", config).await.is_err());
    let seen = server.next_seen().await;
    assert!(
        matches!(&seen, Seen::Failed(e) if e.to_lowercase().contains("expired")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn chain_depth_limits_intermediates() {
    let pki = Pki::new("root");
    let sub = pki.ca.intermediate("issuing").unwrap();
    let (chain, key) = sub.client("deep").unwrap();
    let ca = pki.ca.ca_pem();
    for (depth, ok) in [(0, false), (1, true)] {
        let opts = SslOptions {
            depth,
            ..pki.mtls_options(Verify::Required)
        };
        let mut server = Server::start(ServerTls::load(&opts, MQTT).unwrap()).await;
        let (config, _) = client_config(&ClientOpts {
            cert: Some((&chain, &key)),
            ..ClientOpts::new(ca)
        });
        let result = connect(server.addr, "localhost", config).await;
        assert_eq!(result.is_ok(), ok, "depth {depth}: {:?}", result.err());
        match server.next_seen().await {
            Seen::Ok { peer, .. } => assert_eq!(peer.len(), 2),
            Seen::Failed(e) => assert!(!ok && e.contains("ChainTooLong"), "{e}"),
        }
    }
}

#[tokio::test]
async fn sni_picks_the_certificate() {
    let pki = Pki::new("root");
    let dir = pki.dir.path();
    let (a_cert, a_key) = pki.ca.write_server(dir, "a", &["a.example.com"]).unwrap();
    let (w_cert, w_key) = pki.ca.write_server(dir, "w", &["*.wild.example"]).unwrap();
    let entry = |name: &str, c: &std::path::Path, k: &std::path::Path| SniCertificate {
        server_name: name.into(),
        certfile: Some(c.to_owned()),
        keyfile: Some(k.to_owned()),
        password: None,
    };
    let opts = SslOptions {
        sni: vec![
            entry("A.Example.com", &a_cert, &a_key),
            entry("*.wild.example", &w_cert, &w_key),
        ],
        ..pki.server_options()
    };
    let server = Server::start(ServerTls::load(&opts, MQTT).unwrap()).await;
    let (config, _) = client_config(&ClientOpts::new(pki.ca.ca_pem()));
    let pem = |p: &std::path::Path| leaf_der(&std::fs::read_to_string(p).unwrap());
    let default = pem(opts.certfile.as_ref().unwrap());

    let s = connect(server.addr, "a.example.com", config.clone())
        .await
        .unwrap();
    assert_eq!(served_leaf(&s), pem(&a_cert));
    let s = connect(server.addr, "x.wild.example", config.clone())
        .await
        .unwrap();
    assert_eq!(served_leaf(&s), pem(&w_cert));
    let s = connect(server.addr, "localhost", config.clone())
        .await
        .unwrap();
    assert_eq!(served_leaf(&s), default);
    // Two labels do not match `*.wild.example`: the default is served, and the client
    // refuses it for that name.
    let err = connect(server.addr, "x.y.wild.example", config)
        .await
        .unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn encrypted_key_needs_the_password() {
    let pki = Pki::new("root");
    let (chain, key) = pki.ca.server(&["localhost"]).unwrap();
    put(&pki.path("enc.pem"), &chain);
    put(
        &pki.path("enc.key"),
        &encrypt_key_pem(&key, "s3cret-pw").unwrap(),
    );
    let opts = SslOptions {
        certfile: Some(pki.path("enc.pem")),
        keyfile: Some(pki.path("enc.key")),
        password: Some("s3cret-pw".into()),
        ..SslOptions::default()
    };
    let server = Server::start(ServerTls::load(&opts, MQTT).unwrap()).await;
    let (config, _) = client_config(&ClientOpts::new(pki.ca.ca_pem()));
    connect(server.addr, "localhost", config).await.unwrap();

    let wrong = SslOptions {
        password: Some("guess-pw".into()),
        ..opts.clone()
    };
    let err = ServerTls::load(&wrong, MQTT).unwrap_err();
    assert!(matches!(err, TlsLoadError::WrongPassword { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("enc.key") && text.contains("wrong password"),
        "{text}"
    );
    assert!(!text.contains("guess-pw") && !format!("{err:?}").contains("guess-pw"));

    let none = SslOptions {
        password: None,
        ..opts.clone()
    };
    let err = ServerTls::load(&none, MQTT).unwrap_err();
    assert!(
        matches!(err, TlsLoadError::PasswordMissing { .. }),
        "{err:?}"
    );

    put(
        &pki.path("legacy.key"),
        "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END EC PRIVATE KEY-----\n",
    );
    let legacy = SslOptions {
        keyfile: Some(pki.path("legacy.key")),
        ..opts.clone()
    };
    let err = ServerTls::load(&legacy, MQTT).unwrap_err().to_string();
    assert!(err.contains("openssl pkcs8 -topk8"), "{err}");

    // A key encrypted by OpenSSL itself, when the machine has it.
    put(&pki.path("plain.key"), &key);
    let out = std::process::Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:ossl-pw",
            "-in",
        ])
        .arg(pki.path("plain.key"))
        .arg("-out")
        .arg(pki.path("ossl.key"))
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let ossl = SslOptions {
                keyfile: Some(pki.path("ossl.key")),
                password: Some("ossl-pw".into()),
                ..opts
            };
            ServerTls::load(&ossl, MQTT).unwrap();
        }
        _ => eprintln!("openssl not available: OpenSSL-encrypted key not tried"),
    }
}

#[tokio::test]
async fn key_must_match_certificate() {
    let pki = Pki::new("root");
    let (_, other_key) = pki
        .ca
        .write_server(pki.dir.path(), "other", &["localhost"])
        .unwrap();
    let opts = SslOptions {
        keyfile: Some(other_key),
        ..pki.server_options()
    };
    let err = ServerTls::load(&opts, MQTT).unwrap_err();
    assert!(matches!(err, TlsLoadError::KeyMismatch { .. }), "{err:?}");
}

#[tokio::test]
async fn versions_restrict() {
    let pki = Pki::new("root");
    let opts = SslOptions {
        versions: vec!["tlsv1.2".into()],
        ..pki.server_options()
    };
    let server = Server::start(ServerTls::load(&opts, MQTT).unwrap()).await;
    let ca = pki.ca.ca_pem();
    let (only13, _) = client_config(&ClientOpts {
        versions: &[&rustls::version::TLS13],
        ..ClientOpts::new(ca)
    });
    let err = connect(server.addr, "localhost", only13).await.unwrap_err();
    assert!(err.to_lowercase().contains("version"), "{err}");
    let (only12, _) = client_config(&ClientOpts {
        versions: &[&rustls::version::TLS12],
        ..ClientOpts::new(ca)
    });
    let s = connect(server.addr, "localhost", only12).await.unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

#[tokio::test]
async fn cipher_list_is_applied() {
    let pki = Pki::new("root");
    let opts = SslOptions {
        ciphers: vec![
            "TLS_AES_256_GCM_SHA384".into(),
            "ECDHE-ECDSA-CHACHA20-POLY1305".into(),
        ],
        ..pki.server_options()
    };
    let server = Server::start(ServerTls::load(&opts, MQTT).unwrap()).await;
    let ca = pki.ca.ca_pem();
    for (version, suite) in [
        (
            &rustls::version::TLS13,
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
        ),
        (
            &rustls::version::TLS12,
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ] {
        let (config, _) = client_config(&ClientOpts {
            versions: &[version],
            ..ClientOpts::new(ca)
        });
        let s = connect(server.addr, "localhost", config).await.unwrap();
        let negotiated = s.get_ref().1.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(negotiated, suite);
    }
    let bad = SslOptions {
        ciphers: vec!["DES-CBC3-SHA".into()],
        ..opts
    };
    let err = ServerTls::load(&bad, MQTT).unwrap_err().to_string();
    assert!(
        err.contains("DES-CBC3-SHA") && err.contains("ECDHE-RSA-AES128-GCM-SHA256"),
        "{err}"
    );
}

/// The default order (AES-128-GCM first) and `honor_cipher_order`: the client (rustls's
/// default provider) lists AES-256-GCM first.
#[tokio::test]
async fn server_cipher_order_is_honoured_by_default() {
    let pki = Pki::new("root");
    let ca = pki.ca.ca_pem();
    for (honor, want) in [
        (true, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
        (false, rustls::CipherSuite::TLS13_AES_256_GCM_SHA384),
    ] {
        let opts = SslOptions {
            honor_cipher_order: honor,
            ..pki.server_options()
        };
        let server = Server::start(ServerTls::load(&opts, MQTT).unwrap()).await;
        let (config, _) = client_config(&ClientOpts::new(ca));
        let s = connect(server.addr, "localhost", config).await.unwrap();
        let negotiated = s.get_ref().1.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(negotiated, want, "honor_cipher_order = {honor}");
    }
}

#[tokio::test]
async fn alpn_mqtt_accepted_others_refused() {
    let pki = Pki::new("root");
    let mut server = Server::start(ServerTls::load(&pki.server_options(), MQTT).unwrap()).await;
    let ca = pki.ca.ca_pem();
    let (config, _) = client_config(&ClientOpts {
        alpn: &["mqtt"],
        ..ClientOpts::new(ca)
    });
    let s = connect(server.addr, "localhost", config).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"mqtt"[..]));
    assert!(matches!(server.next_seen().await, Seen::Ok { alpn: Some(p), .. } if p == b"mqtt"));

    let (config, _) = client_config(&ClientOpts {
        alpn: &["h2"],
        ..ClientOpts::new(ca)
    });
    assert!(connect(server.addr, "localhost", config).await.is_err());
    match server.next_seen().await {
        Seen::Failed(e) => assert!(e.contains("protocol"), "{e}"),
        other => panic!("{other:?}"),
    }

    let (config, _) = client_config(&ClientOpts::new(ca));
    connect(server.addr, "localhost", config).await.unwrap();
    assert!(matches!(
        server.next_seen().await,
        Seen::Ok { alpn: None, .. }
    ));
}

/// Runs openssl with `args`; false (with a message) when the machine has no openssl.
fn openssl(args: &[&str]) -> bool {
    match std::process::Command::new("openssl").args(args).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => panic!("openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => {
            eprintln!("openssl not available: skipped");
            false
        }
    }
}

#[tokio::test]
async fn sec1_and_pkcs1_rsa_keys() {
    let pki = Pki::new("root");
    let opts = pki.server_options();
    let key = opts.keyfile.clone().unwrap();
    let sec1 = pki.path("sec1.key");
    if !openssl(&[
        "ec",
        "-in",
        key.to_str().unwrap(),
        "-out",
        sec1.to_str().unwrap(),
    ]) {
        return;
    }
    assert!(
        std::fs::read_to_string(&sec1)
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );
    let ec = SslOptions {
        keyfile: Some(sec1),
        ..opts
    };
    let server = Server::start(ServerTls::load(&ec, MQTT).unwrap()).await;
    let (config, _) = client_config(&ClientOpts::new(pki.ca.ca_pem()));
    connect(server.addr, "localhost", config).await.unwrap();

    // RSA 2048 (ring cannot generate it: openssl does), its key as PKCS#1.
    let rsa_key = pki.path("rsa.key");
    assert!(openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        rsa_key.to_str().unwrap(),
    ]));
    let rsa_chain = pki
        .ca
        .server_for_key(&["localhost"], &std::fs::read_to_string(&rsa_key).unwrap())
        .unwrap();
    put(&pki.path("rsa.pem"), &rsa_chain);
    let pkcs1 = pki.path("rsa1.key");
    assert!(openssl(&[
        "rsa",
        "-traditional",
        "-in",
        rsa_key.to_str().unwrap(),
        "-out",
        pkcs1.to_str().unwrap(),
    ]));
    assert!(
        std::fs::read_to_string(&pkcs1)
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );
    let rsa = SslOptions {
        certfile: Some(pki.path("rsa.pem")),
        keyfile: Some(pkcs1),
        ..SslOptions::default()
    };
    let server = Server::start(ServerTls::load(&rsa, MQTT).unwrap()).await;
    let ca = pki.ca.ca_pem();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (config, _) = client_config(&ClientOpts {
            versions: &[version],
            ..ClientOpts::new(ca)
        });
        let s = connect(server.addr, "localhost", config).await.unwrap();
        assert_eq!(served_leaf(&s), leaf_der(&rsa_chain));
    }
}

#[test]
fn option_errors_name_the_setting() {
    let pki = Pki::new("root");
    let old = SslOptions {
        versions: vec!["tlsv1.1".into()],
        ..pki.server_options()
    };
    let err = ServerTls::load(&old, MQTT).unwrap_err().to_string();
    assert!(err.starts_with("ssl_options.versions"), "{err}");
    let no_ca = SslOptions {
        cacertfile: None,
        ..pki.mtls_options(Verify::Optional)
    };
    let err = ServerTls::load(&no_ca, MQTT).unwrap_err().to_string();
    assert!(err.starts_with("ssl_options.cacertfile"), "{err}");
    let missing = SslOptions {
        certfile: Some(pki.path("nope.pem")),
        ..pki.server_options()
    };
    let err = ServerTls::load(&missing, MQTT).unwrap_err().to_string();
    assert!(err.contains("nope.pem"), "{err}");
    let bad_alpn = SslOptions {
        alpn: Some(vec![String::new()]),
        ..pki.server_options()
    };
    let err = ServerTls::load(&bad_alpn, MQTT).unwrap_err().to_string();
    assert!(err.starts_with("ssl_options.alpn"), "{err}");
}

#[tokio::test]
async fn crl_of_the_issuing_intermediate() {
    let pki = Pki::new("root");
    let sub = pki.ca.intermediate("issuing").unwrap();
    let (good, good_key) = sub.client("good").unwrap();
    let (bad, bad_key) = sub.client("bad").unwrap();
    let ca = pki.ca.ca_pem();
    let root_crl = pki.ca.write_crl(pki.dir.path(), "root", &[]).unwrap();
    let sub_crl = sub.write_crl(pki.dir.path(), "sub", &[&bad]).unwrap();
    let try_client = |server: std::net::SocketAddr, chain: String, key: String| async move {
        let (config, _) = client_config(&ClientOpts {
            cert: Some((&chain, &key)),
            ..ClientOpts::new(ca)
        });
        connect(server, "localhost", config).await.is_ok()
    };
    // The issuing CA's CRL present: good in, revoked out.
    let opts = SslOptions {
        crlfile: vec![sub_crl],
        ..pki.mtls_options(Verify::Required)
    };
    let server = Server::start(ServerTls::load(&opts, MQTT).unwrap()).await;
    assert!(try_client(server.addr, good.clone(), good_key.clone()).await);
    assert!(!try_client(server.addr, bad.clone(), bad_key.clone()).await);
    // Only the root's CRL: the client's revocation status is unknown, so it is refused.
    let opts = SslOptions {
        crlfile: vec![root_crl],
        ..opts
    };
    let server = Server::start(ServerTls::load(&opts, MQTT).unwrap()).await;
    assert!(!try_client(server.addr, good, good_key).await);
}
