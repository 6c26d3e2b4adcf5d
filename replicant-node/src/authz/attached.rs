//! Rules an authenticator hands over with its allow (a JWT's `acl` claim, an HTTP
//! service's `acl` field, both parsed by `crate::authn::acl`), turned into the rules the
//! matcher applies. They are the client's own: checked before every configured source
//! (EMQX puts the JWT's rules first too).

use meshmq_shared::auth::acl::{Action, ActionKind, Permission, RetainCond, Rule, Who};

use crate::authn::acl::{AclAction, AclRule};

/// The matcher's form of an authenticator's rules, in order.
pub fn attached_rules(acl: &[AclRule]) -> Vec<Rule> {
    acl.iter().map(rule).collect()
}

fn rule(r: &AclRule) -> Rule {
    let qos_mask = match &r.qos {
        // An empty list means every QoS, as in the built-in database's rows.
        None => 0b111,
        Some(levels) if levels.is_empty() => 0b111,
        Some(levels) => levels
            .iter()
            .filter(|q| **q <= 2)
            .fold(0u8, |m, q| m | (1 << q)),
    };
    Rule {
        permission: if r.allow {
            Permission::Allow
        } else {
            Permission::Deny
        },
        who: Who::All,
        action: Action {
            kind: match r.action {
                AclAction::Publish => ActionKind::Publish,
                AclAction::Subscribe => ActionKind::Subscribe,
                AclAction::All => ActionKind::All,
            },
            qos_mask,
            retain: match r.retain {
                None => RetainCond::All,
                Some(true) => RetainCond::Retained,
                Some(false) => RetainCond::NotRetained,
            },
        },
        topics: vec![r.topic.clone()],
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use meshmq_shared::auth::acl::{ClientInfo, Request, decide};

    use super::*;

    #[test]
    fn a_jwt_acl_claim_becomes_rules_with_its_conditions() {
        let claim = serde_json::json!([
            {"permission": "deny", "action": "publish", "topic": "t/${clientid}/x", "retain": true},
            {"permission": "allow", "action": "publish", "topic": "t/${clientid}/#", "qos": [0, 1]},
            {"permission": "allow", "action": "subscribe", "topic": "eq s/#"}
        ]);
        let acl = crate::authn::acl::parse(&claim).expect("EMQX's format");
        let rules = attached_rules(&acl);
        let c = ClientInfo {
            client_id: "c1".into(),
            username: None,
            peerhost: IpAddr::V4(Ipv4Addr::LOCALHOST),
            superuser: false,
        };
        let publish = |topic, qos, retain| Request::Publish { topic, qos, retain };
        let d = |req: &Request<'_>| decide(&rules, &c, req);
        assert_eq!(d(&publish("t/c1/x", 0, false)), Some(Permission::Allow));
        assert_eq!(d(&publish("t/c1/x", 0, true)), Some(Permission::Deny));
        assert_eq!(d(&publish("t/c1/x", 2, false)), None, "QoS 2 not granted");
        assert_eq!(
            d(&publish("t/c2/x", 0, false)),
            None,
            "another client's topic"
        );
        let sub = |filter, qos| Request::Subscribe {
            filter,
            full: filter,
            qos,
        };
        assert_eq!(d(&sub("s/#", 1)), Some(Permission::Allow));
        assert_eq!(d(&sub("s/a", 1)), None, "eq is literal");
    }
}
