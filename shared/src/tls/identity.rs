//! What a verified client certificate says about its holder: the values that
//! `peer_cert_as_username` / `peer_cert_as_clientid` ask for, in EMQX's formats.
//!
//! Works on the leaf certificate's DER as the TLS handshake delivered it, already verified;
//! parsing never panics and a certificate that cannot be parsed gives `None`.

use std::fmt::Write as _;

use base64::Engine as _;
use md5::{Digest, Md5};
use x509_parser::asn1_rs::Tag;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use crate::config::tls::PeerCertAs;

/// Longest value given as a username or client id: what an MQTT string can hold (a CONNECT
/// could not carry more, and nothing after it expects more).
pub const MAX_VALUE_LEN: usize = 65_535;

/// The value `peer_cert_as_username` / `peer_cert_as_clientid` asks for, from the leaf
/// certificate's DER: `cn` and `dn` need a parsable certificate (and `cn` a usable common
/// name, see [`common_name`]); `crt`, `pem` and `md5` are taken from the bytes as they are.
/// `Disabled` gives `None`.
///
/// `None` for anything but `Disabled` means the certificate cannot give the value: refuse
/// the client (as EMQX does), never fall back to what the client sent. A value longer than
/// [`MAX_VALUE_LEN`] bytes (a crafted certificate's `crt` or `pem`, a huge CN) is `None`.
pub fn peer_cert_value(leaf_der: &[u8], what: PeerCertAs) -> Option<String> {
    let value = match what {
        PeerCertAs::Disabled => None,
        PeerCertAs::Cn => common_name(leaf_der),
        PeerCertAs::Dn => subject_dn(leaf_der),
        PeerCertAs::Crt => Some(base64::engine::general_purpose::STANDARD.encode(leaf_der)),
        PeerCertAs::Pem => Some(pem_text(leaf_der)),
        PeerCertAs::Md5 => Some(md5_hex(leaf_der)),
    }?;
    (value.len() <= MAX_VALUE_LEN).then_some(value)
}

/// The subject's common name; several CN attributes are joined with `,` (as EMQX does).
/// `None` when there is none, or one is empty, is not a well-formed string or holds control
/// characters (U+0000 to U+001F, U+007F to U+009F), which MQTT strings may not carry. (An
/// empty name as a client id would ask the broker to assign one.)
pub fn common_name(leaf_der: &[u8]) -> Option<String> {
    let cert = parse(leaf_der)?;
    let names = cert
        .subject()
        .iter_common_name()
        .map(|atv| {
            attribute_string(atv).filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
        })
        .collect::<Option<Vec<String>>>()?;
    if names.is_empty() {
        None
    } else {
        Some(names.join(","))
    }
}

/// The subject's distinguished name as RFC 4514 writes it (last RDN first, `CN=c,O=o,C=SE`),
/// with EMQX's attribute names and escaping; unknown attribute types in dotted form.
pub fn subject_dn(leaf_der: &[u8]) -> Option<String> {
    let cert = parse(leaf_der)?;
    Some(format_dn(cert.subject()))
}

/// When the certificate expires, RFC 3339 (`2027-12-02T17:40:16Z`).
pub fn not_after_rfc3339(leaf_der: &[u8]) -> Option<String> {
    let cert = parse(leaf_der)?;
    cert.validity()
        .not_after
        .to_datetime()
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The certificate's `notAfter` as Unix seconds.
pub fn not_after_unix(leaf_der: &[u8]) -> Option<i64> {
    Some(parse(leaf_der)?.validity().not_after.timestamp())
}

/// The certificate as PEM text (`-----BEGIN CERTIFICATE-----`, 64-column lines, `\n`).
pub fn pem_text(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// MD5 of the DER, lower-case hex.
pub fn md5_hex(der: &[u8]) -> String {
    let digest = Md5::digest(der);
    let mut out = String::with_capacity(32);
    for b in digest.iter() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The certificate, or `None` when the DER is not one (trailing bytes are refused).
fn parse(der: &[u8]) -> Option<X509Certificate<'_>> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Some(cert),
        _ => None,
    }
}

/// RFC 4514: RDNs in reverse order joined by `,`, the attributes of one RDN by `+`.
fn format_dn(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let key = short_name(&oid).map_or(oid.clone(), str::to_owned);
                    let value = match attribute_string(atv) {
                        Some(text) => escape_value(&text),
                        None => hex_value(atv),
                    };
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// The names EMQX (esockd) gives attribute types; others are written as dotted OIDs.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.4" => "SN",
        "2.5.4.42" => "GIVENNAME",
        "2.5.4.43" => "INITIALS",
        "2.5.4.44" => "GENERATIONQUALIFIER",
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "TITLE",
        "2.5.4.6" => "C",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.65" => "PSEUDONYM",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "EMAILADDRESS",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// An attribute's value as text: the string types decoded strictly (UTF8String,
/// PrintableString, IA5String and NumericString as UTF-8, BMPString as UTF-16,
/// UniversalString as UTF-32, TeletexString as Latin-1); `None` for other types and for
/// malformed strings.
fn attribute_string(atv: &AttributeTypeAndValue<'_>) -> Option<String> {
    let value = atv.attr_value();
    let data = value.data;
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::NumericString => {
            String::from_utf8(data.to_vec()).ok()
        }
        Tag::BmpString => {
            if data.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        Tag::UniversalString => {
            if data.len() % 4 != 0 {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        Tag::TeletexString => Some(data.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    }
}

/// A value that is not a well-formed string, as RFC 4514 section 2.4 writes it: `#` and the
/// hex of its BER encoding (tag, length, contents).
fn hex_value(atv: &AttributeTypeAndValue<'_>) -> String {
    let value = atv.attr_value();
    let mut out = String::from("#");
    let mut header = Vec::with_capacity(6);
    match value.header.raw_tag() {
        Some(tag) => header.extend_from_slice(tag),
        None => header.push(value.tag().0 as u8), // universal, primitive: one byte
    }
    let len = value.data.len();
    if len < 0x80 {
        header.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
        header.push(0x80 | (8 - first) as u8);
        header.extend_from_slice(&bytes[first..]);
    }
    for b in header.iter().chain(value.data) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// RFC 4514 escaping as esockd does it: a leading space or `#`, a trailing space,
/// `"+,;<>\` escaped with `\`; control bytes and bytes from 126 up (every byte of a
/// non-ASCII character) as `\XX`.
fn escape_value(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == bytes.len();
        match b {
            b' ' | b'#' if first => {
                out.push('\\');
                out.push(char::from(b));
            }
            b' ' if last => out.push_str("\\ "),
            b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0..32 | 126.. => {
                let _ = write!(out, "\\{b:02X}");
            }
            _ => out.push(char::from(b)),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_rfc_4514() {
        assert_eq!(escape_value("a,b"), "a\\,b");
        assert_eq!(escape_value(" lead"), "\\ lead");
        assert_eq!(escape_value("#x"), "\\#x");
        assert_eq!(escape_value("trail "), "trail\\ ");
        assert_eq!(escape_value("é"), "\\C3\\A9");
        assert_eq!(escape_value("plain-name.1"), "plain-name.1");
    }

    /// A self-signed certificate whose subject is `dn`.
    fn cert_with(dn: rcgen::DistinguishedName) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn control_characters_are_no_common_name() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "Org");
        dn.push(rcgen::DnType::CommonName, "evil\u{0}name");
        let der = cert_with(dn);
        assert_eq!(common_name(&der), None);
        assert_eq!(peer_cert_value(&der, PeerCertAs::Cn), None);
        assert_eq!(subject_dn(&der).as_deref(), Some("CN=evil\\00name,O=Org"));
    }

    #[test]
    fn an_empty_common_name_is_no_common_name() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "");
        let der = cert_with(dn);
        assert_eq!(common_name(&der), None);
        assert_eq!(peer_cert_value(&der, PeerCertAs::Cn), None);
        // One empty CN among others: not "alice," either.
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "alice");
        dn.push(rcgen::DnType::CommonName, "");
        assert_eq!(common_name(&cert_with(dn)), None);
    }

    #[test]
    fn no_value_longer_than_an_mqtt_string() {
        // A 50 000-byte CN fits an MQTT string; the certificate's base64 or PEM does not.
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "c".repeat(50_000));
        let der = cert_with(dn);
        assert_eq!(
            peer_cert_value(&der, PeerCertAs::Cn).map(|v| v.len()),
            Some(50_000)
        );
        assert!(peer_cert_value(&der, PeerCertAs::Md5).is_some());
        for what in [PeerCertAs::Crt, PeerCertAs::Pem] {
            assert_eq!(peer_cert_value(&der, what), None, "{what:?}");
        }
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "c".repeat(MAX_VALUE_LEN + 1));
        let der = cert_with(dn);
        for what in [PeerCertAs::Cn, PeerCertAs::Dn] {
            assert_eq!(peer_cert_value(&der, what), None, "{what:?}");
        }
    }

    #[test]
    fn bmp_strings_are_decoded() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(
            rcgen::DnType::CommonName,
            rcgen::DnValue::BmpString(rcgen::string::BmpString::try_from("grüße").unwrap()),
        );
        let der = cert_with(dn);
        assert_eq!(common_name(&der).as_deref(), Some("grüße"));
        assert_eq!(subject_dn(&der).as_deref(), Some("CN=gr\\C3\\BC\\C3\\9Fe"));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(common_name(b"not a certificate"), None);
        assert_eq!(subject_dn(&[0x30, 0x03, 0x02, 0x01, 0x01]), None);
        assert_eq!(
            peer_cert_value(b"abc", PeerCertAs::Md5).as_deref(),
            Some("900150983cd24fb0d6963f7d28e17f72")
        );
    }
}
