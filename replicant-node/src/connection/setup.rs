//! The checks of a CONNECT that need no I/O: [`validate`] (client id, will, keep-alive and
//! session expiry against `[mqtt]`, giving the [`Setup`] the connection goes on with) and
//! the successful CONNACK's properties ([`connack`]).

use std::sync::Arc;

use meshmq_shared::codec::{ConnAck, Connect, Properties, ReasonCode};
use meshmq_shared::topic;

use crate::ctx::Ctx;

/// What CONNECT validation decided.
pub(super) struct Setup {
    /// The client id (assigned when the client sent none).
    pub(super) client_id: Arc<str>,
    /// The broker chose the client id.
    pub(super) assigned: bool,
    /// The keep-alive in force.
    pub(super) keep_alive: u16,
    /// `server_keepalive` changed the client's (5.0: said in CONNACK).
    pub(super) keep_alive_changed: bool,
    /// The session expiry in force.
    pub(super) expiry_secs: u32,
    /// `max_session_expiry` lowered the client's (5.0: said in CONNACK).
    pub(super) expiry_changed: bool,
}

/// Checks a CONNECT against the configuration; the reason code to refuse with otherwise.
pub(super) fn validate(ctx: &Ctx, c: &Connect) -> Result<Setup, ReasonCode> {
    let live = ctx.runtime.current();
    let cfg = &live.config.mqtt;
    let v5 = c.protocol.is_v5();
    if let Some(method) = &c.properties.authentication_method
        && ctx.authn.scram(method).is_none()
    {
        return Err(ReasonCode::BadAuthenticationMethod);
    }
    let (client_id, assigned): (Arc<str>, bool) = if c.client_id.is_empty() {
        if !v5 && !c.clean_start {
            return Err(ReasonCode::ClientIdentifierNotValid);
        }
        (
            Arc::from(format!("meshmq-{:016x}", rand::random::<u64>())),
            true,
        )
    } else {
        (Arc::from(c.client_id.as_str()), false)
    };
    if client_id.len() > cfg.max_clientid_len {
        return Err(ReasonCode::ClientIdentifierNotValid);
    }
    if let Some(w) = &c.will {
        if topic::validate_topic_name(&w.topic).is_err() {
            return Err(ReasonCode::TopicNameInvalid);
        }
        if w.retain && !cfg.retain_available {
            return Err(ReasonCode::RetainNotSupported);
        }
    }
    let (keep_alive, keep_alive_changed) = match cfg.server_keepalive {
        Some(cap) if v5 && (c.keep_alive == 0 || c.keep_alive > cap) => (cap, true),
        _ => (c.keep_alive, false),
    };
    let requested = if v5 {
        c.properties.session_expiry_interval.unwrap_or(0)
    } else if c.clean_start {
        0
    } else {
        u32::MAX
    };
    let expiry_secs = requested.min(cfg.max_session_expiry);
    Ok(Setup {
        client_id,
        assigned,
        keep_alive,
        keep_alive_changed,
        expiry_secs,
        expiry_changed: expiry_secs != requested,
    })
}

/// The successful CONNACK: what the broker assigned or changed, and its limits (5.0).
pub(super) fn connack(ctx: &Ctx, c: &Connect, setup: &Setup, session_present: bool) -> ConnAck {
    let live = ctx.runtime.current();
    let cfg = &live.config.mqtt;
    let mut p = Properties::default();
    if c.protocol.is_v5() {
        if setup.assigned {
            p.assigned_client_identifier = Some(setup.client_id.to_string());
        }
        if setup.keep_alive_changed {
            p.server_keep_alive = Some(setup.keep_alive);
        }
        if setup.expiry_changed {
            p.session_expiry_interval = Some(setup.expiry_secs);
        }
        if cfg.receive_maximum != u16::MAX {
            p.receive_maximum = Some(cfg.receive_maximum);
        }
        p.maximum_packet_size = Some(cfg.max_packet_size);
        p.topic_alias_maximum = Some(cfg.max_topic_alias);
        if !cfg.retain_available {
            p.retain_available = Some(0);
        }
        if !cfg.wildcard_subscription {
            p.wildcard_subscription_available = Some(0);
        }
        if !cfg.shared_subscription {
            p.shared_subscription_available = Some(0);
        }
        if c.properties.request_response_information == Some(1)
            && !cfg.response_information.is_empty()
        {
            p.response_information = Some(cfg.response_information.clone());
        }
    }
    ConnAck {
        session_present,
        code: ReasonCode::Success,
        properties: p,
    }
}
