//! Which of the configured CRLs the client-certificate check uses, and when the first of
//! them expires. webpki checks a client against the FIRST CRL whose issuer matches; with
//! several CRLs of one CA in `crlfile` (an old one left in a bundle), an older list would
//! hide newer revocations, or an expired one would refuse everybody although a fresh one is
//! there. So for each issuer only the latest list (`thisUpdate`, then `crlNumber`) is kept.
//!
//! The earliest `nextUpdate` of the kept lists is when resumption must stop trusting what
//! was checked before: a session resumed past it would skip the check that now fails.

use rustls::pki_types::CertificateRevocationListDer;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

/// The CRLs to use (one per issuer, in first-seen order of their issuers) and their
/// `nextUpdate`s, in Unix seconds, ascending. A list x509-parser cannot read is kept as it is
/// (the verifier reports what is wrong with it).
pub(crate) fn latest_per_issuer(
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> (Vec<CertificateRevocationListDer<'static>>, Vec<i64>) {
    // (issuer DER, thisUpdate, crlNumber bytes) of each kept list; None: unparsed.
    let mut kept: Vec<(Option<Key>, CertificateRevocationListDer<'static>)> = Vec::new();
    for der in crls {
        let key = key_of(&der);
        let Some(k) = key else {
            kept.push((None, der));
            continue;
        };
        match kept
            .iter_mut()
            .find(|(other, _)| other.as_ref().is_some_and(|o| o.issuer == k.issuer))
        {
            Some(slot) => {
                if slot.0.as_ref().is_some_and(|old| k.newer_than(old)) {
                    *slot = (Some(k), der);
                }
            }
            None => kept.push((Some(k), der)),
        }
    }
    let mut expires: Vec<i64> = kept
        .iter()
        .filter_map(|(k, _)| k.as_ref().and_then(|k| k.next_update))
        .collect();
    expires.sort_unstable();
    expires.dedup();
    (kept.into_iter().map(|(_, der)| der).collect(), expires)
}

/// What decides between two lists of one issuer.
struct Key {
    issuer: Vec<u8>,
    this_update: i64,
    /// Big-endian magnitude of `crlNumber` (empty when absent).
    number: Vec<u8>,
    next_update: Option<i64>,
}

impl Key {
    fn newer_than(&self, other: &Key) -> bool {
        let by_number = |k: &Key| {
            let digits: Vec<u8> = k.number.iter().copied().skip_while(|b| *b == 0).collect();
            (digits.len(), digits)
        };
        (self.this_update, by_number(self)) > (other.this_update, by_number(other))
    }
}

fn key_of(der: &CertificateRevocationListDer<'_>) -> Option<Key> {
    let (_, crl) = CertificateRevocationList::from_der(der.as_ref()).ok()?;
    Some(Key {
        issuer: crl.issuer().as_raw().to_vec(),
        this_update: crl.last_update().timestamp(),
        number: crl
            .crl_number()
            .map(|n| n.to_bytes_be())
            .unwrap_or_default(),
        next_update: crl.next_update().map(|t| t.timestamp()),
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
        let (kept, expires) = latest_per_issuer(vec![old_a, b_soon.clone(), new_a.clone()]);
        assert_eq!(kept, vec![new_a, b_soon]);
        let soon = (now + Duration::hours(1)).unix_timestamp();
        let week = (now + Duration::days(7)).unix_timestamp();
        assert_eq!(expires.len(), 2, "{expires:?}");
        assert!((expires[0] - soon).abs() <= 1, "{expires:?}");
        assert!((expires[1] - week).abs() <= 1, "{expires:?}");
    }
}
