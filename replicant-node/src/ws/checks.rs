//! The upgrade request's checks that need no I/O: the `Origin` allow-list and the choice of
//! subprotocol.
//!
//! Owns what counts as an allowed origin (the whole header value equal to an allowed one,
//! ASCII case-insensitively; no prefix, suffix or trailing-slash matching, and a request
//! with several `Origin` headers is refused) and which subprotocol is echoed (ours in our
//! order of preference, compared exactly). It must never build a response.

use axum::http::{HeaderMap, HeaderValue, header};

use super::config::WsConfig;

/// Whether the request's `Origin` passes `cfg`'s check (always, when the check is off).
pub(super) fn origin_allowed(cfg: &WsConfig, headers: &HeaderMap) -> bool {
    let Some(allowed) = &cfg.origins else {
        return true;
    };
    let mut values = headers.get_all(header::ORIGIN).iter();
    let (Some(origin), None) = (values.next(), values.next()) else {
        // None at all, or ambiguous: several Origin headers.
        return headers.get(header::ORIGIN).is_none() && cfg.allow_origin_absence;
    };
    let origin = origin.as_bytes();
    allowed
        .iter()
        .any(|a| a.as_bytes().eq_ignore_ascii_case(origin))
}

/// The subprotocol to echo: the first of `cfg`'s that the client offered.
pub(super) fn choose_subprotocol<'a>(
    cfg: &WsConfig,
    offered: impl Iterator<Item = &'a HeaderValue>,
) -> Option<HeaderValue> {
    // The client's list is bounded by the request head limit.
    let offered: Vec<&HeaderValue> = offered.collect();
    cfg.subprotocols
        .iter()
        .find(|ours| offered.iter().any(|o| o == ours))
        .cloned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use meshmq_shared::config::WebsocketOptions;

    use super::*;

    fn cfg(f: impl FnOnce(&mut WebsocketOptions)) -> WsConfig {
        let mut o = WebsocketOptions::default();
        f(&mut o);
        WsConfig::new(&o, &[], 1024).unwrap()
    }

    fn origins(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ORIGIN, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn origin_must_match_exactly_up_to_ascii_case() {
        let c = cfg(|o| {
            o.check_origin_enable = true;
            o.allow_origin_absence = false;
            o.check_origins = vec!["https://app.example.com".into()];
        });
        assert!(origin_allowed(&c, &origins(&["https://app.example.com"])));
        assert!(origin_allowed(&c, &origins(&["HTTPS://App.Example.COM"])));
        for bad in [
            "https://app.example.com/",
            "https://app.example.com.evil.net",
            "http://app.example.com",
            "https://app.example.com:443",
            "https://evil.net",
            "null",
            "",
        ] {
            assert!(!origin_allowed(&c, &origins(&[bad])), "{bad:?}");
        }
        assert!(!origin_allowed(&c, &origins(&[])), "absent, not allowed");
        assert!(
            !origin_allowed(
                &c,
                &origins(&["https://app.example.com", "https://evil.net"])
            ),
            "two Origin headers"
        );
        let c = cfg(|o| {
            o.check_origin_enable = true;
            o.check_origins = vec!["https://app.example.com".into()];
        });
        assert!(origin_allowed(&c, &origins(&[])), "absent, allowed");
        assert!(!origin_allowed(&c, &origins(&["https://evil.net"])));
        let off = cfg(|_| {});
        assert!(
            origin_allowed(&off, &origins(&["https://evil.net"])),
            "check off"
        );
    }

    #[test]
    fn our_preference_among_the_offered_subprotocols() {
        let c = cfg(|_| {});
        let pick = |offered: &[&str]| {
            let v: Vec<HeaderValue> = offered
                .iter()
                .map(|s| HeaderValue::from_str(s).unwrap())
                .collect();
            choose_subprotocol(&c, v.iter()).map(|h| h.to_str().unwrap().to_owned())
        };
        assert_eq!(pick(&["mqttv3.1", "mqtt"]).as_deref(), Some("mqtt"));
        assert_eq!(pick(&["mqttv3.1"]).as_deref(), Some("mqttv3.1"));
        assert_eq!(pick(&["MQTT"]), None, "compared exactly");
        assert_eq!(pick(&["wamp"]), None);
        assert_eq!(pick(&[]), None);
    }
}
