//! `POST /api/v5/publish` and `POST /api/v5/publish/bulk`: an operator publishes a message as
//! EMQX's API does, through the broker's own path (`crate::publish`: retained store under
//! the retained quota, local subscribers, the other replicants).
//!
//! An operator action: no client's authorization applies (as in EMQX). What holds for any
//! message holds here: a valid topic name (no wildcard), QoS 0..=2, the message no larger
//! than `mqtt.max_packet_size` as a PUBLISH, RETAIN only with `mqtt.retain_available`, a
//! retained message within the retained quota. A bulk request is checked whole before any
//! of its messages is published (at most [`MAX_BULK`] messages, [`MAX_BODY`] bytes).
//!
//! Answers: 200 `{"id": "<hex>"}` when the message reached a subscriber (here or on another
//! node), 202 `{"message": "no_matching_subscribers", "reason_code": 16}` otherwise; a bulk
//! request answers 200 with one of those objects per message, in order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use base64::Engine;
use meshmq_shared::codec::{self, Packet, Properties, ProtocolVersion, QoS};
use meshmq_shared::metrics as m;
use meshmq_shared::topic;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{bad, body_bytes, counted};
use crate::cluster;
use crate::ctx::Ctx;
use crate::http::api::{ApiError, Denied, ErrorBody, authorize, error, parse_json, require_json};
use crate::message::Message;

/// Most messages in one bulk request.
pub const MAX_BULK: usize = 1_000;
/// Largest request body (a bulk request included).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(one))
        .routes(routes!(bulk))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
}

/// One message of a request, as EMQX takes it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// Topic name.
    topic: String,
    /// The payload, as text or base64 (`payload_encoding`).
    #[serde(default)]
    payload: String,
    /// `plain` (default) or `base64`.
    payload_encoding: Option<String>,
    /// 0 (default), 1 or 2.
    #[serde(default)]
    qos: u8,
    /// Store as the topic's retained message.
    #[serde(default)]
    retain: bool,
    /// The publisher to name (EMQX's `clientid`); informational.
    clientid: Option<String>,
    /// MQTT 5 publish properties.
    properties: Option<PropsBody>,
}

/// MQTT 5 properties of a published message.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PropsBody {
    /// 0 (bytes) or 1 (UTF-8 text).
    payload_format_indicator: Option<u8>,
    /// Seconds the message lives.
    message_expiry_interval: Option<u32>,
    /// Response topic (a topic name).
    response_topic: Option<String>,
    /// Correlation data (as text).
    correlation_data: Option<String>,
    /// User properties, name to value.
    #[serde(default)]
    user_properties: BTreeMap<String, String>,
    /// Content type.
    content_type: Option<String>,
}

/// What publishing one message needs, checked.
#[derive(Debug)]
struct Checked {
    msg: Message,
}

/// A 400 of this API.
fn refuse(message: impl Into<String>) -> ApiError {
    bad("publish", message)
}

fn properties(p: PropsBody) -> Result<Properties, ApiError> {
    if p.payload_format_indicator.is_some_and(|v| v > 1) {
        return Err(refuse("payload_format_indicator must be 0 or 1"));
    }
    if let Some(rt) = &p.response_topic
        && topic::validate_topic_name(rt).is_err()
    {
        return Err(refuse("response_topic is not a valid topic name"));
    }
    Ok(Properties {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval: p.message_expiry_interval.filter(|s| *s > 0),
        response_topic: p.response_topic,
        correlation_data: p.correlation_data.map(Bytes::from),
        user_properties: p.user_properties.into_iter().collect(),
        content_type: p.content_type,
        ..Properties::default()
    })
}

/// Checks one message against the topic rules and this node's `[mqtt]` limits.
fn check(ctx: &Ctx, b: PublishBody) -> Result<Checked, ApiError> {
    let cfg = &ctx.config.mqtt;
    if topic::validate_topic_name(&b.topic).is_err() {
        return Err(refuse(
            "topic is not a valid topic name (no wildcards, 1..=65535 bytes)",
        ));
    }
    // `$SYS` is the broker's own: a message there would pass for one of its events,
    // statistics or alarms (or overwrite its retained `version`).
    if crate::authz::is_sys_topic(&b.topic) {
        return Err(refuse("topics under $SYS are the broker's own"));
    }
    if b.clientid
        .as_ref()
        .is_some_and(|c| c.len() > usize::from(u16::MAX))
    {
        return Err(refuse("clientid is longer than 65535 bytes"));
    }
    let qos = QoS::from_u8(b.qos).ok_or_else(|| refuse("qos must be 0, 1 or 2"))?;
    if b.retain && !cfg.retain_available {
        return Err(refuse(
            "retained messages are disabled (mqtt.retain_available)",
        ));
    }
    let payload = match b.payload_encoding.as_deref() {
        None | Some("plain") => Bytes::from(b.payload),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(b.payload.as_bytes())
            .map(Bytes::from)
            .map_err(|_| refuse("payload is not valid base64"))?,
        Some(_) => return Err(refuse("payload_encoding must be plain or base64")),
    };
    let props = properties(b.properties.unwrap_or_default())?;
    if props.payload_format_indicator == Some(1) && std::str::from_utf8(&payload).is_err() {
        return Err(refuse(
            "payload_format_indicator is 1 but the payload is not UTF-8",
        ));
    }
    let mut msg = Message::new(Instant::now(), b.topic, payload, qos, b.retain, props);
    msg.from_client = b.clientid.map(Arc::from);
    // The PUBLISH a subscriber would get (5.0, with every property) must fit.
    let variant = crate::message::PublishVariant::plain(qos);
    let packet = Packet::Publish(msg.to_publish(Instant::now(), &variant));
    if codec::encoded_len(&packet, ProtocolVersion::V5) > cfg.max_packet_size as usize {
        metrics::counter!(m::MGMT_API_BAD_REQUESTS_TOTAL, "api" => "publish").increment(1);
        return Err(error(
            StatusCode::BAD_REQUEST,
            "PACKET_TOO_LARGE",
            format!(
                "the message is larger than mqtt.max_packet_size ({} bytes)",
                cfg.max_packet_size
            ),
        ));
    }
    if b.retain
        && !msg.payload.is_empty()
        && let Err(quota) = cluster::retained_fits(ctx, &msg.topic, msg.size())
    {
        cluster::count_retained_refused(quota);
        return Err(error(
            StatusCode::BAD_REQUEST,
            "QUOTA_EXCEEDED",
            "the retained store is full (mqtt.max_retained_messages / max_retained_bytes)",
        ));
    }
    Ok(Checked { msg })
}

/// Publishes a checked message; its answer (EMQX's).
async fn send(ctx: &Arc<Ctx>, c: Checked) -> (StatusCode, Value) {
    let msg = Arc::new(c.msg);
    if msg.retain {
        // A write another node committed meanwhile may still take the last room: the
        // message is then delivered but not stored, as for a QoS 0 client publish.
        Box::pin(cluster::retain(ctx, &msg)).await;
    }
    let (_, reached) = crate::publish::deliver_reach(ctx, msg);
    if reached {
        metrics::counter!(m::API_PUBLISHED_TOTAL, "result" => "delivered").increment(1);
        let id = format!("{:032X}", rand::random::<u128>());
        (StatusCode::OK, json!({ "id": id }))
    } else {
        metrics::counter!(m::API_PUBLISHED_TOTAL, "result" => "no_subscribers").increment(1);
        let v = json!({ "message": "no_matching_subscribers", "reason_code": 16 });
        (StatusCode::ACCEPTED, v)
    }
}

/// Publishes one message.
#[utoipa::path(post, path = "/api/v5/publish", tag = "publish", request_body = PublishBody,
    responses((status = 200, description = "{id}: delivered", body = Object),
              (status = 202, description = "no matching subscribers", body = Object), Denied,
              (status = 400, description = "bad message", body = ErrorBody),
              (status = 413, description = "body too large", body = ErrorBody),
              (status = 415, description = "not JSON", body = ErrorBody)))]
async fn one(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    require_json(&headers).inspect_err(counted("publish"))?;
    let body = body_bytes("publish", body)?;
    let b: PublishBody = parse_json(&body).inspect_err(counted("publish"))?;
    let checked = check(&ctx, b).inspect_err(|_| {
        metrics::counter!(m::API_PUBLISHED_TOTAL, "result" => "refused").increment(1);
    })?;
    let (status, v) = send(&ctx, checked).await;
    Ok((status, Json(v)).into_response())
}

/// Publishes up to [`MAX_BULK`] messages, all checked first.
#[utoipa::path(post, path = "/api/v5/publish/bulk", tag = "publish", request_body = Vec<PublishBody>,
    responses((status = 200, description = "one result per message", body = Object), Denied,
              (status = 400, description = "a bad message (none published)", body = ErrorBody),
              (status = 413, description = "body too large", body = ErrorBody),
              (status = 415, description = "not JSON", body = ErrorBody)))]
async fn bulk(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    require_json(&headers).inspect_err(counted("publish"))?;
    let body = body_bytes("publish", body)?;
    let list: Vec<PublishBody> = parse_json(&body).inspect_err(counted("publish"))?;
    if list.is_empty() || list.len() > MAX_BULK {
        return Err(refuse(format!(
            "a bulk request carries 1..={MAX_BULK} messages"
        )));
    }
    let mut checked = Vec::with_capacity(list.len());
    for (i, b) in list.into_iter().enumerate() {
        match check(&ctx, b) {
            Ok(c) => checked.push(c),
            Err(mut e) => {
                metrics::counter!(m::API_PUBLISHED_TOTAL, "result" => "refused").increment(1);
                e.message = format!("message {i}: {}", e.message);
                return Err(e);
            }
        }
    }
    let mut answers = Vec::with_capacity(checked.len());
    for c in checked {
        answers.push(send(&ctx, c).await.1);
    }
    Ok(Json(Value::Array(answers)).into_response())
}
