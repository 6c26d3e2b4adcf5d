//! The JWT and HTTP entries load in EMQX's form with EMQX's defaults; every bad value is
//! refused naming its key; secrets stay out of `Debug` and of error messages.

#![allow(clippy::unwrap_used)] // tests may unwrap

use crate::config::{
    AuthenticatorConfig, Config, ConfigError, HttpMethod, JwtAlgorithm, JwtFrom, validate,
};

fn parse(entry: &str) -> Result<Config, String> {
    toml::from_str::<Config>(&format!("[[authentication]]\n{entry}")).map_err(|e| e.to_string())
}

fn invalid_key(entry: &str) -> (&'static str, String) {
    let config = parse(entry).unwrap();
    match validate(&config) {
        Err(ConfigError::Invalid { key, reason }) => (key, reason),
        other => panic!("{entry}: expected a refusal, got {other:?}"),
    }
}

#[test]
fn jwt_and_http_entries_load_with_emqx_defaults() {
    let c = parse("mechanism = \"jwt\"\nsecret = \"s\"\n").unwrap();
    validate(&c).unwrap();
    let AuthenticatorConfig::Jwt(j) = &c.authentication[0] else {
        panic!("jwt")
    };
    assert_eq!(c.authentication[0].id(), "jwt");
    assert_eq!(
        (
            j.from,
            j.algorithm,
            j.use_jwks,
            j.refresh_interval,
            j.leeway
        ),
        (JwtFrom::Password, JwtAlgorithm::HmacBased, false, 300, 0)
    );
    assert_eq!(j.acl_claim_name, "acl");
    assert!(j.disconnect_after_expire);

    let c = parse(
        "mechanism = \"password_based\"\nbackend = \"http\"\nurl = \"http://127.0.0.1:8080/auth\"\n",
    )
    .unwrap();
    validate(&c).unwrap();
    let AuthenticatorConfig::Http(h) = &c.authentication[0] else {
        panic!("http")
    };
    assert_eq!(c.authentication[0].id(), "password_based:http");
    assert_eq!(h.method, HttpMethod::Post);
    assert_eq!((h.request_timeout, h.pool_size), (5, 8));
    assert_eq!(h.body["password"], "${password}");
    assert_eq!(h.body["username"], "${username}");

    // A backend on jwt, or a missing url, is refused at parse time with the id.
    let e = parse("mechanism = \"jwt\"\nbackend = \"http\"\n").unwrap_err();
    assert!(e.contains("jwt:http"), "{e}");
    let e = parse("mechanism = \"password_based\"\nbackend = \"http\"\n").unwrap_err();
    assert!(
        e.contains("password_based:http") && e.contains("url"),
        "{e}"
    );
}

#[test]
fn every_bad_value_is_refused_naming_its_key() {
    let jwt = "mechanism = \"jwt\"\n";
    let http = "mechanism = \"password_based\"\nbackend = \"http\"\nurl = \"http://h/a\"\n";
    let cases = [
        (jwt.to_owned(), "authentication.secret"),
        (format!("{jwt}secret = \"\""), "authentication.secret"),
        (
            format!("{jwt}secret = \"%%%\"\nsecret_base64_encoded = true"),
            "authentication.secret",
        ),
        (
            format!("{jwt}algorithm = \"public-key\""),
            "authentication.public_key",
        ),
        (
            format!("{jwt}algorithm = \"public-key\"\npublic_key = \"-----BEGIN PUBLIC KEY-----\""),
            "authentication.public_key",
        ),
        (format!("{jwt}use_jwks = true"), "authentication.endpoint"),
        (
            format!("{jwt}use_jwks = true\nendpoint = \"ftp://h/jwks\""),
            "authentication.endpoint",
        ),
        (
            format!("{jwt}use_jwks = true\nendpoint = \"http://h/j\""),
            "authentication.endpoint",
        ),
        (
            format!("{jwt}use_jwks = true\nendpoint = \"https://h/j\"\nrefresh_interval = 0"),
            "authentication.refresh_interval",
        ),
        (
            format!("{jwt}secret = \"s\"\nleeway = 3601"),
            "authentication.leeway",
        ),
        (
            format!("{jwt}secret = \"s\"\nverify_claims = {{ sub = \"${{password}}\" }}"),
            "authentication.verify_claims",
        ),
        (
            format!("{jwt}secret = \"s\"\nacl_claim_name = \"\""),
            "authentication.acl_claim_name",
        ),
        (
            "mechanism = \"password_based\"\nbackend = \"http\"\nurl = \"h/a\"".to_owned(),
            "authentication.url",
        ),
        (
            "mechanism = \"password_based\"\nbackend = \"http\"\nurl = \"http:///a\"".to_owned(),
            "authentication.url",
        ),
        (
            format!("{http}request_timeout = 0"),
            "authentication.request_timeout",
        ),
        (format!("{http}pool_size = 0"), "authentication.pool_size"),
        (
            format!("{http}body = {{ u = \"${{user}}\" }}"),
            "authentication.body",
        ),
        (
            format!("{http}body = {{ u = \"${{username\" }}"),
            "authentication.body",
        ),
        (
            format!("{http}headers = {{ \"a b\" = \"v\" }}"),
            "authentication.headers",
        ),
    ];
    for (entry, key) in cases {
        let (got, reason) = invalid_key(&entry);
        assert_eq!(got, key, "{entry}: {reason}");
        assert!(reason.contains("authentication[0]"), "{reason}");
    }
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let c = parse(
        "mechanism = \"jwt\"\nsecret = \"top-secret-1\"\n\n[[authentication]]\n\
         mechanism = \"password_based\"\nbackend = \"http\"\nurl = \"http://h/a\"\n\
         headers = { authorization = \"Bearer top-secret-2\" }\n",
    )
    .unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("top-secret"), "{debug}");
    assert!(
        debug.contains("authorization"),
        "header names stay: {debug}"
    );
    // A header value with a line break (header injection) is refused without echoing it.
    let (key, reason) = invalid_key(
        "mechanism = \"password_based\"\nbackend = \"http\"\nurl = \"http://h/a\"\n\
         headers = { authorization = \"top-secret-3\\r\\nx: y\" }\n",
    );
    assert_eq!(key, "authentication.headers");
    assert!(!reason.contains("top-secret"), "{reason}");
}

#[test]
fn a_jwks_over_plain_http_is_refused_off_loopback() {
    for (url, ok) in [
        ("https://idp.example.com/jwks", true),
        ("http://127.0.0.1:8080/jwks", true),
        ("http://[::1]:8080/jwks", true),
        ("http://localhost/jwks", true),
        ("http://idp.example.com/jwks", false),
        ("http://127.0.0.1.evil.example/jwks", false),
        ("http://127.0.0.1@evil.example/jwks", false),
    ] {
        assert_eq!(
            super::is_loopback_url(url) || url.starts_with("https://"),
            ok,
            "{url}"
        );
    }
}
