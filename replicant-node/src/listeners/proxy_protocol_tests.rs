//! The PROXY header parser: examples from the specification, every refusal, and properties
//! over arbitrary input (never a panic, never a length past the bounds, every prefix of a
//! valid header incomplete, bytes after a header left alone).

#![allow(clippy::unwrap_used)] // tests may unwrap

use super::*;
use proptest::prelude::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn v1_tcp4_and_tcp6_name_the_client() {
    let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 1883\r\nMQTT";
    assert_eq!(
        parse(h),
        Ok(Parsed::Complete {
            len: h.len() - 4,
            source: Some(addr("192.0.2.7:56324"))
        })
    );
    let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 8883\r\n";
    assert_eq!(
        parse(h),
        Ok(Parsed::Complete {
            len: h.len(),
            source: Some(addr("[2001:db8::7]:4000"))
        })
    );
}

#[test]
fn v1_unknown_names_nobody() {
    for h in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n",
    ] {
        assert_eq!(
            parse(h),
            Ok(Parsed::Complete {
                len: h.len(),
                source: None
            })
        );
    }
}

#[test]
fn v1_refusals() {
    let bad: &[&[u8]] = &[
        b"PROXY TCP4 192.0.2.7 10.0.0.1 56324\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 1883 x\r\n",
        b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
        b"PROXY TCP6 192.0.2.7 ::1 1 2\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 1\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 01 1\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 +1 1\r\n",
        b"PROXY TCP4  192.0.2.7 10.0.0.1 1 1\r\n",
        b"PROXY UDP4 192.0.2.7 10.0.0.1 1 1\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 1 1\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 1 1\rX",
        b"PROXY UNKNOWNX\r\n",
        b"PROXY \xff\r\n",
    ];
    for h in bad {
        assert!(
            matches!(parse(h), Err(e) if e != ProxyError::Missing),
            "{:?} accepted",
            String::from_utf8_lossy(h)
        );
    }
    let long = [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 100], b"\r\n"].concat();
    assert_eq!(parse(&long), Err(ProxyError::V1Line));
    let no_end = [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 200]].concat();
    assert_eq!(parse(&no_end), Err(ProxyError::V1Line));
}

#[test]
fn v1_of_exactly_107_bytes_is_accepted() {
    let pad = V1_MAX - b"PROXY UNKNOWN \r\n".len();
    let h = [b"PROXY UNKNOWN ".as_slice(), &vec![b'a'; pad], b"\r\n"].concat();
    assert_eq!(h.len(), V1_MAX);
    assert_eq!(
        parse(&h),
        Ok(Parsed::Complete {
            len: V1_MAX,
            source: None
        })
    );
}

#[test]
fn v2_ipv4_ipv6_local_unspec_unix() {
    let h = encode_v2(addr("198.51.100.9:4242"), addr("10.0.0.1:1883"), &[]);
    assert_eq!(
        parse(&h),
        Ok(Parsed::Complete {
            len: 28,
            source: Some(addr("198.51.100.9:4242"))
        })
    );
    let h = encode_v2(addr("[2001:db8::9]:7"), addr("[::1]:1883"), &[]);
    assert_eq!(
        parse(&h),
        Ok(Parsed::Complete {
            len: 52,
            source: Some(addr("[2001:db8::9]:7"))
        })
    );
    // LOCAL with IPv4 addresses: ignored.
    let mut local = encode_v2(addr("198.51.100.9:4242"), addr("10.0.0.1:1883"), &[]);
    local[12] = 0x20;
    assert_eq!(
        parse(&local),
        Ok(Parsed::Complete {
            len: 28,
            source: None
        })
    );
    // LOCAL, UNSPEC, no addresses.
    let mut bare = V2_SIGNATURE.to_vec();
    bare.extend_from_slice(&[0x20, 0x00, 0, 0]);
    assert_eq!(
        parse(&bare),
        Ok(Parsed::Complete {
            len: 16,
            source: None
        })
    );
    // PROXY over a UNIX socket: no IP client.
    let mut unix = V2_SIGNATURE.to_vec();
    unix.extend_from_slice(&[0x21, 0x31, 0, 216]);
    unix.extend_from_slice(&[0u8; 216]);
    assert_eq!(
        parse(&unix),
        Ok(Parsed::Complete {
            len: 232,
            source: None
        })
    );
}

#[test]
fn v2_tlvs_are_skipped_and_data_after_is_left() {
    // A PP2_TYPE_AUTHORITY TLV and a NOOP, then the client's first bytes.
    let tlvs = [0x02, 0x00, 0x03, b'a', b'b', b'c', 0x04, 0x00, 0x00];
    let mut h = encode_v2(addr("203.0.113.5:1"), addr("10.0.0.1:8883"), &tlvs);
    let len = h.len();
    h.extend_from_slice(&[0x16, 0x03, 0x01]);
    assert_eq!(
        parse(&h),
        Ok(Parsed::Complete {
            len,
            source: Some(addr("203.0.113.5:1"))
        })
    );
}

#[test]
fn v2_refusals() {
    let good = encode_v2(addr("198.51.100.9:4242"), addr("10.0.0.1:1883"), &[]);
    let with = |i: usize, b: u8| {
        let mut h = good.clone();
        h[i] = b;
        h
    };
    assert_eq!(parse(&with(12, 0x11)), Err(ProxyError::V2Version(1)));
    assert_eq!(parse(&with(12, 0x22)), Err(ProxyError::V2Command(2)));
    assert_eq!(parse(&with(13, 0x12)), Err(ProxyError::V2Family(0x12)));
    assert_eq!(parse(&with(13, 0x22)), Err(ProxyError::V2Family(0x22)));
    assert_eq!(parse(&with(13, 0x41)), Err(ProxyError::V2Family(0x41)));
    assert_eq!(
        parse(&with(15, 4)),
        Err(ProxyError::V2Length { len: 4, need: 12 })
    );
    // A bad version is refused as soon as its byte is there.
    assert_eq!(parse(&with(12, 0x31)[..13]), Err(ProxyError::V2Version(3)));
}

#[test]
fn other_protocols_are_missing_headers() {
    // An MQTT CONNECT, a TLS ClientHello, an HTTP request, a near-miss of each signature.
    for h in [
        &[0x10u8, 0x0c, 0x00, 0x04][..],
        &[0x16, 0x03, 0x01, 0x02, 0x00],
        b"GET /mqtt HTTP/1.1\r\n",
        b"PROXX ",
        b"\r\n\r\n\0\r\nQUIX\n",
    ] {
        assert_eq!(parse(h), Err(ProxyError::Missing), "{h:?}");
    }
}

#[test]
fn the_largest_v2_header_is_accepted() {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    h.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0, 9, 0, 10]);
    h.resize(V2_MAX, 0);
    assert_eq!(
        parse(&h),
        Ok(Parsed::Complete {
            len: V2_MAX,
            source: Some(addr("1.2.3.4:9"))
        })
    );
    assert_eq!(
        parse(&h[..V2_MAX - 1]),
        Ok(Parsed::Incomplete { need: V2_MAX })
    );
}

/// Valid headers of both versions with their sources.
fn valid_header() -> impl Strategy<Value = (Vec<u8>, Option<SocketAddr>)> {
    let v4 = (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p)));
    let v6 = (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p)));
    let source = prop_oneof![v4, v6];
    prop_oneof![
        (
            source.clone(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(s, tlv)| {
                let d = if s.is_ipv4() {
                    addr("10.0.0.1:1883")
                } else {
                    addr("[::1]:1883")
                };
                (encode_v2(s, d, &tlv), Some(s))
            }),
        source.prop_map(|s| {
            let (fam, dst) = if s.is_ipv4() {
                ("TCP4", "10.0.0.1")
            } else {
                ("TCP6", "::1")
            };
            let line = format!("PROXY {fam} {} {dst} {} 1883\r\n", s.ip(), s.port());
            (line.into_bytes(), Some(s))
        }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_nor_overrun(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        match parse(&bytes) {
            Ok(Parsed::Complete { len, .. }) => prop_assert!(len <= bytes.len() && len <= V2_MAX),
            Ok(Parsed::Incomplete { need }) => prop_assert!(need > bytes.len() && need <= V2_MAX),
            Err(_) => {}
        }
    }

    #[test]
    fn arbitrary_bytes_after_a_signature_never_panic(
        v2 in any::<bool>(),
        rest in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = if v2 { V2_SIGNATURE.to_vec() } else { b"PROXY ".to_vec() };
        bytes.extend_from_slice(&rest);
        match parse(&bytes) {
            Ok(Parsed::Complete { len, .. }) => prop_assert!(len <= bytes.len()),
            Ok(Parsed::Incomplete { need }) => prop_assert!(need > bytes.len() && need <= V2_MAX),
            Err(_) => {}
        }
    }

    #[test]
    fn valid_headers_parse_and_keep_what_follows(
        (header, source) in valid_header(),
        after in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut bytes = header.clone();
        bytes.extend_from_slice(&after);
        prop_assert_eq!(parse(&bytes), Ok(Parsed::Complete { len: header.len(), source }));
        for cut in 0..header.len() {
            prop_assert!(
                matches!(parse(&header[..cut]), Ok(Parsed::Incomplete { need }) if need > cut),
                "prefix of {} bytes", cut
            );
        }
    }

    #[test]
    fn one_flipped_byte_is_never_a_panic(
        (header, _) in valid_header(),
        at in any::<prop::sample::Index>(),
        to in any::<u8>(),
    ) {
        let mut bytes = header.clone();
        let i = at.index(bytes.len());
        bytes[i] = to;
        if let Ok(Parsed::Complete { len, .. }) = parse(&bytes) {
            prop_assert!(len <= bytes.len());
        }
    }
}
