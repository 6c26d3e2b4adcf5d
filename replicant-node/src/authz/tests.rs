//! The decision order of [`Authz`]: superuser, hook, sources in order, `no_match`, and the
//! `$SYS` rule (an explicit grant needed, whoever asks).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use meshmq_shared::auth::acl::{ClientInfo, Request};
use meshmq_shared::config::AuthorizationConfig;
use meshmq_shared::tables::Tables;

use super::*;

fn config(v: serde_json::Value) -> AuthorizationConfig {
    serde_json::from_value(v).expect("config")
}

fn client(superuser: bool) -> AuthzClient {
    AuthzClient {
        info: ClientInfo {
            client_id: Arc::from("c1"),
            username: Some(Arc::from("u1")),
            peerhost: IpAddr::V4(Ipv4Addr::LOCALHOST),
            superuser,
        },
        attached: Vec::new(),
        cert: None,
    }
}

fn publish(topic: &str) -> Request<'_> {
    Request::Publish {
        topic,
        qos: 0,
        retain: false,
    }
}

/// Denies `hook/deny`, grants `$SYS/hook/...`.
struct Hook;

impl Authorizer for Hook {
    fn check(&self, _: &str, _: Option<&str>, _: AuthzAction, topic: &str) -> bool {
        topic != "hook/deny"
    }

    fn allows_sys_publish(&self, _: &str, _: Option<&str>, topic: &str) -> bool {
        topic.starts_with("$SYS/hook/")
    }
}

#[test]
fn sources_in_order_then_no_match() {
    let cfg = config(serde_json::json!({ "no_match": "deny", "sources": [
        { "type": "file", "rules": [
            { "permission": "deny", "who": "all", "action": "publish", "topics": ["a/deny"] }]},
        { "type": "file", "rules": [
            { "permission": "allow", "who": "all", "action": "publish", "topics": ["a/#"] },
            { "permission": "allow", "who": "all", "action": "publish", "topics": ["$SYS/rule/#"] }]},
    ]}));
    let a = Authz::new(&cfg, Arc::new(Hook)).expect("authz");
    let t = Tables::new();
    let d = |c: &AuthzClient, topic: &str| a.decide(&t, c, &publish(topic)).0;
    // What decided: the `source` label of meshmq_authorization_decisions_total.
    let by = |c: &AuthzClient, topic: &str| a.decide(&t, c, &publish(topic)).1;
    let user = client(false);
    assert_eq!(
        d(&user, "a/deny"),
        Err(Denied::NotAuthorized),
        "first source wins"
    );
    assert_eq!(d(&user, "a/ok"), Ok(()));
    assert_eq!(d(&user, "b"), Err(Denied::NotAuthorized), "no_match = deny");
    assert_eq!(
        d(&user, "hook/deny"),
        Err(Denied::NotAuthorized),
        "the hook may deny"
    );
    assert_eq!(
        d(&user, "$SYS/rule/x"),
        Ok(()),
        "an explicit rule grants $SYS"
    );
    assert_eq!(
        d(&user, "$SYS/hook/x"),
        Err(Denied::NotAuthorized),
        "granted by the hook, then no_match"
    );
    assert_eq!(d(&user, "$SYS/other"), Err(Denied::SysTopic));

    let root = client(true);
    assert_eq!(d(&root, "b"), Ok(()), "a superuser skips the rules");
    assert_eq!(d(&root, "hook/deny"), Ok(()), "and the hook");
    assert_eq!(
        d(&root, "$SYS/other"),
        Err(Denied::SysTopic),
        "but not the $SYS rule"
    );
    assert_eq!(d(&root, "$SYS/hook/x"), Ok(()));

    assert_eq!(by(&user, "a/deny"), "file");
    assert_eq!(by(&user, "a/ok"), "file");
    assert_eq!(by(&user, "b"), "no_match");
    assert_eq!(by(&user, "hook/deny"), "hook");
    assert_eq!(by(&user, "$SYS/other"), "sys_topic");
    assert_eq!(by(&root, "b"), "superuser");
}

fn subscribe(filter: &str) -> Request<'_> {
    Request::Subscribe {
        filter,
        full: filter,
        qos: 0,
    }
}

#[test]
fn reading_sys_needs_loopback_a_superuser_or_an_allow_rule() {
    let cfg = config(serde_json::json!({ "sources": [{ "type": "file", "rules": [
        { "permission": "allow", "who": { "username": "ops" }, "action": "subscribe",
          "topics": ["$SYS/#"] }]}]}));
    let a = Authz::new(&cfg, Arc::new(AllowAll)).expect("authz");
    let t = Tables::new();
    let remote = |user: &str, superuser: bool| {
        let mut c = client(superuser);
        c.info.peerhost = "203.0.113.9".parse().expect("ip");
        c.info.username = Some(Arc::from(user));
        c
    };
    let d = |c: &AuthzClient, f: &str| a.decide(&t, c, &subscribe(f)).0;
    let nobody = remote("u1", false);
    assert_eq!(d(&nobody, "$SYS/#"), Err(Denied::SysTopic));
    assert_eq!(
        d(&nobody, "$SYS/brokers/+/clients/+/connected"),
        Err(Denied::SysTopic)
    );
    assert_eq!(d(&nobody, "$SYS"), Err(Denied::SysTopic));
    assert_eq!(d(&nobody, "a/#"), Ok(()), "other filters: no_match allows");
    assert_eq!(d(&remote("ops", false), "$SYS/#"), Ok(()), "an allow rule");
    assert_eq!(d(&remote("u1", true), "$SYS/#"), Ok(()), "a superuser");
    assert_eq!(d(&client(false), "$SYS/#"), Ok(()), "loopback, as EMQX");
    let mut mapped = client(false);
    mapped.info.peerhost = "::ffff:127.0.0.1".parse().expect("ip");
    assert_eq!(d(&mapped, "$SYS/#"), Ok(()), "v4-mapped loopback");
}

#[test]
fn without_sources_the_hook_and_sys_rule_are_what_they_were() {
    let a = Authz::new(&AuthorizationConfig::default(), Arc::new(AllowAll)).expect("authz");
    let t = Tables::new();
    let user = client(false);
    assert_eq!(a.decide(&t, &user, &publish("a/b")).0, Ok(()));
    assert_eq!(
        a.decide(&t, &user, &publish("$SYS")).0,
        Err(Denied::SysTopic)
    );
    assert_eq!(
        a.decide(&t, &user, &publish("$SYS/x")).0,
        Err(Denied::SysTopic)
    );
}
