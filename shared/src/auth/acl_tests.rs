//! The rule matcher: every `who` form, actions with QoS / retain conditions, topic matching
//! for publish and subscribe (EMQX's "rule covers filter"), `eq`, placeholders, and the
//! mosquitto `acl_file` import.

use std::net::IpAddr;
use std::sync::Arc;

use super::acl::{ClientInfo, Permission, Request, Rule, covers, decide};
use super::mosquitto_acl;
use crate::config::authz::{RuleConfig, compile_rule, compile_rules};

fn client(id: &str, user: Option<&str>, ip: &str) -> ClientInfo {
    ClientInfo {
        client_id: Arc::from(id),
        username: user.map(Arc::from),
        peerhost: ip.parse::<IpAddr>().expect("test ip"),
        superuser: false,
    }
}

fn pub_(topic: &str) -> Request<'_> {
    Request::Publish {
        topic,
        qos: 1,
        retain: false,
    }
}

fn sub(filter: &str) -> Request<'_> {
    Request::Subscribe {
        filter,
        full: filter,
        qos: 1,
    }
}

/// A rule from its TOML form.
fn rule(toml_text: &str) -> Rule {
    let r: RuleConfig = toml::from_str(toml_text).expect("rule TOML");
    compile_rule(&r).expect("rule compiles")
}

#[test]
fn who_forms() {
    let alice = client("c1", Some("alice"), "10.1.2.3");
    let anon = client("dev-7", None, "192.168.0.9");
    let cases = [
        (r#"who = "all""#, true, true),
        (r#"who = { username = "alice" }"#, true, false),
        (r#"who = { clientid = "dev-7" }"#, false, true),
        (r#"who = { username_re = "^ali" }"#, true, false),
        (r#"who = { clientid_re = "^dev-[0-9]+$" }"#, false, true),
        (r#"who = { ipaddr = "10.1.2.3" }"#, true, false),
        (r#"who = { ipaddr = "10.0.0.0/8" }"#, true, false),
        (
            r#"who = { ipaddrs = ["172.16.0.0/12", "192.168.0.0/16"] }"#,
            false,
            true,
        ),
        (
            r#"who = { and = [{ username = "alice" }, { ipaddr = "10.0.0.0/8" }] }"#,
            true,
            false,
        ),
        (
            r#"who = { and = [{ username = "alice" }, { ipaddr = "11.0.0.0/8" }] }"#,
            false,
            false,
        ),
        (
            r#"who = { or = [{ username = "alice" }, { clientid = "dev-7" }] }"#,
            true,
            true,
        ),
    ];
    for (who, for_alice, for_anon) in cases {
        let r = rule(&format!(
            "permission = \"deny\"\n{who}\naction = \"publish\"\ntopics = [\"t\"]"
        ));
        let d = |c: &ClientInfo| r.decide(c, &pub_("t")) == Some(Permission::Deny);
        assert_eq!(d(&alice), for_alice, "{who} for alice");
        assert_eq!(d(&anon), for_anon, "{who} for the anonymous client");
    }
}

#[test]
fn ipv4_mapped_v6_addresses_match_v4_blocks() {
    let r = rule(
        "permission = \"allow\"\nwho = { ipaddr = \"10.0.0.0/8\" }\naction = \"all\"\ntopics = [\"#\"]",
    );
    let c = client("c", None, "::ffff:10.0.0.1");
    assert_eq!(r.decide(&c, &pub_("x")), Some(Permission::Allow));
    assert_eq!(r.decide(&client("c", None, "::1"), &pub_("x")), None);
    // A block written in IPv4-mapped form is kept as IPv4, so it matches IPv4 peers too.
    let mapped = rule(
        "permission = \"allow\"\nwho = { ipaddr = \"::ffff:10.0.0.0/104\" }\naction = \"all\"\ntopics = [\"#\"]",
    );
    assert_eq!(
        mapped.decide(&client("c", None, "10.1.1.1"), &pub_("x")),
        Some(Permission::Allow)
    );
    assert_eq!(
        mapped.decide(&client("c", None, "11.0.0.1"), &pub_("x")),
        None
    );
}

#[test]
fn actions_qos_and_retain() {
    let c = client("c", None, "127.0.0.1");
    let r = rule(
        "permission = \"deny\"\nwho = \"all\"\naction = { action = \"publish\", qos = [2], retain = true }\ntopics = [\"t/#\"]",
    );
    let publish = |qos, retain| Request::Publish {
        topic: "t/a",
        qos,
        retain,
    };
    assert_eq!(r.decide(&c, &publish(2, true)), Some(Permission::Deny));
    assert_eq!(r.decide(&c, &publish(1, true)), None, "qos 1 is not listed");
    assert_eq!(r.decide(&c, &publish(2, false)), None, "not retained");
    assert_eq!(
        r.decide(&c, &sub("t/a")),
        None,
        "publish rule, subscribe request"
    );

    let not_retained = rule(
        "permission = \"allow\"\nwho = \"all\"\naction = { action = \"all\", retain = false }\ntopics = [\"t\"]",
    );
    assert_eq!(
        not_retained.decide(&c, &publish_t(false)),
        Some(Permission::Allow)
    );
    assert_eq!(not_retained.decide(&c, &publish_t(true)), None);
    assert_eq!(
        not_retained.decide(&c, &sub("t")),
        Some(Permission::Allow),
        "retain says nothing about subscribe"
    );
    let subscribe =
        rule("permission = \"allow\"\nwho = \"all\"\naction = \"subscribe\"\ntopics = [\"t\"]");
    assert_eq!(subscribe.decide(&c, &sub("t")), Some(Permission::Allow));
    assert_eq!(subscribe.decide(&c, &pub_("t")), None);
}

fn publish_t(retain: bool) -> Request<'static> {
    Request::Publish {
        topic: "t",
        qos: 0,
        retain,
    }
}

#[test]
fn subscribe_filters_are_matched_by_coverage() {
    for (rule_filter, sub_filter, covered) in [
        ("a/#", "a/+/b", true),
        ("a/#", "a", true),
        ("a/#", "a/#", true),
        ("a/+", "a/b", true),
        ("a/+", "a/+", true),
        ("a/+", "a/#", false),
        ("a/b", "a/+", false),
        ("a/+/c", "a/b/c", true),
        ("#", "$SYS/x", false),
        ("+/x", "$SYS/x", false),
        ("$SYS/#", "$SYS/x", true),
        ("a", "a/b", false),
    ] {
        assert_eq!(
            covers(rule_filter, sub_filter),
            covered,
            "{rule_filter} covers {sub_filter}"
        );
    }
}

#[test]
fn eq_matches_the_filter_literally() {
    let c = client("c", None, "127.0.0.1");
    let r = rule("permission = \"allow\"\nwho = \"all\"\naction = \"all\"\ntopics = [\"eq t/#\"]");
    assert_eq!(r.decide(&c, &sub("t/#")), Some(Permission::Allow));
    assert_eq!(
        r.decide(&c, &sub("t/a")),
        None,
        "no wildcard matching with eq"
    );
    assert_eq!(r.decide(&c, &pub_("t/a")), None);
    let shared = Request::Subscribe {
        filter: "t/#",
        full: "$share/g/t/#",
        qos: 0,
    };
    assert_eq!(
        r.decide(&c, &shared),
        None,
        "eq compares the filter as sent"
    );
}

#[test]
fn placeholders_expand_and_never_match_without_a_value() {
    let r = rule(
        "permission = \"allow\"\nwho = \"all\"\naction = \"all\"\ntopics = [\"u/${username}/#\", \"c/${clientid}\"]",
    );
    let alice = client("c1", Some("alice"), "127.0.0.1");
    assert_eq!(
        r.decide(&alice, &pub_("u/alice/x")),
        Some(Permission::Allow)
    );
    assert_eq!(r.decide(&alice, &pub_("u/bob/x")), None);
    assert_eq!(r.decide(&alice, &pub_("c/c1")), Some(Permission::Allow));
    assert_eq!(r.decide(&alice, &sub("u/alice/+")), Some(Permission::Allow));
    let anon = client("c2", None, "127.0.0.1");
    assert_eq!(
        r.decide(&anon, &pub_("u/${username}/x")),
        None,
        "no username: no match"
    );
    assert_eq!(r.decide(&anon, &pub_("c/c2")), Some(Permission::Allow));
    for evil in ["#", "+", "a/b", "x\0"] {
        let c = client("c", Some(evil), "127.0.0.1");
        let topic = format!("u/{evil}/x");
        assert_eq!(
            r.decide(&c, &pub_(&topic)),
            None,
            "username {evil:?} never expands"
        );
        assert_eq!(r.decide(&c, &sub("u/+/x")), None);
    }
}

#[test]
fn first_matching_rule_wins() {
    let rules = compile_rules(&[
        toml::from_str(
            "permission = \"deny\"\nwho = \"all\"\naction = \"publish\"\ntopics = [\"a/secret\"]",
        )
        .expect("toml"),
        toml::from_str(
            "permission = \"allow\"\nwho = \"all\"\naction = \"publish\"\ntopics = [\"a/#\"]",
        )
        .expect("toml"),
    ])
    .expect("compiles");
    let c = client("c", None, "127.0.0.1");
    assert_eq!(
        decide(&rules, &c, &pub_("a/secret")),
        Some(Permission::Deny)
    );
    assert_eq!(decide(&rules, &c, &pub_("a/open")), Some(Permission::Allow));
    assert_eq!(decide(&rules, &c, &pub_("b")), None);
}

#[test]
fn bad_rules_are_refused_with_the_fault() {
    for (text, fault) in [
        (
            "permission = \"allow\"\nwho = { username_re = \"(\" }\naction = \"all\"\ntopics = [\"t\"]",
            "regex",
        ),
        (
            "permission = \"allow\"\nwho = { username_re = \"a{1000}{1000}\" }\naction = \"all\"\ntopics = [\"t\"]",
            "regex",
        ),
        (
            "permission = \"allow\"\nwho = { ipaddr = \"10.0.0.0/33\" }\naction = \"all\"\ntopics = [\"t\"]",
            "prefix",
        ),
        (
            "permission = \"allow\"\nwho = { ipaddr = \"nope\" }\naction = \"all\"\ntopics = [\"t\"]",
            "IP",
        ),
        (
            "permission = \"allow\"\nwho = \"all\"\naction = \"all\"\ntopics = [\"a/#/b\"]",
            "valid topic filter",
        ),
        (
            "permission = \"allow\"\nwho = \"all\"\naction = \"all\"\ntopics = []",
            "empty",
        ),
        (
            "permission = \"allow\"\nwho = \"all\"\naction = { action = \"all\", qos = [3] }\ntopics = [\"t\"]",
            "qos",
        ),
        (
            "permission = \"allow\"\nwho = { and = [] }\naction = \"all\"\ntopics = [\"t\"]",
            "empty",
        ),
    ] {
        let r: RuleConfig = toml::from_str(text).expect("toml");
        let e = compile_rule(&r).expect_err(text);
        assert!(e.contains(fault), "{text}: {e}");
    }
    let long = format!(
        "permission = \"allow\"\nwho = \"all\"\naction = \"all\"\ntopics = [\"{}\"]",
        "a".repeat(super::acl::MAX_RULE_TOPIC_LEN + 1)
    );
    let r: RuleConfig = toml::from_str(&long).expect("toml");
    assert!(compile_rule(&r).is_err(), "topic length is bounded");
    let mut nested = String::from("\"all\"");
    for _ in 0..=super::acl::MAX_WHO_DEPTH + 1 {
        nested = format!("{{ and = [{nested}] }}");
    }
    let deep =
        format!("permission = \"allow\"\nwho = {nested}\naction = \"all\"\ntopics = [\"t\"]");
    let r: RuleConfig = toml::from_str(&deep).expect("toml");
    assert!(compile_rule(&r).expect_err("too deep").contains("nested"));
}

#[test]
fn mosquitto_acl_file_is_translated() {
    let text = "\
# comment
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret
topic write logs
user bob
topic bob/#
pattern read devices/%c/in
pattern write users/%u/out
";
    let rules = mosquitto_acl::parse(text).expect("parses");
    let alice = client("a1", Some("alice"), "127.0.0.1");
    let bob = client("b1", Some("bob"), "127.0.0.1");
    let anon = client("x1", None, "127.0.0.1");
    let d = |c: &ClientInfo, r: Request<'_>| decide(&rules, c, &r);
    assert_eq!(
        d(&anon, sub("public/a")),
        Some(Permission::Allow),
        "before any user line"
    );
    assert_eq!(
        d(&alice, sub("public/a")),
        None,
        "anonymous lines are not alice's"
    );
    assert_eq!(d(&alice, pub_("alice/x")), Some(Permission::Allow));
    assert_eq!(
        d(&alice, pub_("alice/secret")),
        Some(Permission::Deny),
        "deny first"
    );
    assert_eq!(d(&alice, pub_("logs")), Some(Permission::Allow));
    assert_eq!(d(&alice, sub("logs")), None, "write is publish only");
    assert_eq!(
        d(&bob, sub("bob/+")),
        Some(Permission::Allow),
        "default readwrite"
    );
    assert_eq!(d(&bob, pub_("alice/x")), None);
    assert_eq!(d(&bob, sub("devices/b1/in")), Some(Permission::Allow), "%c");
    assert_eq!(d(&bob, sub("devices/a1/in")), None);
    assert_eq!(
        d(&bob, pub_("users/bob/out")),
        Some(Permission::Allow),
        "%u"
    );
    assert_eq!(
        d(&anon, pub_("users/x1/out")),
        None,
        "%u without a username"
    );

    for (bad, line) in [
        ("user alice\ntopc read a", "line 2"),
        ("topic", "line 1"),
        ("\n\nuser", "line 3"),
        ("topic read a/#/b", "line 1"),
    ] {
        let e = mosquitto_acl::parse(bad).expect_err(bad);
        assert!(e.starts_with(line), "{bad:?}: {e}");
    }
}

/// A deny rule refuses any subscription that could deliver one of its topics, however wide:
/// `#`, `+/+`, `+/pw` are refused by `deny secret/#` (an allow rule still needs to cover the
/// whole subscription).
#[test]
fn a_deny_rule_refuses_every_subscription_that_could_receive_its_topics() {
    let rules = vec![
        rule(
            r#"permission = "deny"
who = "all"
action = "subscribe"
topics = ["secret/#", "$SYS/#"]"#,
        ),
        rule(
            r##"permission = "allow"
who = "all"
action = "all"
topics = ["#"]"##,
        ),
    ];
    let c = client("c1", Some("u"), "127.0.0.1");
    for f in [
        "#",
        "+/+",
        "+/pw",
        "secret/+",
        "secret",
        "secret/a/#",
        "+/#",
        "$SYS/x",
    ] {
        assert_eq!(
            decide(&rules, &c, &sub(f)),
            Some(Permission::Deny),
            "{f} could receive secret/ topics"
        );
    }
    for f in ["public/#", "a/+", "a"] {
        assert_eq!(decide(&rules, &c, &sub(f)), Some(Permission::Allow), "{f}");
    }
    // A leading wildcard never reaches `$` topics, on either side.
    assert!(!super::acl::overlaps("$SYS/#", "#"));
    assert!(!super::acl::overlaps("#", "$SYS/x"));
    assert!(super::acl::overlaps("a/+/c", "a/b/+"));
    assert!(!super::acl::overlaps("a/+/c", "a/b/d"));
}

/// Placeholders are expanded once, and a value starting with `$` stands for nothing: a user
/// named `${clientid}` does not reach other clients' topics, a client id `$SYS` does not
/// turn `${clientid}/#` into `$SYS/#`.
#[test]
fn placeholder_values_are_expanded_once_and_never_a_dollar_level() {
    let own = vec![rule(
        r#"permission = "allow"
who = "all"
action = "all"
topics = ["users/${username}/#", "${clientid}/#"]"#,
    )];
    let tricky = client("alice", Some("${clientid}"), "127.0.0.1");
    assert_eq!(decide(&own, &tricky, &pub_("users/alice/x")), None);
    assert_eq!(
        decide(&own, &tricky, &pub_("alice/x")),
        Some(Permission::Allow),
        "its own client id still works"
    );
    let sys = client("$SYS", Some("u"), "127.0.0.1");
    assert_eq!(decide(&own, &sys, &pub_("$SYS/brokers/x")), None);
    assert_eq!(decide(&own, &sys, &sub("$SYS/#")), None);
}

/// `deny eq #` (EMQX's stock rule) also refuses `$share/g/#`; an `eq` allow still compares
/// the filter as sent.
#[test]
fn an_eq_deny_holds_inside_a_shared_subscription() {
    let rules = vec![
        rule(
            r##"permission = "deny"
who = "all"
action = "subscribe"
topics = ["eq #"]"##,
        ),
        rule(
            r#"permission = "allow"
who = "all"
action = "subscribe"
topics = ["eq $share/g/a"]"#,
        ),
    ];
    let c = client("c1", None, "127.0.0.1");
    let shared = |full, filter| Request::Subscribe {
        filter,
        full,
        qos: 0,
    };
    assert_eq!(
        decide(&rules, &c, &shared("$share/x/#", "#")),
        Some(Permission::Deny)
    );
    assert_eq!(decide(&rules, &c, &sub("#")), Some(Permission::Deny));
    assert_eq!(
        decide(&rules, &c, &shared("$share/g/a", "a")),
        Some(Permission::Allow)
    );
    assert_eq!(
        decide(&rules, &c, &sub("a")),
        None,
        "allow eq compares as sent"
    );
}
