//! MQTT 5 Server Reference: where a CONNACK or DISCONNECT with reason 0x9C (Use another
//! server) or 0x9D (Server moved) sends the client. The property is `host:port`, `host`
//! (same port), `[v6]:port`, or several of those separated by spaces (the client takes the
//! first one it can reach).
//!
//! Pure. It must never let a non-loopback server through unless `allow_remote`: a broker
//! cannot send the load generator off the box.

use crate::endpoint::{Endpoint, check_host};
use crate::failure::BadRedirect;

/// Reason code 0x9C, Use another server.
pub const USE_ANOTHER_SERVER: u8 = 0x9c;
/// Reason code 0x9D, Server moved.
pub const SERVER_MOVED: u8 = 0x9d;

/// Whether `code` asks the client to go to its Server Reference.
pub fn is_redirect(code: u8) -> bool {
    code == USE_ANOTHER_SERVER || code == SERVER_MOVED
}

fn parse_one(item: &str, default_port: u16) -> Option<Endpoint> {
    if let Ok(endpoint) = Endpoint::parse(item) {
        return Some(endpoint);
    }
    let bare = item.starts_with('[') && item.ends_with(']');
    let plain = !item.contains(':');
    (!item.is_empty() && (bare || plain)).then(|| Endpoint::new(item, default_port))
}

/// The servers a Server Reference names, in order; `default_port` completes a bare host.
/// Fails if none is usable (unparsable, or not loopback without `allow_remote`).
pub fn parse_reference(
    text: &str,
    default_port: u16,
    allow_remote: bool,
) -> Result<Vec<Endpoint>, BadRedirect> {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for item in text.split_whitespace() {
        match parse_one(item, default_port) {
            Some(ep) if check_host(&ep.host, allow_remote).is_ok() => out.push(ep),
            Some(ep) => refused.push(ep.to_string()),
            None => refused.push(format!("{item:?}")),
        }
    }
    if out.is_empty() {
        let why = if refused.is_empty() {
            "empty".to_owned()
        } else {
            format!("{} (not loopback or unparsable)", refused.join(" "))
        };
        return Err(BadRedirect(why));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn forms_and_policy() {
        let list = parse_reference("127.0.0.1:1884 localhost [::1]:9", 1883, false).unwrap();
        let text: Vec<String> = list.iter().map(|e| e.to_string()).collect();
        assert_eq!(text, ["127.0.0.1:1884", "localhost:1883", "[::1]:9"]);
        let list = parse_reference("10.0.0.1:1 127.0.0.2:2", 1883, false).unwrap();
        assert_eq!(list, vec![Endpoint::new("127.0.0.2", 2)]);
        assert!(parse_reference("10.0.0.1:1", 1883, false).is_err());
        assert!(parse_reference("10.0.0.1:1", 1883, true).is_ok());
        assert!(parse_reference("   ", 1883, true).is_err());
        assert!(parse_reference("::1", 1883, true).is_err());
        assert!(is_redirect(0x9c) && is_redirect(0x9d) && !is_redirect(0x9b));
    }
}
