//! Authorization hook points: every PUBLISH (including wills) and every SUBSCRIBE filter is
//! checked here before it takes effect. The rules themselves (ACL files, built-in database)
//! come later; until then the default allows everything.

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
}

/// The default: everything is allowed.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn check(&self, _: &str, _: Option<&str>, _: AuthzAction, _: &str) -> bool {
        true
    }
}
