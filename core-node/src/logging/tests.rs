//! The line formats through a real subscriber writing into a buffer.

use std::io::Write;
use std::sync::Arc;

use meshmq_shared::config::LogFormat;
use parking_lot::Mutex;
use serde_json::Value;

use super::*;

/// A writer into a shared buffer.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for Buf {
    type Writer = Buf;
    fn make_writer(&'w self) -> Buf {
        self.clone()
    }
}

impl Buf {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[test]
fn json_lines_parse_with_timestamp_node_level_and_span_fields() {
    let buf = Buf::default();
    let sub = subscriber(LogFormat::Json, "r1", "debug", buf.clone()).expect("subscriber");
    tracing::subscriber::with_default(sub, || {
        let span = tracing::info_span!("conn", client_id = "c\n1", peer = 7u64);
        let _g = span.enter();
        tracing::info!(topic = "a/b", size = 5u64, "published\nsecond line");
        tracing::trace!("filtered out");
    });
    let lines = buf.lines();
    assert_eq!(
        lines.len(),
        1,
        "one line per event, trace filtered: {lines:?}"
    );
    let v: Value = serde_json::from_str(&lines[0]).expect("a JSON line");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["node"], "r1");
    assert_eq!(v["message"], "published\nsecond line");
    assert_eq!(v["fields"]["topic"], "a/b");
    assert_eq!(v["fields"]["size"], 5);
    assert_eq!(v["span"]["client_id"], "c\n1");
    let ts = v["timestamp"].as_str().expect("timestamp");
    let parsed = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    assert_eq!(parsed.offset(), time::UtcOffset::UTC, "{ts}");
}

#[test]
fn text_lines_carry_timestamp_and_node() {
    let buf = Buf::default();
    let sub = subscriber(LogFormat::Text, "core-1", "info", buf.clone()).expect("subscriber");
    tracing::subscriber::with_default(sub, || tracing::warn!(n = 3u64, "hello"));
    let lines = buf.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let (ts, rest) = lines[0].split_once(' ').expect("timestamp first");
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    assert!(rest.starts_with("[core-1]  WARN"), "{rest}");
    assert!(rest.contains("hello n=3"), "{rest}");
}

#[test]
fn text_fields_from_clients_cannot_forge_a_line_or_a_terminal_escape() {
    let buf = Buf::default();
    let sub = subscriber(LogFormat::Text, "r1", "info", buf.clone()).expect("subscriber");
    let who =
        "x\n2026-01-01T00:00:00Z [r1]  INFO forged\r\u{1b}]0;pwned\u{7}\u{9b}\u{202e}\u{2028}";
    tracing::subscriber::with_default(sub, || {
        let span = tracing::info_span!("conn", peer = %who);
        let _in = span.enter();
        tracing::warn!(client_id = %who, "refused {}", who);
    });
    let lines = buf.lines();
    assert_eq!(lines.len(), 1, "one event, one line: {lines:?}");
    let line = &lines[0];
    assert!(
        !line.chars().any(|c| c.is_control() && c != '\t'),
        "{line:?}"
    );
    assert!(line.contains("x\\n2026-01-01"), "{line}");
    assert!(
        line.contains("\\u{1b}]0;pwned\\u{7}\\u{9b}\\u{202e}\\u{2028}"),
        "{line}"
    );
}

#[test]
fn filter_text_keeps_dependencies_quiet_unless_named() {
    let t = filter_text("debug", "").expect("ok");
    assert!(t.starts_with("debug,openraft=warn,"), "{t}");
    let t = filter_text("INFO", "openraft=info, replicant_node::peer=debug").expect("ok");
    assert!(t.starts_with("info,"), "{t}");
    assert!(!t.contains("openraft=warn"), "{t}");
    assert!(
        t.ends_with(",openraft=info,replicant_node::peer=debug"),
        "{t}"
    );
    assert!(matches!(filter_text("loud", ""), Err(LogError::Level(_))));
    assert!(parse_filter(&filter_text("info", "a=[").expect("text")).is_err());
}
