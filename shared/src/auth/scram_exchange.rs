//! The server's side of a SCRAM exchange (RFC 5802 section 5, RFC 7677), as pure functions
//! of the messages: parse client-first, answer server-first, check client-final's proof and
//! answer server-final. No I/O, no clock, no randomness (the server nonce is given), so the
//! RFC's test vector can be replayed exactly.
//!
//! Every message is bounded ([`MAX_MESSAGE_LEN`], [`MAX_NONCE_LEN`]) and parsed strictly:
//! channel binding (`p=`), an authorization identity (`a=`) and mandatory extensions (`m=`)
//! are refused, as are a nonce or a channel-binding value that do not match. An unknown user
//! gets an exchange that looks like a known user's ([`fake_credentials`]: a salt and keys
//! derived from a node secret and the name, so asking twice gives the same salt) and always
//! fails at the proof, after the same work as a wrong password. Errors never carry a key, a
//! proof or a password.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::scram::{Credentials, ScramAlgorithm, ct_eq};

/// Longest client message accepted (client-first or client-final), in bytes.
pub const MAX_MESSAGE_LEN: usize = 8 * 1024;
/// Longest client nonce accepted, in bytes.
pub const MAX_NONCE_LEN: usize = 512;

/// Why an exchange failed. The client is only told "not authorized"; the label is for
/// metrics and the operator's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The message is not in the RFC 5802 grammar (the reason says where).
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding (`p=`), which is not offered.
    #[error("channel binding is not supported")]
    ChannelBinding,
    /// An authorization identity or a mandatory extension (`a=`, `m=`): not supported.
    #[error("unsupported SCRAM feature")]
    Unsupported,
    /// client-final's nonce is not the one of server-first.
    #[error("nonce mismatch")]
    NonceMismatch,
    /// client-final's channel binding (`c=`) is not client-first's GS2 header.
    #[error("channel binding data mismatch")]
    BindingMismatch,
    /// The proof does not prove the password (or the user is unknown).
    #[error("invalid proof")]
    InvalidProof,
}

impl ScramError {
    /// Short metric label.
    pub fn label(&self) -> &'static str {
        match self {
            ScramError::Malformed(_) => "malformed",
            ScramError::ChannelBinding => "channel_binding",
            ScramError::Unsupported => "unsupported",
            ScramError::NonceMismatch => "nonce_mismatch",
            ScramError::BindingMismatch => "binding_mismatch",
            ScramError::InvalidProof => "invalid_proof",
        }
    }
}

/// A parsed client-first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user name (`n=`, unescaped).
    pub username: String,
    gs2_header: String,
    bare: String,
    client_nonce: String,
}

/// Parses client-first-message (`n,,n=user,r=nonce`).
pub fn parse_client_first(data: &[u8]) -> Result<ClientFirst, ScramError> {
    let s = text(data)?;
    let mut parts = s.splitn(3, ',');
    match parts.next() {
        Some("n" | "y") => {}
        Some(flag) if flag.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("GS2 channel-binding flag")),
    }
    match parts.next() {
        Some("") => {}
        Some(a) if a.starts_with("a=") => return Err(ScramError::Unsupported),
        _ => return Err(ScramError::Malformed("GS2 header")),
    }
    let bare = parts.next().ok_or(ScramError::Malformed("GS2 header"))?;
    let gs2_header = &s[..s.len() - bare.len()];
    let mut attrs = bare.split(',');
    let first = attrs.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(ScramError::Unsupported);
    }
    let username = first
        .strip_prefix("n=")
        .ok_or(ScramError::Malformed("n= user name"))
        .and_then(unescape)?;
    let client_nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(ScramError::Malformed("r= nonce"))?;
    check_nonce(client_nonce)?;
    extensions(attrs)?;
    Ok(ClientFirst {
        username,
        gs2_header: gs2_header.to_owned(),
        bare: bare.to_owned(),
        client_nonce: client_nonce.to_owned(),
    })
}

/// The server's state between server-first and client-final. Its `Debug` hides the keys.
#[derive(Clone)]
pub struct ServerState {
    creds: Credentials,
    known: bool,
    /// client-first-message-bare "," server-first-message.
    auth_prefix: String,
    nonce: String,
    gs2_header: String,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

/// Answers client-first with server-first (`r=<client nonce><server nonce>,s=<salt>,i=<n>`).
/// `known` false (the user does not exist: `creds` are [`fake_credentials`]) makes the
/// exchange fail at the proof whatever the client sends. `server_nonce` must be printable
/// ASCII without `,` (e.g. base64 of random bytes).
pub fn server_first(
    first: ClientFirst,
    creds: Credentials,
    known: bool,
    server_nonce: &str,
) -> (ServerState, String) {
    let nonce = format!("{}{server_nonce}", first.client_nonce);
    let message = format!(
        "r={nonce},s={},i={}",
        B64.encode(&creds.salt),
        creds.iterations
    );
    let state = ServerState {
        creds,
        known,
        auth_prefix: format!("{},{message}", first.bare),
        nonce,
        gs2_header: first.gs2_header,
    };
    (state, message)
}

impl ServerState {
    /// The algorithm of this exchange.
    pub fn algorithm(&self) -> ScramAlgorithm {
        self.creds.algorithm
    }

    /// Checks client-final (`c=biws,r=<nonce>,p=<proof>`); `Ok` is server-final
    /// (`v=<server signature>`), to send to the client.
    pub fn client_final(&self, data: &[u8]) -> Result<String, ScramError> {
        let s = text(data)?;
        let (without_proof, proof) = s
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("p= proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("c= channel binding"))?;
        let binding = B64
            .decode(binding)
            .map_err(|_| ScramError::Malformed("c= channel binding"))?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("r= nonce"))?;
        extensions(attrs)?;
        if binding != self.gs2_header.as_bytes() {
            return Err(ScramError::BindingMismatch);
        }
        if nonce != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        let alg = self.creds.algorithm;
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("p= proof"))?;
        if proof.len() != alg.output_len() {
            return Err(ScramError::Malformed("p= proof length"));
        }
        let auth_message = format!("{},{without_proof}", self.auth_prefix);
        let signature = alg.hmac(&self.creds.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let matches = ct_eq(&alg.hash(&client_key), &self.creds.stored_key);
        if !(matches & self.known) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = alg.hmac(&self.creds.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

/// Credentials for a user that does not exist, indistinguishable from a real user's to the
/// client: salt and keys are HMACs of `secret` (a node secret) and the name, so the same
/// name always gets the same salt, and `iterations` is the configured count.
pub fn fake_credentials(
    algorithm: ScramAlgorithm,
    secret: &[u8],
    username: &str,
    iterations: u32,
) -> Credentials {
    let derive = |label: &str| algorithm.hmac(secret, format!("{label}\0{username}").as_bytes());
    let mut salt = derive("salt");
    salt.truncate(super::scram::SALT_LEN);
    Credentials {
        algorithm,
        salt,
        iterations,
        stored_key: derive("stored"),
        server_key: derive("server"),
    }
}

/// A server nonce from random bytes (base64: printable, no `,`).
pub fn server_nonce(random: &[u8]) -> String {
    B64.encode(random)
}

/// A client message as text, bounded.
fn text(data: &[u8]) -> Result<&str, ScramError> {
    if data.is_empty() || data.len() > MAX_MESSAGE_LEN {
        return Err(ScramError::Malformed("empty or too long"));
    }
    std::str::from_utf8(data).map_err(|_| ScramError::Malformed("not UTF-8"))
}

/// A nonce: 1 ..= [`MAX_NONCE_LEN`] printable ASCII characters other than `,`.
fn check_nonce(n: &str) -> Result<(), ScramError> {
    let printable = n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',');
    if n.is_empty() || n.len() > MAX_NONCE_LEN || !printable {
        return Err(ScramError::Malformed("r= nonce"));
    }
    Ok(())
}

/// Optional extensions (`x=value`, ignored); anything else is malformed.
fn extensions<'a>(attrs: impl Iterator<Item = &'a str>) -> Result<(), ScramError> {
    for a in attrs {
        let b = a.as_bytes();
        if b.len() < 2 || !b[0].is_ascii_alphabetic() || b[1] != b'=' {
            return Err(ScramError::Malformed("attribute"));
        }
    }
    Ok(())
}

/// A saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is malformed; not empty.
fn unescape(name: &str) -> Result<String, ScramError> {
    let bad = ScramError::Malformed("n= user name");
    if name.is_empty() {
        return Err(bad);
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).ok_or(bad)?;
        out.push(match esc {
            "=2C" => ',',
            "=3D" => '=',
            _ => return Err(bad),
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_unescaped_and_bad_escapes_refused() {
        assert_eq!(unescape("a=2Cb=3Dc").as_deref(), Ok("a,b=c"));
        assert!(unescape("a=2").is_err());
        assert!(unescape("a=41").is_err());
        assert!(unescape("").is_err());
    }

    #[test]
    fn client_first_grammar_is_enforced() {
        let ok = parse_client_first(b"n,,n=user,r=abc").expect("parses");
        assert_eq!(ok.username, "user");
        assert!(parse_client_first(b"y,,n=user,r=abc,x=ext").is_ok());
        let err = |m: &[u8]| parse_client_first(m).expect_err("refused");
        assert_eq!(
            err(b"p=tls-unique,,n=user,r=abc"),
            ScramError::ChannelBinding
        );
        assert_eq!(err(b"n,a=admin,n=user,r=abc"), ScramError::Unsupported);
        assert_eq!(err(b"n,,m=ext,n=user,r=abc"), ScramError::Unsupported);
        assert!(matches!(err(b"x,,n=user,r=abc"), ScramError::Malformed(_)));
        assert!(matches!(err(b"n,,n=user"), ScramError::Malformed(_)));
        assert!(matches!(err(b"n,,n=user,r="), ScramError::Malformed(_)));
        assert!(matches!(err(b"n,,r=abc,n=user"), ScramError::Malformed(_)));
        assert!(matches!(
            err(b"n,,n=user,r=a\x01b"),
            ScramError::Malformed(_)
        ));
        assert!(matches!(err(b"n,,n=\xff,r=abc"), ScramError::Malformed(_)));
        assert!(matches!(err(b""), ScramError::Malformed(_)));
        let long = format!("n,,n=user,r={}", "a".repeat(MAX_NONCE_LEN + 1));
        assert!(matches!(err(long.as_bytes()), ScramError::Malformed(_)));
        let huge = format!("n,,n={},r=abc", "u".repeat(MAX_MESSAGE_LEN));
        assert!(matches!(err(huge.as_bytes()), ScramError::Malformed(_)));
    }

    proptest::proptest! {
        /// Any bytes as client-first or client-final: an answer, never a panic.
        #[test]
        fn arbitrary_messages_never_panic(first: Vec<u8>, last: Vec<u8>) {
            let _ = parse_client_first(&first);
            let c = fake_credentials(ScramAlgorithm::Sha256, b"k", "u", 1);
            let ok = parse_client_first(b"n,,n=u,r=abc").expect("parses");
            let (state, _) = server_first(ok, c, true, "xyz");
            let _ = state.client_final(&last);
            let attrs = format!("c=biws,r=abcxyz,p={}", String::from_utf8_lossy(&last));
            let _ = state.client_final(attrs.as_bytes());
        }
    }

    #[test]
    fn fake_credentials_are_stable_per_name_and_differ_between_names() {
        let a = fake_credentials(ScramAlgorithm::Sha256, b"secret", "ghost", 4096);
        let b = fake_credentials(ScramAlgorithm::Sha256, b"secret", "ghost", 4096);
        let c = fake_credentials(ScramAlgorithm::Sha256, b"secret", "other", 4096);
        assert_eq!(a, b);
        assert_ne!(a.salt, c.salt);
        assert_eq!(a.salt.len(), super::super::scram::SALT_LEN);
        assert_eq!(a.stored_key.len(), 32);
    }
}
