//! The per-connection cache of authorization decisions (EMQX's `authorization.cache`).
//!
//! Owns at most `max_size` decisions keyed by (action, QoS, retain, topic), each used for
//! `ttl` after it was made; when full, expired entries go first, then the oldest. Every
//! entry belongs to the cluster's authorization epoch it was made in: a lookup under a newer
//! epoch (a rule changed, or the cache was cleared through the API) empties the cache.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use meshmq_shared::auth::acl::Request;
use parking_lot::Mutex;

use super::Denied;

/// Longest topic or filter whose decision is kept: a cache of `max_size` entries then holds
/// at most `max_size` x 256 bytes of keys, whatever topics a client sends (a longer one is
/// decided every time, as with the cache off).
pub const MAX_CACHED_TOPIC: usize = 256;

/// One connection's cache.
pub struct Cache {
    max_size: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    epoch: u64,
    entries: HashMap<Key, (Result<(), Denied>, Instant)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    subscribe: bool,
    qos: u8,
    retain: bool,
    /// The topic (publish) or the filter as sent (subscribe).
    topic: Box<str>,
}

impl Key {
    fn of(req: &Request<'_>) -> Self {
        match *req {
            Request::Publish { topic, qos, retain } => Key {
                subscribe: false,
                qos,
                retain,
                topic: topic.into(),
            },
            Request::Subscribe { full, qos, .. } => Key {
                subscribe: true,
                qos,
                retain: false,
                topic: full.into(),
            },
        }
    }
}

impl Cache {
    /// An empty cache.
    pub fn new(max_size: usize, ttl: Duration) -> Self {
        Cache {
            max_size: max_size.max(1),
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The cached decision for `req` made under `epoch` and younger than the ttl.
    pub fn get(&self, epoch: u64, req: &Request<'_>) -> Option<Result<(), Denied>> {
        let mut inner = self.inner.lock();
        if inner.epoch != epoch {
            inner.entries.clear();
            inner.epoch = epoch;
            return None;
        }
        let key = Key::of(req);
        let (verdict, at) = *inner.entries.get(&key)?;
        if at.elapsed() < self.ttl {
            Some(verdict)
        } else {
            inner.entries.remove(&key);
            None
        }
    }

    /// Remembers `verdict` for `req`, made under `epoch` (not for a topic longer than
    /// [`MAX_CACHED_TOPIC`]).
    pub fn put(&self, epoch: u64, req: &Request<'_>, verdict: Result<(), Denied>) {
        let topic = match *req {
            Request::Publish { topic, .. } => topic,
            Request::Subscribe { full, .. } => full,
        };
        if topic.len() > MAX_CACHED_TOPIC {
            return;
        }
        let mut inner = self.inner.lock();
        if inner.epoch != epoch {
            inner.entries.clear();
            inner.epoch = epoch;
        }
        let key = Key::of(req);
        if inner.entries.len() >= self.max_size && !inner.entries.contains_key(&key) {
            let ttl = self.ttl;
            inner.entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if inner.entries.len() >= self.max_size {
                let oldest = inner
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    inner.entries.remove(&k);
                }
            }
        }
        inner.entries.insert(key, (verdict, Instant::now()));
    }

    /// Number of entries (expired ones included until looked up or evicted).
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(topic: &str) -> Request<'_> {
        Request::Publish {
            topic,
            qos: 0,
            retain: false,
        }
    }

    #[test]
    fn a_topic_past_the_key_bound_is_not_kept() {
        let c = Cache::new(8, Duration::from_secs(60));
        let long = "t/".repeat(MAX_CACHED_TOPIC);
        c.put(1, &publish(&long), Ok(()));
        assert!(c.is_empty());
        let edge = "x".repeat(MAX_CACHED_TOPIC);
        c.put(1, &publish(&edge), Ok(()));
        assert_eq!(c.get(1, &publish(&edge)), Some(Ok(())));
    }

    #[test]
    fn bounded_expiring_and_dropped_on_a_new_epoch() {
        let c = Cache::new(2, Duration::from_secs(60));
        c.put(1, &publish("a"), Ok(()));
        c.put(1, &publish("b"), Err(Denied::NotAuthorized));
        assert_eq!(c.get(1, &publish("b")), Some(Err(Denied::NotAuthorized)));
        c.put(1, &publish("c"), Ok(()));
        assert_eq!(c.len(), 2, "max_size holds");
        assert_eq!(c.get(1, &publish("a")), None, "the oldest went first");
        assert_eq!(c.get(1, &publish("c")), Some(Ok(())));
        let retained = Request::Publish {
            topic: "c",
            qos: 0,
            retain: true,
        };
        assert_eq!(
            c.get(1, &retained),
            None,
            "the retain flag is part of the key"
        );
        assert_eq!(
            c.get(2, &publish("c")),
            None,
            "a new epoch empties the cache"
        );
        assert!(c.is_empty());

        let short = Cache::new(4, Duration::from_millis(1));
        short.put(1, &publish("a"), Ok(()));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(short.get(1, &publish("a")), None, "expired after the ttl");
    }
}
