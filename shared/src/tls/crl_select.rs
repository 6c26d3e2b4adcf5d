//! Which of the configured CRLs the client-certificate check uses, and when the first of
//! them expires. webpki checks a client against the FIRST CRL whose issuer matches; with
//! several CRLs of one CA in `crlfile` (an old one left in a bundle), an older list would
//! hide newer revocations, or an expired one would refuse everybody although a fresh one is
//! there. So for each issuer (and issuing distribution point) only the latest list is kept.
//!
//! The earliest `nextUpdate` of the kept lists is when resumption must stop trusting what
//! was checked before: a session resumed past it would skip the check that now fails.

use std::path::PathBuf;

use rustls::pki_types::CertificateRevocationListDer;
use x509_parser::oid_registry::OID_X509_EXT_ISSUER_DISTRIBUTION_POINT;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::TlsLoadError;

/// The CRLs to use (one per issuer and issuing distribution point, in first-seen order) and
/// their `nextUpdate`s, in Unix seconds, ascending. `crls` pairs each list with its file; a
/// list that cannot be read is an error naming the file (never used unchecked).
pub(crate) fn latest_per_issuer(
    crls: Vec<(PathBuf, CertificateRevocationListDer<'static>)>,
) -> Result<(Vec<CertificateRevocationListDer<'static>>, Vec<i64>), TlsLoadError> {
    let mut kept: Vec<(Key, CertificateRevocationListDer<'static>)> = Vec::new();
    for (file, der) in crls {
        let k = key_of(&der).map_err(|reason| TlsLoadError::Parse {
            file: file.clone(),
            reason,
        })?;
        match kept.iter_mut().find(|(other, _)| other.scope == k.scope) {
            Some(slot) => {
                if k.newer_than(&slot.0) {
                    *slot = (k, der);
                }
            }
            None => kept.push((k, der)),
        }
    }
    let mut expires: Vec<i64> = kept.iter().map(|(k, _)| k.next_update).collect();
    expires.sort_unstable();
    expires.dedup();
    Ok((kept.into_iter().map(|(_, der)| der).collect(), expires))
}

/// What decides between two lists of one scope.
struct Key {
    /// Issuer DER and the issuing distribution point extension's bytes (partitioned CRLs
    /// of one CA cover different certificates: each partition is its own scope).
    scope: (Vec<u8>, Vec<u8>),
    this_update: i64,
    /// Big-endian magnitude of `crlNumber` (empty when absent).
    number: Vec<u8>,
    next_update: i64,
}

impl Key {
    /// Newer: the later `thisUpdate`, then the higher `crlNumber`. A `thisUpdate` a little in
    /// the future (the CA's clock ahead) still wins: passing over the newest list would keep
    /// its revocations out until a reload.
    fn newer_than(&self, other: &Key) -> bool {
        let rank = |k: &Key| {
            let digits: Vec<u8> = k.number.iter().copied().skip_while(|b| *b == 0).collect();
            (k.this_update, digits.len(), digits)
        };
        rank(self) > rank(other)
    }
}

fn key_of(der: &CertificateRevocationListDer<'_>) -> Result<Key, String> {
    let (_, crl) = CertificateRevocationList::from_der(der.as_ref()).map_err(|e| e.to_string())?;
    let next_update = crl
        .next_update()
        .ok_or("the CRL has no nextUpdate")?
        .timestamp();
    let idp = crl
        .extensions()
        .iter()
        .find(|e| e.oid == OID_X509_EXT_ISSUER_DISTRIBUTION_POINT)
        .map(|e| e.value.to_vec())
        .unwrap_or_default();
    Ok(Key {
        scope: (crl.issuer().as_raw().to_vec(), idp),
        this_update: crl.last_update().timestamp(),
        number: crl
            .crl_number()
            .map(|n| n.to_bytes_be())
            .unwrap_or_default(),
        next_update,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::dev_ca::DevCa;
    use time::{Duration, OffsetDateTime};

    fn der(pem: &str) -> CertificateRevocationListDer<'static> {
        use rustls::pki_types::pem::PemObject;
        CertificateRevocationListDer::from_pem_slice(pem.as_bytes()).expect("crl pem")
    }

    #[test]
    fn keeps_the_latest_list_of_each_issuer_and_the_earliest_expiry() {
        let a = DevCa::new("a").expect("ca a");
        let b = DevCa::new("b").expect("ca b");
        let now = OffsetDateTime::now_utc();
        let old_a = der(&a.crl_until(&[], now - Duration::hours(2)).expect("crl"));
        let new_a = der(&a.crl(&[]).expect("crl"));
        let b_soon = der(&b.crl_until(&[], now + Duration::hours(1)).expect("crl"));
        let f = || PathBuf::from("x.crl.pem");
        let (kept, expires) = latest_per_issuer(vec![
            (f(), old_a),
            (f(), b_soon.clone()),
            (f(), new_a.clone()),
        ])
        .expect("readable");
        assert_eq!(kept, vec![new_a, b_soon]);
        let soon = (now + Duration::hours(1)).unix_timestamp();
        let week = (now + Duration::days(7)).unix_timestamp();
        assert_eq!(expires.len(), 2, "{expires:?}");
        assert!((expires[0] - soon).abs() <= 1, "{expires:?}");
        assert!((expires[1] - week).abs() <= 1, "{expires:?}");

        let garbage = CertificateRevocationListDer::from(b"not a crl".to_vec());
        let err = latest_per_issuer(vec![(PathBuf::from("bad.crl.pem"), garbage)])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("bad.crl.pem"), "{err}");
    }
}
