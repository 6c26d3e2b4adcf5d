//! Which table operations may be sent again when a transaction's outcome is unknown (its
//! core died, or the reply was lost, after the request left): the ones whose second apply
//! cannot undo or repeat anything a later write did.
//!
//! Why each is safe: route ops carry the router's decision seq (an older seq is ignored);
//! `subscriptions` rows and shared-group members are keyed sets written by one connection
//! task at a time, which waits for this write before its next one; registry disconnects and
//! removes carry the registry generation (stale ones are rejected). Not safe: a registry
//! claim (a second apply bumps the generation again and forgets the previous owner), a
//! retained message (another publisher's newer one may have committed in between, and the
//! resend would bring back the old one), and node rows (evacuation plans and incarnations).

use meshmq_proto::tables::{Op, op::Kind};

/// True when every op may be applied a second time without harm.
pub fn resend_safe(ops: &[Op]) -> bool {
    ops.iter().all(|op| {
        matches!(
            op.kind,
            Some(
                Kind::RouteAdd(_)
                    | Kind::RouteRemove(_)
                    | Kind::SubscriptionSet(_)
                    | Kind::SubscriptionRemove(_)
                    | Kind::SubscriptionClear(_)
                    | Kind::SharedAdd(_)
                    | Kind::SharedRemove(_)
                    | Kind::RegistryDisconnect(_)
                    | Kind::RegistryRemove(_)
            )
        )
    })
}

#[cfg(test)]
mod tests {
    use meshmq_proto::tables::{RegistryClaim, RetainedSet, RouteAdd, SubscriptionSet};

    use super::*;

    fn op(kind: Kind) -> Op {
        Op { kind: Some(kind) }
    }

    #[test]
    fn only_ops_whose_second_apply_is_harmless_are_resent() {
        let route = op(Kind::RouteAdd(RouteAdd::default()));
        let sub = op(Kind::SubscriptionSet(SubscriptionSet::default()));
        let claim = op(Kind::RegistryClaim(RegistryClaim::default()));
        let retained = op(Kind::RetainedSet(RetainedSet::default()));
        assert!(resend_safe(&[route.clone(), sub.clone()]));
        assert!(!resend_safe(&[route.clone(), claim]));
        assert!(!resend_safe(&[sub, retained]));
        assert!(!resend_safe(&[Op { kind: None }]));
        assert!(resend_safe(&[]));
    }
}
