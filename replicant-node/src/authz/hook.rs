//! The embedder's hook ([`Authorizer`], set with `BrokerBuilder::authorizer`) and the
//! broker's own namespace rule: clients may not publish into `$SYS` unless something grants
//! it explicitly.
//!
//! Owns the trait, its default [`AllowAll`], [`is_sys_topic`] and [`PublishDenied`] (why a
//! publication was refused, and its counting). The hook runs before the configured sources
//! (`super::Authz`): its "no" denies, its "yes" lets the sources decide. It must never
//! block: it runs on connection tasks.

use meshmq_shared::metrics as m;

/// What a client is trying to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthzAction {
    /// Publish to a topic name.
    Publish,
    /// Subscribe to a topic filter.
    Subscribe,
}

/// Decides whether a client may publish to a topic or subscribe to a filter.
/// Called on the connection's task: it must not block.
pub trait Authorizer: Send + Sync + 'static {
    /// True to allow. `topic` is the topic name (publish) or the filter as sent,
    /// including any `$share/{group}/` prefix (subscribe).
    fn check(
        &self,
        client_id: &str,
        username: Option<&str>,
        action: AuthzAction,
        topic: &str,
    ) -> bool;

    /// True to let a client publish into the broker's `$SYS` namespace (`topic` is `$SYS`
    /// or under `$SYS/`); [`check`](Self::check) still applies afterwards. The default
    /// refuses: only the broker writes `$SYS` (as mosquitto and EMQX do out of the box).
    /// An ACL that grants it explicitly overrides this.
    fn allows_sys_publish(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        let _ = (client_id, username, topic);
        false
    }
}

/// The default: everything is allowed (but `$SYS`, see [`Authorizer::allows_sys_publish`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn check(&self, _: &str, _: Option<&str>, _: AuthzAction, _: &str) -> bool {
        true
    }
}

/// True for a topic name in the broker's own namespace: `$SYS` itself or `$SYS/...`.
pub fn is_sys_topic(topic: &str) -> bool {
    topic
        .strip_prefix("$SYS")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Why a client publication was refused. Either way the message is dropped; a 5.0 client
/// gets PUBACK / PUBREC 0x87 Not authorized, a 3.1.1 client the normal ack (it has no way
/// to hear "refused"), a will is simply not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishDenied {
    /// The topic is in the broker's `$SYS` namespace and the authorizer did not grant it.
    #[error("clients may not publish to $SYS topics")]
    SysTopic,
    /// The authorizer refused the topic.
    #[error("not authorized to publish to this topic")]
    NotAuthorized,
}

impl PublishDenied {
    /// Counts the refusal: `$SYS` as `meshmq_messages_dropped_total{reason="sys_topic"}`,
    /// an authorizer denial as `meshmq_authz_denied_total{action="publish"}`.
    pub fn count(self) {
        match self {
            PublishDenied::SysTopic => {
                metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "sys_topic").increment(1);
            }
            PublishDenied::NotAuthorized => {
                metrics::counter!(m::AUTHZ_DENIED_TOTAL, "action" => "publish").increment(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_namespace_is_sys_and_sys_slash_only() {
        for t in ["$SYS", "$SYS/", "$SYS/brokers/x/uptime"] {
            assert!(is_sys_topic(t), "{t}");
        }
        for t in ["$SYSTEM", "$sys/x", "a/$SYS", "SYS/x", "$share/g/x", ""] {
            assert!(!is_sys_topic(t), "{t}");
        }
    }
}
