//! Authorization rules in EMQX's model and the one matcher every source uses: a rule is a
//! permission (allow / deny), who it is for, an action (publish / subscribe / all, with
//! optional QoS and retain conditions) and a list of topics.
//!
//! Owns the compiled form of a rule ([`Rule`], from the `[authorization]` file rules, the
//! mosquitto `acl_file` import or a built-in database row) and the answer to "does this rule
//! say something about this request" ([`Rule::decide`]). Pure: no I/O, no clock; regexes are
//! compiled once, with a size limit, when the rule is built.
//!
//! Topic matching: a PUBLISH topic matches a rule topic by the MQTT wildcard rules; a
//! SUBSCRIBE filter matches when the rule's filter covers every topic the subscription could
//! receive (EMQX's semantics: rule `a/#` covers `a/+/b`, rule `a/+` does not cover `a/#`).
//! `eq <filter>` matches the filter as written, literally. `${username}` / `${clientid}`
//! are replaced by the client's values; a rule with a placeholder the client has no value
//! for (no username), or whose value holds `+`, `#`, `/` or NUL (it would widen the filter
//! or reach another client's levels; mosquitto refuses the same), does not match.

use std::net::IpAddr;
use std::sync::Arc;

use meshmq_proto::tables::AuthzRule;
use regex::Regex;

use crate::topic;

/// Largest compiled regex (bytes) a `username_re` / `clientid_re` may build.
pub const MAX_REGEX_SIZE: usize = 64 * 1024;
/// Longest rule topic (bytes, placeholders unexpanded).
pub const MAX_RULE_TOPIC_LEN: usize = 4096;
/// Deepest `and` / `or` nesting of a `who`.
pub const MAX_WHO_DEPTH: usize = 8;

/// Who is asking, as the rules see it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The client identifier.
    pub client_id: Arc<str>,
    /// The User Name of the CONNECT, if any.
    pub username: Option<Arc<str>>,
    /// The client's address.
    pub peerhost: IpAddr,
    /// Authenticated as a superuser: authorization is skipped.
    pub superuser: bool,
}

/// What the client is trying to do.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    /// Publish `topic` (a topic name) with this QoS and retain flag.
    Publish {
        /// The topic name.
        topic: &'a str,
        /// QoS 0, 1 or 2.
        qos: u8,
        /// The RETAIN flag.
        retain: bool,
    },
    /// Subscribe to `filter` (without any `$share/{group}/` prefix); `full` is the filter
    /// as sent (what `eq` compares with).
    Subscribe {
        /// The topic filter, shared prefix removed.
        filter: &'a str,
        /// The filter as sent.
        full: &'a str,
        /// Requested maximum QoS.
        qos: u8,
    },
}

impl Request<'_> {
    fn qos(&self) -> u8 {
        match *self {
            Request::Publish { qos, .. } | Request::Subscribe { qos, .. } => qos,
        }
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// The request is allowed.
    Allow,
    /// The request is denied.
    Deny,
}

/// Which requests a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// PUBLISH (and wills).
    Publish,
    /// SUBSCRIBE.
    Subscribe,
    /// Both.
    All,
}

/// Publish only: which RETAIN flag the rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainCond {
    /// Either.
    All,
    /// Retained publications only.
    Retained,
    /// Non-retained publications only.
    NotRetained,
}

/// An action with its conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// The requests the rule is about.
    pub kind: ActionKind,
    /// Bit `q` set: applies to QoS `q`. `0b111`: every QoS.
    pub qos_mask: u8,
    /// Publish only: which RETAIN flag.
    pub retain: RetainCond,
}

impl Action {
    /// `kind` for every QoS and retain flag.
    pub fn plain(kind: ActionKind) -> Self {
        Action {
            kind,
            qos_mask: 0b111,
            retain: RetainCond::All,
        }
    }

    fn applies(&self, req: &Request<'_>) -> bool {
        let kind = matches!(
            (self.kind, req),
            (ActionKind::All, _)
                | (ActionKind::Publish, Request::Publish { .. })
                | (ActionKind::Subscribe, Request::Subscribe { .. })
        );
        let qos = self.qos_mask & (1 << req.qos().min(2)) != 0;
        let retain = match (self.retain, req) {
            (RetainCond::Retained, Request::Publish { retain, .. }) => *retain,
            (RetainCond::NotRetained, Request::Publish { retain, .. }) => !*retain,
            _ => true,
        };
        kind && qos && retain
    }
}

/// An address or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `10.0.0.1`, `10.0.0.0/8`, `::1` or `fd00::/8`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        // Peers are matched in their IPv4 form, so an IPv4-mapped block is kept as IPv4.
        if let IpAddr::V6(v6) = addr
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            let prefix = prefix
                .checked_sub(96)
                .ok_or_else(|| format!("{s:?}: an IPv4-mapped block needs a prefix of 96..=128"))?;
            return Ok(IpNet {
                addr: IpAddr::V4(v4),
                prefix,
            });
        }
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Who a rule is for.
#[derive(Debug, Clone)]
pub enum Who {
    /// Every client.
    All,
    /// Clients without a username (mosquitto's topics before the first `user` line).
    Anonymous,
    /// This username.
    Username(String),
    /// This client id.
    ClientId(String),
    /// Usernames the regex finds a match in.
    UsernameRe(Regex),
    /// Client ids the regex finds a match in.
    ClientIdRe(Regex),
    /// Clients whose address is in one of the blocks.
    IpAddrs(Vec<IpNet>),
    /// Every one of these.
    And(Vec<Who>),
    /// Any one of these.
    Or(Vec<Who>),
}

impl Who {
    /// Compiles a regex for `username_re` / `clientid_re`, bounded in size.
    pub fn regex(pattern: &str) -> Result<Regex, String> {
        regex::RegexBuilder::new(pattern)
            .size_limit(MAX_REGEX_SIZE)
            .dfa_size_limit(MAX_REGEX_SIZE)
            .build()
            .map_err(|e| format!("bad regex {pattern:?}: {e}"))
    }

    fn matches(&self, c: &ClientInfo) -> bool {
        match self {
            Who::All => true,
            Who::Anonymous => c.username.is_none(),
            Who::Username(u) => c.username.as_deref() == Some(u.as_str()),
            Who::ClientId(id) => &*c.client_id == id.as_str(),
            Who::UsernameRe(re) => c.username.as_deref().is_some_and(|u| re.is_match(u)),
            Who::ClientIdRe(re) => re.is_match(&c.client_id),
            Who::IpAddrs(nets) => nets.iter().any(|n| n.contains(c.peerhost)),
            Who::And(all) => all.iter().all(|w| w.matches(c)),
            Who::Or(any) => any.iter().any(|w| w.matches(c)),
        }
    }
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Allow or deny when the rule matches.
    pub permission: Permission,
    /// Who it is for.
    pub who: Who,
    /// What it is about.
    pub action: Action,
    /// Topics (any one matching is enough), placeholders unexpanded, `eq ` kept.
    pub topics: Vec<String>,
}

impl Rule {
    /// The rule's permission if it matches `req` of client `c`; `None` if it says nothing.
    pub fn decide(&self, c: &ClientInfo, req: &Request<'_>) -> Option<Permission> {
        let hit = self.action.applies(req)
            && self.who.matches(c)
            && self
                .topics
                .iter()
                .any(|t| topic_matches(t, c, req, self.permission));
        hit.then_some(self.permission)
    }
}

/// The first of `rules` that matches decides; `None` when none does.
pub fn decide(rules: &[Rule], c: &ClientInfo, req: &Request<'_>) -> Option<Permission> {
    rules.iter().find_map(|r| r.decide(c, req))
}

/// Checks a rule topic: not empty, bounded, a valid filter (after `eq `).
pub fn check_topic(t: &str) -> Result<(), String> {
    if t.len() > MAX_RULE_TOPIC_LEN {
        return Err(format!("topic longer than {MAX_RULE_TOPIC_LEN} bytes"));
    }
    let filter = t.strip_prefix("eq ").unwrap_or(t);
    if filter.is_empty() || topic::validate_topic_filter(filter).is_err() {
        return Err(format!("{t:?} is not a valid topic filter"));
    }
    Ok(())
}

/// Whether the rule topic `pattern` of a rule with `permission` matches the request. A
/// SUBSCRIBE is matched by an allow rule that covers everything the filter can receive
/// ([`covers`]), and by a deny rule that shares any topic with it ([`overlaps`]): `#` is
/// refused by `deny secret/#`, since it would deliver `secret/...`.
pub fn topic_matches(
    pattern: &str,
    c: &ClientInfo,
    req: &Request<'_>,
    permission: Permission,
) -> bool {
    if let Some(literal) = pattern.strip_prefix("eq ") {
        return match *req {
            Request::Publish { topic, .. } => literal == topic,
            // A deny also holds for the filter inside `$share/{group}/`: `deny eq #` must
            // refuse `$share/g/#`, which receives the same messages.
            Request::Subscribe { full, filter, .. } => {
                literal == full || (permission == Permission::Deny && literal == filter)
            }
        };
    }
    let expanded;
    let filter = if pattern.contains("${") {
        match expand(pattern, c) {
            Some(f) => {
                expanded = f;
                expanded.as_str()
            }
            None => return false,
        }
    } else {
        pattern
    };
    match *req {
        Request::Publish { topic, .. } => topic::matches(filter, topic),
        Request::Subscribe { filter: asked, .. } => match permission {
            Permission::Allow => covers(filter, asked),
            Permission::Deny => overlaps(filter, asked),
        },
    }
}

/// `pattern` with `${username}` and `${clientid}` replaced, in one pass (a value is never
/// expanded again: a user named `${clientid}` stays literal); `None` if the client has no
/// value for one, or a value that is not a plain topic level.
fn expand(pattern: &str, c: &ClientInfo) -> Option<String> {
    const USERNAME: &str = "${username}";
    const CLIENTID: &str = "${clientid}";
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let (value, len) = if tail.starts_with(USERNAME) {
            (Some(c.username.as_deref()), USERNAME.len())
        } else if tail.starts_with(CLIENTID) {
            (Some(Some(&*c.client_id)), CLIENTID.len())
        } else {
            // An unknown placeholder stays literal (it then matches only that text).
            (None, 2)
        };
        match value {
            Some(v) => out.push_str(v.filter(|v| !v.is_empty() && is_plain_level(v))?),
            None => out.push_str("${"),
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    Some(out)
}

/// A value a placeholder may stand for: one topic level, no wildcard, and not starting with
/// `$` (a client id `$SYS` must not turn `${clientid}/#` into a grant of `$SYS/#`).
fn is_plain_level(v: &str) -> bool {
    !v.starts_with('$') && !v.bytes().any(|b| matches!(b, b'+' | b'#' | b'/' | 0))
}

/// Whether some topic matches both filters (a deny rule and a subscription): level by
/// level, `#` on either side matches the rest (and the parent level), `+` on either side any
/// one level, literals themselves. A leading wildcard on one side does not reach a `$` topic
/// of the other (MQTT 4.7.2).
pub fn overlaps(rule: &str, sub: &str) -> bool {
    let dollar_gap =
        |a: &str, b: &str| a.starts_with('$') && (b.starts_with('+') || b.starts_with('#'));
    if dollar_gap(rule, sub) || dollar_gap(sub, rule) {
        return false;
    }
    let mut r = rule.split('/');
    let mut s = sub.split('/');
    loop {
        match (r.next(), s.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether the rule filter `rule` covers every topic the subscription filter `sub` can
/// receive: level by level, `#` covers the rest, `+` covers any one level but `#`, a literal
/// covers only itself. A `$` topic is not covered by a leading wildcard (MQTT 4.7.2).
pub fn covers(rule: &str, sub: &str) -> bool {
    if sub.starts_with('$') && (rule.starts_with('+') || rule.starts_with('#')) {
        return false;
    }
    let mut r = rule.split('/');
    let mut s = sub.split('/');
    loop {
        match (r.next(), s.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(l)) if l != "#" => {}
            (Some(a), Some(b)) if a == b && a != "+" && a != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Compiles a built-in database row's rule (EMQX's JSON rule: a topic, permission, action,
/// QoS list and retain). `who` is the row's owner.
pub fn from_row(row: &AuthzRule, who: Who) -> Result<Rule, String> {
    check_topic(&row.topic)?;
    let permission = match row.permission.as_str() {
        "allow" => Permission::Allow,
        "deny" => Permission::Deny,
        p => return Err(format!("permission must be allow or deny, got {p:?}")),
    };
    let kind = match row.action.as_str() {
        "publish" => ActionKind::Publish,
        "subscribe" => ActionKind::Subscribe,
        "all" => ActionKind::All,
        a => {
            return Err(format!(
                "action must be publish, subscribe or all, got {a:?}"
            ));
        }
    };
    let qos_mask = qos_mask(row.qos.iter().copied())?;
    let retain = match row.retain.as_str() {
        "" | "all" => RetainCond::All,
        "true" => RetainCond::Retained,
        "false" => RetainCond::NotRetained,
        r => return Err(format!("retain must be true, false or all, got {r:?}")),
    };
    Ok(Rule {
        permission,
        who,
        action: Action {
            kind,
            qos_mask,
            retain,
        },
        topics: vec![row.topic.clone()],
    })
}

/// The mask of a QoS list (empty: every QoS); a value above 2 is an error.
pub fn qos_mask(qos: impl IntoIterator<Item = u32>) -> Result<u8, String> {
    let mut mask = 0u8;
    for q in qos {
        if q > 2 {
            return Err(format!("qos must be 0, 1 or 2, got {q}"));
        }
        mask |= 1 << q;
    }
    Ok(if mask == 0 { 0b111 } else { mask })
}
