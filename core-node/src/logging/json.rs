//! The JSON line format: one object per event, `{"timestamp", "level", "node", "target",
//! "message", "fields": {...}, "span": {...}}`, where `span` merges the fields of every span
//! the event is in (outermost first, an inner span's field wins).
//!
//! Owns [`JsonFormat`] (the event) and [`JsonFields`] (how span fields are kept, as a JSON
//! object text, so they can be merged into the line). It must never write more than one
//! line per event: every string goes through `serde_json`, which escapes line breaks.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Collects fields into a JSON map (the `message` field apart).
#[derive(Default)]
struct Collect {
    /// Every field but `message`.
    fields: Map<String, Value>,
    /// The event's `message`, if any.
    message: Option<String>,
}

impl Collect {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Collect {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
}

/// Keeps a span's fields as the text of a JSON object.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonFields;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut c = Collect::default();
        fields.record(&mut c);
        if let Some(m) = c.message {
            c.fields.insert("message".into(), Value::String(m));
        }
        write!(writer, "{}", Value::Object(c.fields))
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut c = Collect::default();
        fields.record(&mut c);
        let mut merged = parse_object(&current.fields);
        merged.extend(c.fields);
        current.fields = Value::Object(merged).to_string();
        Ok(())
    }
}

/// A JSON object from `text` (empty when it is not one).
fn parse_object(text: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// The JSON event format for one node.
#[derive(Debug, Clone)]
pub struct JsonFormat {
    /// The `node` of every line.
    node: String,
}

impl JsonFormat {
    /// Lines for node `node`.
    pub fn new(node: &str) -> Self {
        JsonFormat {
            node: node.to_owned(),
        }
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut c = Collect::default();
        event.record(&mut c);
        let mut span = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for s in scope.from_root() {
                let ext = s.extensions();
                if let Some(f) = ext.get::<FormattedFields<JsonFields>>() {
                    span.extend(parse_object(&f.fields));
                }
            }
        }
        let mut line = Map::new();
        line.insert("timestamp".into(), super::rfc3339_now().into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("node".into(), self.node.clone().into());
        line.insert("target".into(), meta.target().into());
        line.insert("message".into(), c.message.unwrap_or_default().into());
        if !c.fields.is_empty() {
            line.insert("fields".into(), Value::Object(c.fields));
        }
        if !span.is_empty() {
            line.insert("span".into(), Value::Object(span));
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}
