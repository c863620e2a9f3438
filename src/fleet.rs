//! The second cache level: the fleet's shared cache in Redis
//! ([`crate::shared`]) behind each replica's in-process cache.
//!
//! The in-process cache is asked first and a hit never touches the network.
//! On a miss, [`Fleet::fetch`] reads the shared entry; when there is none,
//! the first replica to miss takes the fleet-wide lock and introspects, and
//! the others wait (at most `REDIS_LOCK_WAIT_MS`) for its answer before
//! introspecting themselves. Redis failing, slow or tampered with means an
//! introspection, as without Redis.
//!
//! With the shared cache on, the in-process cache is keyed by the fleet's
//! keyed digest of the token ([`Fleet::key`]), the one purge messages carry,
//! so a purge heard from the fleet drops this replica's entry directly.
//!
//! What is stored (sealed under a key derived from the token, see
//! [`crate::shared::seal`]) is the AS's answer: `A` followed by the JWT for an
//! active token, `I` for an inactive one. The claims are read from the JWT
//! again on a shared hit, as after an introspection. A token bound to a key
//! (`cnf.jkt`, which a JSON answer may carry outside its JWT) is stored as
//! `B`, the thumbprint, a space and the JWT, so the binding survives.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tracing::debug;

use crate::cache::Cached;
use crate::config::SharedConfig;
use crate::introspect::{ActiveToken, CacheDirectives, Introspection};
use crate::shared::{
    FleetDigest, PurgeSubscription, SharedCache, SharedCacheError, SharedEntry, SharedLookup,
    Waited,
};
use crate::token::TokenDigest;

const ACTIVE: u8 = b'A';
const INACTIVE: u8 = b'I';
const BOUND: u8 = b'B';

/// This replica's handle on the fleet.
pub struct Fleet {
    cache: SharedCache,
    lock_wait: Duration,
    purges: Mutex<Option<PurgeSubscription>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").field("cache", &self.cache).finish()
    }
}

/// Whether a purge reached the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetPurge {
    /// No shared cache: only this replica's copy was dropped.
    Off,
    /// Deleted from Redis and announced to every replica.
    Sent,
    /// Redis did not take it: other replicas keep their copies until they
    /// expire or are revalidated.
    Failed,
}

impl Fleet {
    /// Sets up the shared cache. Connections are made in the background: a
    /// Redis that is down delays neither start-up nor readiness.
    ///
    /// # Errors
    ///
    /// Invalid options or an unreadable TLS file.
    pub fn connect(config: &SharedConfig) -> Result<Self, SharedCacheError> {
        Ok(Fleet {
            cache: SharedCache::connect(&config.options)?,
            lock_wait: config.lock_wait,
            purges: Mutex::new(None),
        })
    }

    pub fn shared(&self) -> &SharedCache {
        &self.cache
    }

    /// The in-process cache key of `token`: the fleet digest, as purges
    /// announce it.
    pub fn key(&self, token: &str) -> TokenDigest {
        TokenDigest(self.cache.digest(token).0)
    }

    /// The in-process cache key named by a purge message.
    pub fn key_of(digest: FleetDigest) -> TokenDigest {
        TokenDigest(digest.0)
    }

    /// Starts hearing the fleet's purges; `on_purge` drops the local entry.
    pub fn listen(&self, on_purge: impl Fn(TokenDigest) + Send + Sync + 'static) {
        let subscription = self
            .cache
            .subscribe_purges(move |digest| on_purge(Fleet::key_of(digest)));
        *self.purges.lock().unwrap_or_else(PoisonError::into_inner) = Some(subscription);
    }

    /// The answer for `token` on an in-process miss: another replica's, from
    /// Redis, or `introspect`'s (which is then stored for the fleet). `key`
    /// is [`Fleet::key`] of `token`, computed once by the caller.
    /// `to_cached` makes the in-process entry, with the TTL rule; a shared
    /// answer keeps no longer than its Redis entry has left.
    ///
    /// # Errors
    ///
    /// `introspect`'s.
    pub async fn fetch<T, E, F>(
        &self,
        token: &str,
        key: TokenDigest,
        introspect: impl FnOnce() -> F,
        to_cached: impl FnOnce(Introspection) -> Cached<T>,
    ) -> Result<Cached<T>, E>
    where
        F: Future<Output = Result<Introspection, E>>,
    {
        let digest = FleetDigest(key.0);
        let lock = match self.cache.get_or_lock(token, &digest).await {
            SharedLookup::Hit(entry) => match shared_answer(&entry) {
                Some(answer) => return Ok(within(to_cached(answer), entry.ttl)),
                None => None,
            },
            SharedLookup::Miss { lock: Some(lock) }
            | SharedLookup::Tampered { lock: Some(lock) } => Some(lock),
            SharedLookup::Miss { lock: None } | SharedLookup::Tampered { lock: None } => {
                match self.cache.wait_for(token, &digest, self.lock_wait).await {
                    Waited::Hit(entry) => {
                        if let Some(answer) = shared_answer(&entry) {
                            return Ok(within(to_cached(answer), entry.ttl));
                        }
                        None
                    }
                    Waited::TimedOut
                    | Waited::Abandoned
                    | Waited::Tampered
                    | Waited::Unavailable(_) => None,
                }
            }
            SharedLookup::Unavailable(why) => {
                debug!(reason = ?why, "Shared cache unavailable; introspecting on our own");
                let answer = introspect().await?;
                return Ok(to_cached(answer));
            }
        };
        // An error drops the lock, which releases it in the background.
        let started = crate::cache::unix_now();
        let answer = introspect().await?;
        let payload = payload(&answer);
        let cached = to_cached(answer);
        match lock {
            Some(lock) => {
                self.cache.fill(lock, &payload, cached.ttl, started).await;
            }
            None => {
                self.cache
                    .put(token, &digest, &payload, cached.ttl, started)
                    .await;
            }
        }
        Ok(cached)
    }

    /// Stores a revalidated answer for the fleet; a revoked token is purged
    /// everywhere first, then remembered as inactive for `ttl`.
    pub async fn refresh(&self, token: &str, answer: &Introspection, ttl: Duration) {
        if *answer == Introspection::Inactive {
            let _ = self.cache.purge(token).await;
        }
        let digest = self.cache.digest(token);
        let now = crate::cache::unix_now();
        self.cache
            .put(token, &digest, &payload(answer), ttl, now)
            .await;
    }

    /// Deletes `token`'s entry from Redis and tells every replica to drop
    /// its copy.
    pub async fn purge(&self, token: &str) -> FleetPurge {
        match self.cache.purge(token).await {
            Ok(_) => FleetPurge::Sent,
            Err(_) => FleetPurge::Failed,
        }
    }
}

/// What the fleet stores for an answer.
fn payload(answer: &Introspection) -> Vec<u8> {
    match answer {
        Introspection::Active(active) => {
            let jkt = active
                .claims
                .jkt()
                .filter(|jkt| !jkt.is_empty() && !jkt.contains(' '));
            let mut out = Vec::with_capacity(2 + active.jwt.len());
            if let Some(jkt) = jkt {
                out.push(BOUND);
                out.extend_from_slice(jkt.as_bytes());
                out.push(b' ');
            } else {
                out.push(ACTIVE);
            }
            out.extend_from_slice(active.jwt.as_bytes());
            out
        }
        Introspection::Inactive => vec![INACTIVE],
    }
}

/// The answer a shared entry holds, good for `entry.ttl` more; `None` for
/// bytes that are not one (treated as a miss).
fn shared_answer(entry: &SharedEntry) -> Option<Introspection> {
    let (&kind, rest) = entry.payload.split_first()?;
    match kind {
        INACTIVE if rest.is_empty() => Some(Introspection::Inactive),
        ACTIVE | BOUND => {
            let rest = std::str::from_utf8(rest).ok()?;
            let (jkt, jwt) = if kind == BOUND {
                let (jkt, jwt) = rest.split_once(' ')?;
                (Some(jkt), jwt)
            } else {
                (None, rest)
            };
            let mut claims = crate::jwt::parse(jwt).ok()?;
            if let Some(jkt) = jkt {
                claims.set("cnf", serde_json::json!({ "jkt": jkt }));
            }
            Some(Introspection::Active(ActiveToken {
                jwt: jwt.to_owned(),
                claims,
                cache: CacheDirectives {
                    max_age: Some(entry.ttl),
                    no_store: false,
                },
            }))
        }
        _ => None,
    }
}

/// `cached`, kept no longer than `left`.
fn within<T>(mut cached: Cached<T>, left: Duration) -> Cached<T> {
    cached.ttl = cached.ttl.min(left);
    cached
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_binding_outside_the_jwt_survives_the_shared_cache() {
        // The JWT itself carries no cnf: the binding came from a JSON answer.
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIiwiZXhwIjo0MDAwMDAwMDAwfQ.c2ln";
        let Ok(mut claims) = crate::jwt::parse(jwt) else {
            panic!("test JWT parses");
        };
        claims.set("cnf", serde_json::json!({ "jkt": "thumb-print_1" }));
        let active = Introspection::Active(ActiveToken {
            jwt: jwt.to_owned(),
            claims,
            cache: CacheDirectives::default(),
        });
        let stored = payload(&active);
        assert_eq!(stored.first(), Some(&BOUND));
        let entry = SharedEntry {
            payload: stored,
            ttl: Duration::from_secs(7),
            introspected_at: Duration::ZERO,
        };
        match shared_answer(&entry) {
            Some(Introspection::Active(a)) => {
                assert_eq!(a.jwt, jwt);
                assert_eq!(
                    a.claims.get("cnf").and_then(|c| c.get("jkt")),
                    Some(&serde_json::json!("thumb-print_1"))
                );
            }
            other => panic!("{other:?}"),
        }
        let junk = SharedEntry {
            payload: b"Bno-space".to_vec(),
            ttl: Duration::from_secs(7),
            introspected_at: Duration::ZERO,
        };
        assert_eq!(shared_answer(&junk), None);
    }

    #[test]
    fn payloads_round_trip_and_junk_is_no_answer() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIiwiZXhwIjo0MDAwMDAwMDAwfQ.c2ln";
        let Ok(claims) = crate::jwt::parse(jwt) else {
            panic!("test JWT parses");
        };
        let active = Introspection::Active(ActiveToken {
            jwt: jwt.to_owned(),
            claims,
            cache: CacheDirectives::default(),
        });
        let entry = |payload: Vec<u8>| SharedEntry {
            payload,
            ttl: Duration::from_secs(7),
            introspected_at: Duration::ZERO,
        };
        match shared_answer(&entry(payload(&active))) {
            Some(Introspection::Active(a)) => {
                assert_eq!(a.jwt, jwt);
                assert_eq!(a.cache.max_age, Some(Duration::from_secs(7)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            shared_answer(&entry(payload(&Introspection::Inactive))),
            Some(Introspection::Inactive)
        );
        for junk in [&b""[..], b"X", b"Inot-empty", b"Anot-a-jwt", b"A\xff"] {
            assert_eq!(shared_answer(&entry(junk.to_vec())), None, "{junk:?}");
        }
    }
}
