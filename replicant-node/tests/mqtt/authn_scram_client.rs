//! The client's side of SCRAM (RFC 5802 section 3 and 5, RFC 7677), written here from the
//! RFC and independent of the broker's code (its own PBKDF2 / HMAC / hash calls), so the
//! broker's server side is checked against what the RFC says a client computes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};

/// The hash of the mechanism.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    pub(crate) fn method(self) -> &'static str {
        match self {
            Hash::Sha256 => "SCRAM-SHA-256",
            Hash::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn h(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => {
                let mut m = hmac::Hmac::<Sha256>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Hash::Sha512 => {
                let mut m = hmac::Hmac::<Sha512>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hi(self, password: &[u8], salt: &[u8], i: u32) -> Vec<u8> {
        match self {
            Hash::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, i).to_vec(),
            Hash::Sha512 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, i).to_vec(),
        }
    }
}

/// One client exchange.
pub(crate) struct ScramClient {
    hash: Hash,
    password: Vec<u8>,
    client_nonce: String,
    first_bare: String,
    expected_server_final: Option<String>,
}

impl ScramClient {
    pub(crate) fn new(hash: Hash, user: &str, password: &str, client_nonce: &str) -> Self {
        let name = user.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            hash,
            password: password.as_bytes().to_vec(),
            client_nonce: client_nonce.to_owned(),
            first_bare: format!("n={name},r={client_nonce}"),
            expected_server_final: None,
        }
    }

    /// client-first-message (no channel binding, no authzid).
    pub(crate) fn client_first(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    /// Salt and iteration count the server offered.
    pub(crate) fn offer(server_first: &str) -> (Vec<u8>, u32) {
        let attr = |k: &str| {
            server_first
                .split(',')
                .find_map(|a| a.strip_prefix(k))
                .expect("attribute in server-first")
                .to_owned()
        };
        let salt = B64.decode(attr("s=")).expect("base64 salt");
        (salt, attr("i=").parse().expect("iteration count"))
    }

    /// client-final-message for `server_first` (checks the server kept our nonce).
    pub(crate) fn client_final(&mut self, server_first: &str) -> String {
        let nonce = server_first
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .expect("r= in server-first");
        assert!(
            nonce.starts_with(&self.client_nonce) && nonce.len() > self.client_nonce.len(),
            "server nonce extends ours: {nonce}"
        );
        self.client_final_with(server_first, nonce, "biws")
    }

    /// client-final-message with a chosen nonce and channel binding (to send bad ones).
    pub(crate) fn client_final_with(
        &mut self,
        server_first: &str,
        nonce: &str,
        binding: &str,
    ) -> String {
        let (salt, i) = Self::offer(server_first);
        let h = self.hash;
        let salted = h.hi(&self.password, &salt, i);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored_key = h.h(&client_key);
        let without_proof = format!("c={binding},r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = h.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = h.hmac(&salted, b"Server Key");
        let server_signature = h.hmac(&server_key, auth_message.as_bytes());
        self.expected_server_final = Some(format!("v={}", B64.encode(server_signature)));
        format!("{without_proof},p={}", B64.encode(proof))
    }

    /// Whether server-final carries the signature only a server knowing our credentials
    /// can make.
    pub(crate) fn verifies(&self, server_final: &[u8]) -> bool {
        self.expected_server_final
            .as_deref()
            .is_some_and(|want| want.as_bytes() == server_final)
    }
}
