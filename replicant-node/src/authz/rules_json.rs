//! The JSON of the built-in database's authorization rules (EMQX's shapes) and its checks:
//! a rule `{"topic", "permission", "action", "qos"?, "retain"?}`, an entry `{username |
//! clientid, rules}`, and the table row they become.
//!
//! Owns the conversion both ways and the check of a rule as the table will check it; it
//! must never write anything (the routes in [`super::api`] do).

use meshmq_proto::tables::{AuthzRule, AuthzRules, AuthzRulesKind};
use meshmq_shared::auth::acl::{self, Who};
use meshmq_shared::tables::authz_rules::{MAX_KEY_LEN, MAX_RULES};
use serde::{Deserialize, Serialize};

use crate::http::api::{ApiError, bad_request};

/// A rule as the API reads and writes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleJson {
    /// Topic name or filter.
    pub topic: String,
    /// `allow` / `deny`.
    pub permission: String,
    /// `publish` / `subscribe` / `all`.
    pub action: String,
    /// QoS levels (default: all).
    #[serde(default)]
    pub qos: Vec<u32>,
    /// `true` / `false` / `"all"` (default).
    #[serde(default)]
    pub retain: Option<RetainJson>,
}

/// `retain` as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(untagged)]
pub enum RetainJson {
    /// `true` / `false`.
    Flag(bool),
    /// `"all"`.
    Word(String),
}

impl RuleJson {
    /// The table's form.
    pub fn to_row(&self) -> AuthzRule {
        let retain = match &self.retain {
            None => "all".to_owned(),
            Some(RetainJson::Flag(b)) => b.to_string(),
            Some(RetainJson::Word(w)) => w.clone(),
        };
        AuthzRule {
            topic: self.topic.clone(),
            permission: self.permission.clone(),
            action: self.action.clone(),
            qos: self.qos.clone(),
            retain,
        }
    }

    /// The API's form of a stored rule.
    pub fn from_row(r: &AuthzRule) -> Self {
        let retain = match r.retain.as_str() {
            "true" => RetainJson::Flag(true),
            "false" => RetainJson::Flag(false),
            _ => RetainJson::Word("all".into()),
        };
        RuleJson {
            topic: r.topic.clone(),
            permission: r.permission.clone(),
            action: r.action.clone(),
            qos: if r.qos.is_empty() {
                vec![0, 1, 2]
            } else {
                r.qos.clone()
            },
            retain: Some(retain),
        }
    }
}

/// `{username|clientid, rules}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AuthzRulesEntry)]
pub struct Entry {
    /// The username (the `users` routes).
    #[serde(default)]
    pub username: Option<String>,
    /// The client id (the `clients` routes).
    #[serde(default)]
    pub clientid: Option<String>,
    /// The rules, in order (at most 100).
    pub rules: Vec<RuleJson>,
}

impl Entry {
    /// The username or client id, as `kind` wants.
    pub fn key(&self, kind: AuthzRulesKind) -> Option<&str> {
        match kind {
            AuthzRulesKind::Username => self.username.as_deref(),
            AuthzRulesKind::Clientid => self.clientid.as_deref(),
            _ => None,
        }
    }
}

/// The key's field name for `kind`.
pub fn key_name(kind: AuthzRulesKind) -> &'static str {
    match kind {
        AuthzRulesKind::Clientid => "clientid",
        _ => "username",
    }
}

/// The table row for (kind, key, rules), checked as the table will check it.
pub fn row(kind: AuthzRulesKind, key: &str, rules: &[RuleJson]) -> Result<AuthzRules, ApiError> {
    if kind != AuthzRulesKind::All && (key.is_empty() || key.len() > MAX_KEY_LEN) {
        return Err(bad_request(format!(
            "{} must be 1..={MAX_KEY_LEN} bytes",
            key_name(kind)
        )));
    }
    if rules.len() > MAX_RULES {
        return Err(bad_request(format!("more than {MAX_RULES} rules")));
    }
    let rules: Vec<AuthzRule> = rules.iter().map(RuleJson::to_row).collect();
    for (i, r) in rules.iter().enumerate() {
        acl::from_row(r, Who::All).map_err(|e| bad_request(format!("rules[{i}]: {e}")))?;
    }
    Ok(AuthzRules {
        kind: kind as i32,
        key: key.to_owned(),
        rules,
    })
}
