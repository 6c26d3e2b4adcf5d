//! Per-client authorization rules handed over by an authenticator (a JWT's `acl` claim, an
//! HTTP service's `acl` field), parsed from EMQX's two formats into one neutral list that
//! authorization can apply.
//!
//! EMQX 5.8's format is a list of rules, `{"permission": "allow" | "deny", "action":
//! "publish" | "subscribe" | "all", "topic": "t/1"` (or `"topics": [...]`), optional
//! `"qos": [0, 1]` and `"retain": true | false | "all"}`; the older one is an object
//! `{"pub": [...], "sub": [...], "all": [...]}` of allowed topics. Owns the parsing and its
//! bounds; never decides anything itself.

use std::sync::Arc;

use serde::Deserialize;

/// Most rules (topics counted one by one) an authenticator may hand over.
pub const MAX_RULES: usize = 256;
/// Longest topic or filter in a rule.
pub const MAX_TOPIC_LEN: usize = 1024;

/// The rules, in order (first match wins).
pub type Acl = Arc<[AclRule]>;

/// One rule for one topic filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    /// Allow or deny.
    pub allow: bool,
    /// Which operation.
    pub action: AclAction,
    /// The topic filter (may hold placeholders and `eq ` as in EMQX's rules).
    pub topic: String,
    /// QoS levels the rule applies to (`None`: all).
    pub qos: Option<Vec<u8>>,
    /// Retained publishes only (`Some(true)`), non-retained only, or both (`None`).
    pub retain: Option<bool>,
}

/// The operation a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclAction {
    /// PUBLISH.
    Publish,
    /// SUBSCRIBE.
    Subscribe,
    /// Both.
    All,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleV2 {
    permission: Permission,
    action: AclAction,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    topics: Option<Vec<String>>,
    #[serde(default)]
    qos: Option<Vec<u8>>,
    #[serde(default)]
    retain: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Permission {
    Allow,
    Deny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesV1 {
    #[serde(default)]
    r#pub: Vec<String>,
    #[serde(default)]
    sub: Vec<String>,
    #[serde(default)]
    all: Vec<String>,
}

/// Parses either format; an error says why (the token or answer is then refused).
pub fn parse(value: &serde_json::Value) -> Result<Acl, String> {
    let mut out = Vec::new();
    let mut push = |rule: AclRule| {
        if rule.topic.is_empty() || rule.topic.len() > MAX_TOPIC_LEN {
            return Err(format!("a topic must be 1 to {MAX_TOPIC_LEN} bytes"));
        }
        if out.len() >= MAX_RULES {
            return Err(format!("more than {MAX_RULES} rules"));
        }
        out.push(rule);
        Ok(())
    };
    match value {
        serde_json::Value::Array(_) => {
            let rules: Vec<RuleV2> =
                serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
            for r in rules {
                if r.qos.as_ref().is_some_and(|q| q.iter().any(|&q| q > 2)) {
                    return Err("qos must be 0, 1 or 2".into());
                }
                let retain = match r.retain {
                    None => None,
                    Some(serde_json::Value::Bool(b)) => Some(b),
                    Some(serde_json::Value::String(s)) if s == "all" => None,
                    Some(serde_json::Value::String(s)) if s == "true" => Some(true),
                    Some(serde_json::Value::String(s)) if s == "false" => Some(false),
                    Some(_) => return Err("retain must be true, false or \"all\"".into()),
                };
                let topics = r.topic.into_iter().chain(r.topics.into_iter().flatten());
                let mut any = false;
                for topic in topics {
                    any = true;
                    push(AclRule {
                        allow: matches!(r.permission, Permission::Allow),
                        action: r.action,
                        topic,
                        qos: r.qos.clone(),
                        retain,
                    })?;
                }
                if !any {
                    return Err("a rule needs topic or topics".into());
                }
            }
        }
        serde_json::Value::Object(_) => {
            let v1: RulesV1 = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
            let lists = [
                (AclAction::Publish, v1.r#pub),
                (AclAction::Subscribe, v1.sub),
                (AclAction::All, v1.all),
            ];
            for (action, topics) in lists {
                for topic in topics {
                    push(AclRule {
                        allow: true,
                        action,
                        topic,
                        qos: None,
                        retain: None,
                    })?;
                }
            }
        }
        _ => return Err("must be a list of rules or a {pub, sub, all} object".into()),
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_formats_parse_into_rules() {
        let v2 = parse(&json!([
            {"permission": "allow", "action": "publish", "topic": "t/1", "qos": [0, 1]},
            {"permission": "deny", "action": "all", "topics": ["a", "b"], "retain": "all"}
        ]))
        .expect("v2");
        assert_eq!(v2.len(), 3);
        assert!(v2[0].allow && v2[0].action == AclAction::Publish);
        assert_eq!(v2[0].qos.as_deref(), Some(&[0u8, 1][..]));
        assert!(!v2[2].allow && v2[2].topic == "b" && v2[2].retain.is_none());
        let v1 = parse(&json!({"pub": ["p"], "sub": ["s/#"], "all": ["x"]})).expect("v1");
        let actions: Vec<_> = v1.iter().map(|r| (r.action, r.allow)).collect();
        assert_eq!(
            actions,
            [
                (AclAction::Publish, true),
                (AclAction::Subscribe, true),
                (AclAction::All, true)
            ]
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in [
            json!("t/#"),
            json!([{"permission": "maybe", "action": "publish", "topic": "t"}]),
            json!([{"permission": "allow", "action": "publish"}]),
            json!([{"permission": "allow", "action": "publish", "topic": "t", "qos": [3]}]),
            json!({"pub": ["t"], "other": []}),
            json!({"pub": [""]}),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
        let many: Vec<_> = (0..=MAX_RULES).map(|i| format!("t/{i}")).collect();
        assert!(parse(&json!({ "pub": many })).is_err());
    }
}
