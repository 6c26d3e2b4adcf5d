//! The authorization settings (`[authorization]`, EMQX's `authorization`): what happens
//! when no rule matches or a request is denied, the per-connection decision cache, and the
//! sources of rules (`[[authorization.sources]]`), tried in order, first match wins.
//!
//! Owns the file form of rules and [`compile_rules`], which turns them into
//! [`crate::auth::acl::Rule`]s (the checks and their error messages). Reading a mosquitto
//! `acl_file` is [`crate::auth::mosquitto_acl`]'s.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::authz_http::{AUTHZ_HTTP_PLACEHOLDERS, HttpAuthzConfig};
use crate::auth::acl::{self, Action, ActionKind, IpNet, Permission, RetainCond, Rule, Who};

/// `[authorization]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// What a request no source has a rule for gets: `allow` (EMQX's default) or `deny`.
    pub no_match: NoMatch,
    /// What happens to a client whose request is denied: `ignore` (the request is refused:
    /// SUBACK failure code, PUBACK/PUBREC 0x87 or a dropped message) or `disconnect` (5.0:
    /// DISCONNECT 0x87, then the connection closes; 3.1.1: it closes).
    pub deny_action: DenyAction,
    /// Reason code of a denied filter in a 5.0 SUBACK: `not_authorized` (0x87) or
    /// `unspecified_error` (0x80, what a 3.1.1 client always gets).
    pub subscribe_deny_code: SubscribeDenyCode,
    /// The per-connection cache of decisions.
    pub cache: AuthzCacheConfig,
    /// Where rules come from, tried in order; the first rule that matches decides.
    pub sources: Vec<AuthzSourceConfig>,
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        AuthorizationConfig {
            no_match: NoMatch::Allow,
            deny_action: DenyAction::Ignore,
            subscribe_deny_code: SubscribeDenyCode::NotAuthorized,
            cache: AuthzCacheConfig::default(),
            sources: Vec::new(),
        }
    }
}

/// `authorization.no_match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NoMatch {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

/// `authorization.deny_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DenyAction {
    /// Refuse the request, keep the connection.
    Ignore,
    /// Close the connection.
    Disconnect,
}

/// `authorization.subscribe_deny_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscribeDenyCode {
    /// 0x87 Not authorized.
    NotAuthorized,
    /// 0x80 Unspecified error.
    UnspecifiedError,
}

/// `authorization.cache`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuthzCacheConfig {
    /// Cache decisions per connection.
    pub enable: bool,
    /// Decisions one connection keeps (1..=1024); the oldest goes first when full.
    pub max_size: usize,
    /// How long a cached decision is used, in milliseconds.
    pub ttl_ms: u64,
}

impl Default for AuthzCacheConfig {
    fn default() -> Self {
        AuthzCacheConfig {
            enable: true,
            max_size: 32,
            ttl_ms: 60_000,
        }
    }
}

/// Most decisions a connection's cache may hold.
pub const MAX_CACHE_SIZE: usize = 1024;
/// Most rules in one `file` source (inline or imported).
pub const MAX_FILE_RULES: usize = 10_000;

/// One source of rules, named by `type` as in EMQX.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthzSourceConfig {
    /// `type = "file"`: rules written in the configuration (`rules`) or read at start from
    /// a mosquitto `acl_file` (`path` with `format = "mosquitto"`).
    File {
        /// False: skipped, as if absent.
        #[serde(default = "enabled")]
        enable: bool,
        /// The rules, in order.
        #[serde(default)]
        rules: Vec<RuleConfig>,
        /// A rules file read at start (instead of `rules`).
        #[serde(default)]
        path: Option<PathBuf>,
        /// The format of `path`: `mosquitto` (an `acl_file`).
        #[serde(default)]
        format: Option<FileFormat>,
    },
    /// `type = "built_in_database"`: rules per username, per client id and for all clients,
    /// in the cluster tables (managed through the REST API).
    BuiltInDatabase {
        /// False: skipped, as if absent.
        #[serde(default = "enabled")]
        enable: bool,
    },
    /// `type = "http"`: an HTTP service decides (see [`HttpAuthzConfig`]).
    Http(HttpAuthzConfig),
}

impl AuthzSourceConfig {
    /// Whether the source takes part.
    pub fn enabled(&self) -> bool {
        match self {
            AuthzSourceConfig::File { enable, .. }
            | AuthzSourceConfig::BuiltInDatabase { enable } => *enable,
            AuthzSourceConfig::Http(c) => c.enable,
        }
    }
}

/// The format of a rules file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// A mosquitto `acl_file` (`user`, `topic`, `pattern` lines).
    Mosquitto,
}

/// One rule of a `file` source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// `allow` or `deny`.
    pub permission: PermissionConfig,
    /// Who the rule is for: `"all"`, or a table such as `{ username = "u" }`.
    pub who: WhoConfig,
    /// `publish`, `subscribe`, `all`, or `{ action = "publish", qos = [0, 1], retain = true }`.
    pub action: ActionConfig,
    /// Topics (names or filters; `${username}` / `${clientid}`; `eq <filter>` literally).
    pub topics: Vec<String>,
}

/// `permission`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PermissionConfig {
    /// Allow.
    Allow,
    /// Deny.
    Deny,
}

/// `who`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum WhoConfig {
    /// `"all"`.
    Keyword(WhoKeyword),
    /// `{ username = ".." }`.
    Username {
        /// The username.
        username: String,
    },
    /// `{ clientid = ".." }`.
    Clientid {
        /// The client id.
        clientid: String,
    },
    /// `{ username_re = ".." }`.
    UsernameRe {
        /// A regex searched in the username.
        username_re: String,
    },
    /// `{ clientid_re = ".." }`.
    ClientidRe {
        /// A regex searched in the client id.
        clientid_re: String,
    },
    /// `{ ipaddr = "10.0.0.0/8" }`.
    Ipaddr {
        /// An address or CIDR block.
        ipaddr: String,
    },
    /// `{ ipaddrs = [..] }`.
    Ipaddrs {
        /// Addresses or CIDR blocks.
        ipaddrs: Vec<String>,
    },
    /// `{ and = [..] }`.
    And {
        /// Every one must match.
        and: Vec<WhoConfig>,
    },
    /// `{ or = [..] }`.
    Or {
        /// Any one must match.
        or: Vec<WhoConfig>,
    },
}

/// The `who` keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WhoKeyword {
    /// Every client.
    All,
}

/// `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ActionConfig {
    /// `publish`, `subscribe` or `all`.
    Plain(ActionName),
    /// With conditions.
    Detailed {
        /// `publish`, `subscribe` or `all`.
        action: ActionName,
        /// QoS levels the rule applies to (default: every one).
        #[serde(default)]
        qos: Vec<u32>,
        /// Publish only: `true`, `false` or `"all"` (default).
        #[serde(default)]
        retain: Option<RetainConfig>,
    },
}

/// An action name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionName {
    /// PUBLISH (and wills).
    Publish,
    /// SUBSCRIBE.
    Subscribe,
    /// Both.
    All,
}

/// `retain` of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RetainConfig {
    /// `true` / `false`.
    Flag(bool),
    /// `"all"`.
    Keyword(WhoKeyword),
}

pub(super) fn enabled() -> bool {
    true
}

impl From<ActionName> for ActionKind {
    fn from(a: ActionName) -> Self {
        match a {
            ActionName::Publish => ActionKind::Publish,
            ActionName::Subscribe => ActionKind::Subscribe,
            ActionName::All => ActionKind::All,
        }
    }
}

/// Compiles the rules of a `file` source; the error names the rule (0-based) and the fault.
pub fn compile_rules(rules: &[RuleConfig]) -> Result<Vec<Rule>, String> {
    if rules.len() > MAX_FILE_RULES {
        return Err(format!("more than {MAX_FILE_RULES} rules"));
    }
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| compile_rule(r).map_err(|e| format!("rules[{i}]: {e}")))
        .collect()
}

/// Compiles one rule.
pub fn compile_rule(r: &RuleConfig) -> Result<Rule, String> {
    if r.topics.is_empty() {
        return Err("topics must not be empty".into());
    }
    for t in &r.topics {
        acl::check_topic(t)?;
    }
    let action = match &r.action {
        ActionConfig::Plain(a) => Action::plain((*a).into()),
        ActionConfig::Detailed {
            action,
            qos,
            retain,
        } => Action {
            kind: (*action).into(),
            qos_mask: acl::qos_mask(qos.iter().copied())?,
            retain: match retain {
                None | Some(RetainConfig::Keyword(WhoKeyword::All)) => RetainCond::All,
                Some(RetainConfig::Flag(true)) => RetainCond::Retained,
                Some(RetainConfig::Flag(false)) => RetainCond::NotRetained,
            },
        },
    };
    Ok(Rule {
        permission: match r.permission {
            PermissionConfig::Allow => Permission::Allow,
            PermissionConfig::Deny => Permission::Deny,
        },
        who: compile_who(&r.who, 0)?,
        action,
        topics: r.topics.clone(),
    })
}

fn compile_who(w: &WhoConfig, depth: usize) -> Result<Who, String> {
    if depth > acl::MAX_WHO_DEPTH {
        return Err(format!(
            "who: and/or nested deeper than {}",
            acl::MAX_WHO_DEPTH
        ));
    }
    let list = |ws: &[WhoConfig]| -> Result<Vec<Who>, String> {
        if ws.is_empty() {
            return Err("who: and/or must not be empty".into());
        }
        ws.iter().map(|w| compile_who(w, depth + 1)).collect()
    };
    Ok(match w {
        WhoConfig::Keyword(WhoKeyword::All) => Who::All,
        WhoConfig::Username { username } => Who::Username(username.clone()),
        WhoConfig::Clientid { clientid } => Who::ClientId(clientid.clone()),
        WhoConfig::UsernameRe { username_re } => Who::UsernameRe(Who::regex(username_re)?),
        WhoConfig::ClientidRe { clientid_re } => Who::ClientIdRe(Who::regex(clientid_re)?),
        WhoConfig::Ipaddr { ipaddr } => Who::IpAddrs(vec![IpNet::parse(ipaddr)?]),
        WhoConfig::Ipaddrs { ipaddrs } => Who::IpAddrs(
            ipaddrs
                .iter()
                .map(|a| IpNet::parse(a))
                .collect::<Result<_, _>>()?,
        ),
        WhoConfig::And { and } => Who::And(list(and)?),
        WhoConfig::Or { or } => Who::Or(list(or)?),
    })
}

/// Checks `[authorization]`: cache bounds, each source's form, inline rules compiled (a
/// file `path` is read at start, where its errors name the line). The error names the key.
pub fn validate(c: &AuthorizationConfig) -> Result<(), (&'static str, String)> {
    if !(1..=MAX_CACHE_SIZE).contains(&c.cache.max_size) {
        let reason = format!("must be between 1 and {MAX_CACHE_SIZE}");
        return Err(("authorization.cache.max_size", reason));
    }
    if c.cache.ttl_ms == 0 {
        return Err((
            "authorization.cache.ttl_ms",
            "must be greater than 0".into(),
        ));
    }
    let mut builtin = 0;
    for (i, s) in c.sources.iter().enumerate() {
        match s {
            AuthzSourceConfig::File {
                rules,
                path,
                format,
                ..
            } => {
                let reason = match (path, format, rules.is_empty()) {
                    (Some(_), Some(_), true) => continue,
                    (Some(_), None, _) => "`path` needs `format = \"mosquitto\"`".to_owned(),
                    (Some(_), Some(_), false) => "give `rules` or `path`, not both".into(),
                    (None, Some(_), _) => "`format` needs a `path`".into(),
                    (None, None, _) => match compile_rules(rules) {
                        Ok(_) => continue,
                        Err(e) => e,
                    },
                };
                return Err((
                    "authorization.sources",
                    format!("sources[{i}] (file): {reason}"),
                ));
            }
            AuthzSourceConfig::BuiltInDatabase { .. } => {
                builtin += 1;
                if builtin > 1 {
                    let reason = format!("sources[{i}]: only one built_in_database source");
                    return Err(("authorization.sources", reason));
                }
            }
            AuthzSourceConfig::Http(h) => {
                use super::authn_checks::{HttpRequestKeys, HttpRequestParts, check_http_request};
                let keys = HttpRequestKeys {
                    url: "authorization.sources.url",
                    request_timeout: "authorization.sources.request_timeout",
                    pool_size: "authorization.sources.pool_size",
                    body: "authorization.sources.body",
                    headers: "authorization.sources.headers",
                };
                let parts = HttpRequestParts {
                    url: &h.url,
                    request_timeout: h.request_timeout,
                    pool_size: h.pool_size,
                    body: &h.body,
                    headers: &h.headers,
                };
                check_http_request(&keys, parts, AUTHZ_HTTP_PLACEHOLDERS)
                    .map_err(|(key, e)| (key, format!("sources[{i}] (http): {e}")))?;
            }
        }
    }
    Ok(())
}
