//! Which table operations may be sent again when a transaction's outcome is unknown (its
//! core died, or the reply was lost, after the request left): the ones whose second apply
//! cannot undo or repeat anything a later write did, whoever wrote it.
//!
//! The original may still commit late (it can sit in a dead leader's log until the next
//! leader commits it), and other writes, of this node or of another one the client moved
//! to, may commit in between. Safe: route ops (they carry the router's decision seq, and an
//! older seq is ignored); registry disconnects and removes, and shared-group removals that
//! name a generation (a client's generations are never reused, so they can only touch the
//! session that sent them). Not safe: a registry claim (a second apply claims again), a
//! `subscriptions` row or a shared-group join (no generation: after the client moved, the
//! copy would overwrite what its new node wrote), an unconditional shared removal
//! (generation 0), retained messages (another publisher's newer one may have committed in
//! between), and node rows.

use meshmq_proto::tables::{Op, op::Kind};

/// True when every op may be applied a second time without harm.
pub fn resend_safe(ops: &[Op]) -> bool {
    ops.iter().all(|op| match &op.kind {
        Some(
            Kind::RouteAdd(_)
            | Kind::RouteRemove(_)
            | Kind::RegistryDisconnect(_)
            | Kind::RegistryRemove(_),
        ) => true,
        Some(Kind::SharedRemove(r)) => r.generation != 0,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use meshmq_proto::tables::{
        RegistryClaim, RegistryRemove, RetainedSet, RouteAdd, SharedAdd, SharedRemove,
        SubscriptionSet,
    };

    use super::*;

    fn op(kind: Kind) -> Op {
        Op { kind: Some(kind) }
    }

    #[test]
    fn only_ops_whose_second_apply_is_harmless_are_resent() {
        let route = op(Kind::RouteAdd(RouteAdd::default()));
        let remove = op(Kind::RegistryRemove(RegistryRemove::default()));
        let leave = |generation| {
            op(Kind::SharedRemove(SharedRemove {
                generation,
                ..SharedRemove::default()
            }))
        };
        assert!(resend_safe(&[route.clone(), remove, leave(7)]));
        assert!(resend_safe(&[]));
        for unsafe_op in [
            op(Kind::RegistryClaim(RegistryClaim::default())),
            op(Kind::RetainedSet(RetainedSet::default())),
            op(Kind::SubscriptionSet(SubscriptionSet::default())),
            op(Kind::SharedAdd(SharedAdd::default())),
            leave(0),
            Op { kind: None },
        ] {
            assert!(
                !resend_safe(&[route.clone(), unsafe_op.clone()]),
                "{unsafe_op:?}"
            );
        }
    }
}
