//! The PROXY protocol header (HAProxy's specification, versions 1 and 2), parsed from the
//! first bytes of a connection: pure, no I/O. [`parse`] says whether the bytes so far hold a
//! complete header, need more, or are not a valid one; reading them from a socket under a
//! deadline is [`super::proxy_read`].
//!
//! Bounds: a v1 header is one line of at most [`V1_MAX`] bytes (107, CRLF included); a v2
//! header is 16 bytes plus a length that is a `u16`, so at most [`V2_MAX`] bytes. TLVs of v2
//! are skipped (not interpreted). Only TCP over IPv4 or IPv6 names a client: `LOCAL` (v2),
//! `UNKNOWN` (v1), and the `UNSPEC` and UNIX families give no address, and the caller keeps
//! the socket's own. UDP is refused (MQTT runs over a stream).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest v1 header, `\r\n` included (the specification's 107 bytes).
pub const V1_MAX: usize = 107;
/// Longest v2 header: 16 fixed bytes and up to 65535 of addresses and TLVs.
pub const V2_MAX: usize = 16 + u16::MAX as usize;
/// The first 12 bytes of every v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The first 6 bytes of every v1 header.
const V1_PREFIX: &[u8] = b"PROXY ";

/// What the bytes so far are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of `len` bytes; `source` is the client's address it names, `None`
    /// when it names none (health checks: use the socket's peer).
    Complete {
        /// Bytes of the header; what follows is the client's data.
        len: usize,
        /// The original client, if the header names one.
        source: Option<SocketAddr>,
    },
    /// A header has begun (or nothing has arrived): at least `need` bytes in total are
    /// needed to go on.
    Incomplete {
        /// Total bytes needed before parsing can progress.
        need: usize,
    },
}

/// Why the bytes are not a usable header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The connection does not start with a PROXY header at all.
    #[error("no PROXY protocol header")]
    Missing,
    /// A v1 line is longer than 107 bytes or not ended by CRLF.
    #[error("PROXY v1 header is not a CRLF-terminated line of at most 107 bytes")]
    V1Line,
    /// A v1 line that does not parse (the field is named).
    #[error("PROXY v1 header: bad {0}")]
    V1Field(&'static str),
    /// The v2 version nibble is not 2.
    #[error("PROXY v2 header: version {0} is not 2")]
    V2Version(u8),
    /// The v2 command is neither LOCAL nor PROXY.
    #[error("PROXY v2 header: unknown command {0}")]
    V2Command(u8),
    /// The v2 address family or transport is unknown, or is UDP.
    #[error("PROXY v2 header: unsupported address family/transport 0x{0:02x}")]
    V2Family(u8),
    /// The v2 length is shorter than its addresses.
    #[error("PROXY v2 header: length {len} is shorter than the {need} bytes of its addresses")]
    V2Length {
        /// The length field.
        len: usize,
        /// What the family needs.
        need: usize,
    },
}

/// Parses the start of a connection. `Ok(Incomplete)` until the bytes decide; never reads
/// past [`V1_MAX`] or [`V2_MAX`] bytes of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.is_empty() {
        return Ok(Parsed::Incomplete { need: 1 });
    }
    if buf[0] == V1_PREFIX[0] {
        let n = buf.len().min(V1_PREFIX.len());
        if buf[..n] != V1_PREFIX[..n] {
            return Err(ProxyError::Missing);
        }
        return parse_v1(buf);
    }
    if buf[0] == V2_SIGNATURE[0] {
        let n = buf.len().min(V2_SIGNATURE.len());
        if buf[..n] != V2_SIGNATURE[..n] {
            return Err(ProxyError::Missing);
        }
        return parse_v2(buf);
    }
    Err(ProxyError::Missing)
}

/// `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n` or `PROXY UNKNOWN[ ...]\r\n`.
fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if window.len() >= V1_MAX || window.contains(&b'\n') {
            return Err(ProxyError::V1Line);
        }
        return Ok(Parsed::Incomplete {
            need: window.len() + 1,
        });
    };
    match window.get(cr + 1) {
        None if cr + 1 < V1_MAX => return Ok(Parsed::Incomplete { need: cr + 2 }),
        Some(b'\n') => {}
        _ => return Err(ProxyError::V1Line),
    }
    let len = cr + 2;
    let line = std::str::from_utf8(&window[V1_PREFIX.len()..cr])
        .map_err(|_| ProxyError::V1Field("characters"))?;
    if line.starts_with("UNKNOWN") && (line.len() == 7 || line.as_bytes()[7] == b' ') {
        // The sender could not tell: anything after UNKNOWN is ignored (specification).
        return Ok(Parsed::Complete { len, source: None });
    }
    let mut fields = line.split(' ');
    let family = fields.next().ok_or(ProxyError::V1Field("protocol"))?;
    let (src, dst, sport, dport) = match (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) {
        (Some(a), Some(b), Some(c), Some(d), None) => (a, b, c, d),
        _ => return Err(ProxyError::V1Field("field count")),
    };
    let ip = |s: &str| -> Result<IpAddr, ProxyError> {
        match family {
            "TCP4" => s
                .parse::<Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| ProxyError::V1Field("IPv4 address")),
            "TCP6" => s
                .parse::<Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| ProxyError::V1Field("IPv6 address")),
            _ => Err(ProxyError::V1Field("protocol")),
        }
    };
    let source_ip = ip(src)?;
    ip(dst)?;
    let source_port = port(sport)?;
    port(dport)?;
    Ok(Parsed::Complete {
        len,
        source: Some(SocketAddr::new(source_ip, source_port)),
    })
}

/// A v1 port: 1 to 5 decimal digits, no sign, no leading zero, at most 65535.
fn port(s: &str) -> Result<u16, ProxyError> {
    let bad = ProxyError::V1Field("port");
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(bad);
    }
    s.parse().map_err(|_| bad)
}

/// The binary header: signature, version/command, family/transport, length, addresses,
/// TLVs.
fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.len() < 16 {
        // Check what is there already: a bad version or command is known early.
        if let Some(&vc) = buf.get(12) {
            check_version_command(vc)?;
        }
        return Ok(Parsed::Incomplete { need: 16 });
    }
    let command = check_version_command(buf[12])?;
    let family = buf[13];
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    let need_addr = match family {
        0x00 => 0,   // UNSPEC
        0x11 => 12,  // TCP over IPv4
        0x21 => 36,  // TCP over IPv6
        0x31 => 216, // UNIX stream
        other => return Err(ProxyError::V2Family(other)),
    };
    if body < need_addr && command == 1 {
        return Err(ProxyError::V2Length {
            len: body,
            need: need_addr,
        });
    }
    if buf.len() < len {
        return Ok(Parsed::Incomplete { need: len });
    }
    if command == 0 {
        // LOCAL: the balancer's own connection (a health check); the addresses, if any,
        // are to be ignored.
        return Ok(Parsed::Complete { len, source: None });
    }
    let a = &buf[16..len];
    let source = match family {
        0x11 => {
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([a[8], a[9]]),
            ))
        }
        0x21 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                u16::from_be_bytes([a[32], a[33]]),
            ))
        }
        // UNSPEC and UNIX name no IP client: keep the socket's peer.
        _ => None,
    };
    Ok(Parsed::Complete { len, source })
}

/// The command (0 LOCAL, 1 PROXY) of a version-2 header byte.
fn check_version_command(vc: u8) -> Result<u8, ProxyError> {
    if vc >> 4 != 2 {
        return Err(ProxyError::V2Version(vc >> 4));
    }
    match vc & 0x0f {
        c @ (0 | 1) => Ok(c),
        c => Err(ProxyError::V2Command(c)),
    }
}

/// A v2 header naming `source` (TCP, PROXY command) with `tlvs` appended (tests, clients
/// that speak for a balancer).
pub fn encode_v2(source: SocketAddr, dest: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21);
    let mut addrs = Vec::new();
    match (source, dest) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11);
            addrs.extend_from_slice(&s.ip().octets());
            addrs.extend_from_slice(&d.ip().octets());
            addrs.extend_from_slice(&s.port().to_be_bytes());
            addrs.extend_from_slice(&d.port().to_be_bytes());
        }
        (s, d) => {
            out.push(0x21);
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            addrs.extend_from_slice(&v6(s).octets());
            addrs.extend_from_slice(&v6(d).octets());
            addrs.extend_from_slice(&s.port().to_be_bytes());
            addrs.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    addrs.extend_from_slice(tlvs);
    let len = u16::try_from(addrs.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&addrs[..usize::from(len)]);
    out
}

#[cfg(test)]
#[path = "proxy_protocol_tests.rs"]
mod tests;
