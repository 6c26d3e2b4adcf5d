//! Authorization: every PUBLISH (wills included) and every SUBSCRIBE filter is checked here
//! before it takes effect ([`Authz::check`]).
//!
//! The order of a decision: a superuser is allowed (but for `$SYS`, below); the
//! embedder's hook ([`Authorizer`]) may deny; then the rules attached to the client at
//! CONNECT (none today; the JWT `acl` claim will put its rules there), then the configured
//! sources (`[[authorization.sources]]`) in order; the first rule that matches decides, and
//! `authorization.no_match` decides when none does. Publishing into `$SYS` needs an
//! explicit grant (the hook's `allows_sys_publish`, or an allow rule naming the topic; a
//! leading wildcard never matches `$SYS`), whoever the client is. Subscribing to `$SYS`
//! needs a loopback address, a superuser or an explicit allow rule (EMQX's default rules).
//!
//! Decisions are cached per connection ([`cache`]) and dropped when the cluster's
//! authorization epoch moves (a rule change in the built-in database, or
//! `DELETE /api/v5/authorization/cache`). Owns the metrics
//! `meshmq_authorization_total{source,result}` (every source asked),
//! `meshmq_authorization_decisions_total{result,source}` (once per decision, by what
//! decided) and `meshmq_authorization_cache_total{result}`. It never blocks: it runs on connection
//! tasks, and the built-in database is the local replica. An `http` source ([`http`]) is
//! asked asynchronously ([`Authz::check_async`], awaited by the connection's task, the
//! cache in front); a decision in which the service failed is not cached.

mod attached;
pub use attached::attached_rules;
pub mod api;
pub mod cache;
mod hook;
pub mod http;
pub mod rules_json;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use anyhow::Context as _;
use meshmq_shared::auth::acl::{self, ClientInfo, Permission, Request, Rule, Who};
use meshmq_shared::auth::mosquitto_acl;
use meshmq_shared::codec::ReasonCode;
use meshmq_shared::config::authz::{FileFormat, compile_rules};
use meshmq_shared::config::{
    AuthorizationConfig, AuthzSourceConfig, DenyAction, NoMatch, SubscribeDenyCode,
};
use meshmq_shared::metrics as m;
use meshmq_shared::tables::{AuthzRulesKind, Tables};

pub use cache::Cache;
pub use hook::{AllowAll, Authorizer, AuthzAction, PublishDenied, is_sys_topic};

/// A connected client as authorization sees it: who it is, and rules attached to it at
/// CONNECT (checked before the configured sources).
#[derive(Debug, Clone)]
pub struct AuthzClient {
    /// Client id, username, address, superuser.
    pub info: ClientInfo,
    /// Rules that came with the client's authentication (e.g. a JWT `acl` claim).
    pub attached: Vec<Rule>,
    /// The client certificate's names, for the HTTP source's `${cert_common_name}` and
    /// `${cert_subject}` (boxed: most clients have none).
    pub cert: Option<Box<crate::listeners::CertNames>>,
}

/// One configured source of rules.
pub enum Source {
    /// `type = "file"`: rules compiled at start.
    File(Vec<Rule>),
    /// `type = "built_in_database"`: the `authz_rules` table of the local replica.
    BuiltInDatabase,
    /// `type = "http"`: an HTTP service, asked asynchronously.
    Http(Box<http::HttpSource>),
}

impl Source {
    /// The `source` label.
    fn label(&self) -> &'static str {
        match self {
            Source::File(_) => "file",
            Source::BuiltInDatabase => "built_in_database",
            Source::Http(_) => "http",
        }
    }

    fn decide(&self, tables: &Tables, c: &ClientInfo, req: &Request<'_>) -> Option<Permission> {
        match self {
            Source::File(rules) => acl::decide(rules, c, req),
            Source::BuiltInDatabase => builtin_decide(tables, c, req),
            // Only asked on the async path (`Authz::check_async`).
            Source::Http(_) => None,
        }
    }
}

/// The built-in database's rules: the client id's, then the username's, then the all list.
fn builtin_decide(tables: &Tables, c: &ClientInfo, req: &Request<'_>) -> Option<Permission> {
    let keys = [
        (AuthzRulesKind::Clientid, Some(&*c.client_id)),
        (AuthzRulesKind::Username, c.username.as_deref()),
        (AuthzRulesKind::All, Some("")),
    ];
    for (kind, key) in keys {
        let Some(row) = key.and_then(|k| tables.authz_rules(kind, k)) else {
            continue;
        };
        for r in &row.rules {
            // Rows were checked on apply; one that no longer compiles says nothing.
            if let Some(p) = acl::from_row(r, Who::All)
                .ok()
                .and_then(|rule| rule.decide(c, req))
            {
                return Some(p);
            }
        }
    }
    None
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// A publication into `$SYS` without an explicit grant, or a `$SYS` subscription from
    /// another machine without one.
    SysTopic,
    /// A rule, the hook, or `no_match = deny`.
    NotAuthorized,
}

impl From<Denied> for PublishDenied {
    fn from(d: Denied) -> Self {
        match d {
            Denied::SysTopic => PublishDenied::SysTopic,
            Denied::NotAuthorized => PublishDenied::NotAuthorized,
        }
    }
}

/// The authorization engine of a node: the hook, the sources and the settings.
pub struct Authz {
    hook: Arc<dyn Authorizer>,
    sources: Vec<Source>,
    no_match: NoMatch,
    /// `authorization.deny_action`.
    pub deny_action: DenyAction,
    /// The 5.0 SUBACK code of a denied filter.
    pub subscribe_deny_code: ReasonCode,
    /// `authorization.cache`: enabled, max size, ttl.
    cache: Option<(usize, std::time::Duration)>,
}

impl Authz {
    /// The engine of `config.authorization` with the embedder's `hook`; reads and parses
    /// the `file` sources' `path`s (errors name the file and line).
    pub fn new(config: &AuthorizationConfig, hook: Arc<dyn Authorizer>) -> anyhow::Result<Self> {
        let mut sources = Vec::new();
        for (i, s) in config.sources.iter().enumerate() {
            if !s.enabled() {
                continue;
            }
            sources.push(match s {
                AuthzSourceConfig::File {
                    rules, path: None, ..
                } => Source::File(
                    compile_rules(rules)
                        .map_err(|e| anyhow::anyhow!("authorization.sources[{i}]: {e}"))?,
                ),
                AuthzSourceConfig::File {
                    path: Some(path),
                    format: Some(FileFormat::Mosquitto) | None,
                    ..
                } => {
                    Source::File(load_acl_file(path).with_context(|| {
                        format!("authorization.sources[{i}]: {}", path.display())
                    })?)
                }
                AuthzSourceConfig::BuiltInDatabase { .. } => Source::BuiltInDatabase,
                AuthzSourceConfig::Http(h) => Source::Http(
                    http::HttpSource::new(h)
                        .map(Box::new)
                        .map_err(|e| anyhow::anyhow!("authorization.sources[{i}]: {e}"))?,
                ),
            });
        }
        Ok(Authz {
            hook,
            sources,
            no_match: config.no_match,
            deny_action: config.deny_action,
            subscribe_deny_code: match config.subscribe_deny_code {
                SubscribeDenyCode::NotAuthorized => ReasonCode::NotAuthorized,
                SubscribeDenyCode::UnspecifiedError => ReasonCode::UnspecifiedError,
            },
            cache: config.cache.enable.then(|| {
                (
                    config.cache.max_size,
                    std::time::Duration::from_millis(config.cache.ttl_ms),
                )
            }),
        })
    }

    /// A fresh cache for one connection (`None` when caching is off).
    pub fn new_cache(&self) -> Option<Cache> {
        self.cache.map(|(max, ttl)| Cache::new(max, ttl))
    }

    /// May `client` do `req`? `cache` is the connection's (`None` for wills). Counts the
    /// per-source results, the cache hits/misses and the decision; the caller counts the
    /// refusal.
    pub fn check(
        &self,
        tables: &crate::ctx::TableState,
        client: &AuthzClient,
        cache: Option<&Cache>,
        req: Request<'_>,
    ) -> Result<(), Denied> {
        let epoch = match early(tables, client, cache, &req) {
            Early::Decided(v) => return v,
            Early::Epoch(epoch) => epoch,
        };
        let (verdict, by) = tables.core.read(|t| self.decide(t, client, &req));
        if let (Some(c), Some(epoch)) = (cache, epoch) {
            c.put(epoch, &req, verdict);
        }
        decided(by, verdict)
    }

    /// True when a source is an HTTP service: [`check_async`](Self::check_async) must be
    /// used (the synchronous [`check`](Self::check) skips such sources).
    pub fn has_async_sources(&self) -> bool {
        self.sources.iter().any(|s| matches!(s, Source::Http(_)))
    }

    /// [`check`](Self::check), asking HTTP sources (awaited on the caller's task) when there
    /// are any. A decision during which a service failed is not cached.
    pub async fn check_async(
        &self,
        tables: &crate::ctx::TableState,
        client: &AuthzClient,
        cache: Option<&Cache>,
        req: Request<'_>,
    ) -> Result<(), Denied> {
        if !self.has_async_sources() {
            return self.check(tables, client, cache, req);
        }
        let epoch = match early(tables, client, cache, &req) {
            Early::Decided(v) => return v,
            Early::Epoch(epoch) => epoch,
        };
        let (rule, failed) = self.rules_decide_async(tables, client, &req).await;
        let (verdict, by) = self.finish(client, &req, rule);
        if let (Some(c), Some(epoch), false) = (cache, epoch, failed) {
            c.put(epoch, &req, verdict);
        }
        decided(by, verdict)
    }

    /// [`rules_decide`](Self::rules_decide) with the HTTP sources asked; true when one
    /// failed (then it had no match).
    async fn rules_decide_async(
        &self,
        tables: &crate::ctx::TableState,
        client: &AuthzClient,
        req: &Request<'_>,
    ) -> (Option<(Permission, &'static str)>, bool) {
        let c = &client.info;
        if !client.attached.is_empty() {
            let d = acl::decide(&client.attached, c, req);
            count("client", d);
            if let Some(p) = d {
                return (Some((p, "client")), false);
            }
        }
        let mut failed = false;
        for s in &self.sources {
            let d = match s {
                Source::Http(h) => match h.decide(c, client.cert.as_deref(), req).await {
                    Ok(d) => d,
                    Err(()) => {
                        metrics::counter!(m::AUTHZ_TOTAL, "source" => "http", "result" => "error")
                            .increment(1);
                        failed = true;
                        continue;
                    }
                },
                other => tables.core.read(|t| other.decide(t, c, req)),
            };
            count(s.label(), d);
            if let Some(p) = d {
                return (Some((p, s.label())), failed);
            }
        }
        (None, failed)
    }

    /// The decision itself, uncached, and what decided it.
    fn decide(
        &self,
        tables: &Tables,
        client: &AuthzClient,
        req: &Request<'_>,
    ) -> (Result<(), Denied>, &'static str) {
        let rule = self.rules_decide(tables, client, req);
        self.finish(client, req, rule)
    }

    /// The verdict once the rules said `rule` (the permission of the first rule that
    /// matched, and its source): the `$SYS` grant, superuser, the hook, `no_match`. With
    /// the `source` label of what decided.
    fn finish(
        &self,
        client: &AuthzClient,
        req: &Request<'_>,
        rule: Option<(Permission, &'static str)>,
    ) -> (Result<(), Denied>, &'static str) {
        let decided = rule.map(|(p, _)| p);
        let c = &client.info;
        let sys_topic = match *req {
            Request::Publish { topic, .. } if is_sys_topic(topic) => Some(topic),
            _ => None,
        };
        let sys_granted = sys_topic.is_some_and(|t| {
            self.hook
                .allows_sys_publish(&c.client_id, c.username.as_deref(), t)
        });
        if sys_topic.is_some() && !(sys_granted || decided == Some(Permission::Allow)) {
            return (Err(Denied::SysTopic), "sys_topic");
        }
        // Reading `$SYS` (its client events name every client, user and address): as
        // EMQX's default rules, only a client on this machine, a superuser, or one an
        // explicit allow rule names.
        let sys_read = matches!(*req, Request::Subscribe { filter, .. } if is_sys_topic(filter));
        let local = c.peerhost.to_canonical().is_loopback();
        if sys_read && !(local || c.superuser || decided == Some(Permission::Allow)) {
            return (Err(Denied::SysTopic), "sys_topic");
        }
        if c.superuser {
            return (Ok(()), "superuser");
        }
        let (action, topic) = match *req {
            Request::Publish { topic, .. } => (AuthzAction::Publish, topic),
            Request::Subscribe { full, .. } => (AuthzAction::Subscribe, full),
        };
        if !self
            .hook
            .check(&c.client_id, c.username.as_deref(), action, topic)
        {
            metrics::counter!(m::AUTHZ_TOTAL, "source" => "hook", "result" => "deny").increment(1);
            return (Err(Denied::NotAuthorized), "hook");
        }
        let (permission, by) = rule.unwrap_or(match self.no_match {
            NoMatch::Allow => (Permission::Allow, "no_match"),
            NoMatch::Deny => (Permission::Deny, "no_match"),
        });
        match permission {
            Permission::Allow => (Ok(()), by),
            Permission::Deny => (Err(Denied::NotAuthorized), by),
        }
    }

    /// The first rule that matches, across the attached rules and the sources.
    fn rules_decide(
        &self,
        tables: &Tables,
        client: &AuthzClient,
        req: &Request<'_>,
    ) -> Option<(Permission, &'static str)> {
        let c = &client.info;
        if !client.attached.is_empty() {
            let d = acl::decide(&client.attached, c, req);
            count("client", d);
            if let Some(p) = d {
                return Some((p, "client"));
            }
        }
        for s in &self.sources {
            let d = s.decide(tables, c, req);
            count(s.label(), d);
            if let Some(p) = d {
                return Some((p, s.label()));
            }
        }
        None
    }
}

/// What is decided before the rules are read: a superuser (but for `$SYS`), or the
/// connection's cache.
enum Early {
    /// The verdict, counted.
    Decided(Result<(), Denied>),
    /// Ask the rules; the cache's epoch to store the answer under (`None`: no cache).
    Epoch(Option<u64>),
}

/// The superuser's pass and the cache lookup (hits and misses counted).
fn early(
    tables: &crate::ctx::TableState,
    client: &AuthzClient,
    cache: Option<&Cache>,
    req: &Request<'_>,
) -> Early {
    let sys = matches!(req, Request::Publish { topic, .. } if is_sys_topic(topic));
    if client.info.superuser && !sys {
        return Early::Decided(decided("superuser", Ok(())));
    }
    let Some(c) = cache else {
        return Early::Epoch(None);
    };
    let epoch = tables.core.read(Tables::authz_epoch);
    if let Some(v) = c.get(epoch, req) {
        metrics::counter!(m::AUTHZ_CACHE_TOTAL, "result" => "hit").increment(1);
        return Early::Decided(decided("cache", v));
    }
    metrics::counter!(m::AUTHZ_CACHE_TOTAL, "result" => "miss").increment(1);
    Early::Epoch(Some(epoch))
}

/// Counts a decision once (`meshmq_authorization_decisions_total{result,source}`), `by`
/// what made it, and passes the verdict on.
fn decided(by: &'static str, verdict: Result<(), Denied>) -> Result<(), Denied> {
    // One arm per label pair: literal labels make static keys, so counting a decision (on
    // every PUBLISH) allocates nothing.
    macro_rules! count {
        ($result:literal) => {
            match by {
                "superuser" => count!($result, "superuser"),
                "cache" => count!($result, "cache"),
                "client" => count!($result, "client"),
                "file" => count!($result, "file"),
                "built_in_database" => count!($result, "built_in_database"),
                "http" => count!($result, "http"),
                "no_match" => count!($result, "no_match"),
                "hook" => count!($result, "hook"),
                _ => count!($result, "sys_topic"),
            }
        };
        ($result:literal, $source:literal) => {
            metrics::counter!(m::AUTHZ_DECISIONS_TOTAL, "result" => $result, "source" => $source)
                .increment(1)
        };
    }
    if verdict.is_ok() {
        count!("allow");
    } else {
        count!("deny");
    }
    verdict
}

fn count(source: &'static str, d: Option<Permission>) {
    let result = match d {
        Some(Permission::Allow) => "allow",
        Some(Permission::Deny) => "deny",
        None => "nomatch",
    };
    metrics::counter!(m::AUTHZ_TOTAL, "source" => source, "result" => result).increment(1);
}

/// Reads and parses a mosquitto `acl_file` (bounded in size).
fn load_acl_file(path: &std::path::Path) -> anyhow::Result<Vec<Rule>> {
    use std::io::Read;
    let file = std::fs::File::open(path).context("cannot open the acl_file")?;
    let mut text = String::new();
    file.take(mosquitto_acl::MAX_ACL_FILE_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .context("cannot read the acl_file (it must be UTF-8)")?;
    mosquitto_acl::parse(&text).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The decision for a will: the publisher's rights (no cache), the refusal counted.
pub async fn check_will(
    ctx: &crate::ctx::Ctx,
    client: &AuthzClient,
    w: &meshmq_shared::codec::Will,
) -> bool {
    let req = Request::Publish {
        topic: &w.topic,
        qos: w.qos as u8,
        retain: w.retain,
    };
    match ctx.authz.check_async(&ctx.tables, client, None, req).await {
        Ok(()) => true,
        Err(d) => {
            PublishDenied::from(d).count();
            false
        }
    }
}
