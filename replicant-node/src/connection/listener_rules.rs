//! What the listener a client came in on decides about its CONNECT, before anything else
//! looks at it (bans, authentication, authorization, the registry): the client id and the
//! username taken from a verified client certificate (`peer_cert_as_clientid`,
//! `peer_cert_as_username`, EMQX's formats), and whether the authentication chain runs
//! (`enable_authn`). Every CONNECT goes through here, whatever its transport, and so does a
//! takeover (it is a CONNECT); a session adopted during an evacuation has no client and no
//! listener.
//!
//! A certificate that cannot give what is asked for (no certificate under `verify =
//! "optional"`, no usable common name) refuses the client: 0x85 Client identifier not valid
//! for the client id, 0x86 Bad user name or password for the username (3.1.1: return codes
//! 2 and 4). What the client sent is never used instead.

use meshmq_shared::codec::{Connect, ReasonCode};
use meshmq_shared::config::tls::PeerCertAs;
use meshmq_shared::tls::identity::peer_cert_value;

use crate::listeners::{CertNames, ConnMeta};

/// The listener's decisions for one CONNECT.
pub(super) struct Rules {
    /// Run the authentication chain (false: `enable_authn = false`, the client is let in
    /// without it; bans and authorization still apply).
    pub authenticate: bool,
    /// The client certificate's names (TLS listeners, when the client sent one): boxed,
    /// most clients have none.
    pub cert: Option<Box<CertNames>>,
}

/// Applies the listener's rules to `connect` (its client id and username may be replaced);
/// the reason code to refuse with otherwise. Takes the certificate out of `meta`: its DER
/// is not kept past CONNECT.
pub(super) fn apply(meta: &mut ConnMeta, connect: &mut Connect) -> Result<Rules, ReasonCode> {
    let config = &meta.listener().spec.config;
    let (authenticate, as_clientid, as_username) = (
        config.enable_authn,
        config.peer_cert_as_clientid,
        config.peer_cert_as_username,
    );
    let cert = meta.cert.take();
    if !authenticate && connect.properties.authentication_method.is_some() {
        // No authenticator answers on this listener, enhanced or not.
        return Err(ReasonCode::BadAuthenticationMethod);
    }
    let from_cert = |what: PeerCertAs| {
        cert.as_ref()
            .and_then(|c| peer_cert_value(&c.leaf_der, what))
            .filter(|v| !v.is_empty())
    };
    if as_clientid != PeerCertAs::Disabled {
        connect.client_id = from_cert(as_clientid).ok_or(ReasonCode::ClientIdentifierNotValid)?;
    }
    if as_username != PeerCertAs::Disabled {
        connect.username = Some(from_cert(as_username).ok_or(ReasonCode::BadUserNameOrPassword)?);
    }
    Ok(Rules {
        authenticate,
        cert: cert.map(|c| Box::new(c.names())),
    })
}
