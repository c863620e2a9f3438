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
//! What is stored (sealed, see [`crate::shared::seal`]) is the AS's answer:
//! `I` for an inactive token; for an active one, `A`, a flags byte (the JWT
//! was minted by the plugin), the length and JSON of what the AS said about
//! the token (the claims every rule reads, [`Claims::summary`], `exp` and
//! the key binding `cnf` among them), then the JWT to forward. The claims
//! travel beside the JWT because an API's rules read what the AS said, not
//! the JWT the plugin minted from it.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tracing::debug;

use crate::cache::Cached;
use crate::config::SharedConfig;
use crate::introspect::{ActiveToken, CacheDirectives, Introspection};
use crate::jwt::Claims;
use crate::shared::{
    FleetDigest, PurgeSubscription, SharedCache, SharedCacheError, SharedEntry, SharedLookup,
    Waited,
};
use crate::token::TokenDigest;

const ACTIVE: u8 = b'A';
const INACTIVE: u8 = b'I';
/// In the flags byte: the JWT was minted by the plugin.
const MINTED: u8 = 1;

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
    /// `to_cached` makes the in-process entry, with the TTL rule, from an
    /// answer and when its introspection started: for another replica's
    /// answer, the time sealed with it (so it keeps its age); a shared
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
        to_cached: impl FnOnce(Introspection, Duration) -> Cached<T>,
    ) -> Result<Cached<T>, E>
    where
        F: Future<Output = Result<Introspection, E>>,
    {
        let digest = FleetDigest(key.0);
        let lock = match self.cache.get_or_lock(token, &digest).await {
            SharedLookup::Hit(entry) => match shared_answer(&entry) {
                Some(answer) => {
                    return Ok(within(to_cached(answer, entry.introspected_at), entry.ttl));
                }
                None => None,
            },
            SharedLookup::Miss { lock: Some(lock) }
            | SharedLookup::Tampered { lock: Some(lock) } => Some(lock),
            SharedLookup::Miss { lock: None } | SharedLookup::Tampered { lock: None } => {
                match self.cache.wait_for(token, &digest, self.lock_wait).await {
                    Waited::Hit(entry) => {
                        if let Some(answer) = shared_answer(&entry) {
                            return Ok(within(to_cached(answer, entry.introspected_at), entry.ttl));
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
                let started = crate::cache::unix_now();
                let answer = introspect().await?;
                return Ok(to_cached(answer, started));
            }
        };
        // An error drops the lock, which releases it in the background.
        let started = crate::cache::unix_now();
        let answer = introspect().await?;
        let payload = payload(&answer);
        let cached = to_cached(answer, started);
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

    /// Stores a revalidated answer for the fleet, introspected at
    /// `started`; a revoked token is purged everywhere first, then
    /// remembered as inactive for `ttl` (stamped after the purge, which
    /// refuses anything introspected before it).
    pub async fn refresh(
        &self,
        token: &str,
        answer: &Introspection,
        ttl: Duration,
        started: Duration,
    ) {
        let introspected_at = if *answer == Introspection::Inactive {
            let _ = self.cache.purge(token).await;
            crate::cache::unix_now()
        } else {
            started
        };
        let digest = self.cache.digest(token);
        self.cache
            .put(token, &digest, &payload(answer), ttl, introspected_at)
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
            let claims = serde_json::Value::Object(active.claims.summary().to_map()).to_string();
            let length = u32::try_from(claims.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes();
            let mut out = Vec::with_capacity(6 + claims.len() + active.jwt.len());
            out.push(ACTIVE);
            out.push(if active.minted { MINTED } else { 0 });
            out.extend_from_slice(&length);
            out.extend_from_slice(claims.as_bytes());
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
        ACTIVE => {
            let (&flags, rest) = rest.split_first()?;
            if flags & !MINTED != 0 {
                return None;
            }
            let (length, rest) = rest.split_first_chunk::<4>()?;
            let length = usize::try_from(u32::from_be_bytes(*length)).ok()?;
            if length > rest.len() {
                return None;
            }
            let (claims, jwt) = rest.split_at(length);
            let claims = match serde_json::from_slice(claims).ok()? {
                serde_json::Value::Object(map) => Claims::from_map(map).ok()?,
                _ => return None,
            };
            let jwt = std::str::from_utf8(jwt).ok()?;
            // The JWT is forwarded: it must be one.
            crate::jwt::parse(jwt).ok()?;
            Some(Introspection::Active(ActiveToken {
                jwt: jwt.to_owned(),
                claims,
                minted: flags & MINTED != 0,
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

    fn active(jwt: &str, claims: serde_json::Value, minted: bool) -> Introspection {
        let serde_json::Value::Object(map) = claims else {
            panic!("claims are an object");
        };
        Introspection::Active(ActiveToken {
            jwt: jwt.to_owned(),
            claims: Claims::from_map(map).unwrap(),
            minted,
            cache: CacheDirectives::default(),
        })
    }

    fn entry(payload: Vec<u8>) -> SharedEntry {
        SharedEntry {
            payload,
            ttl: Duration::from_secs(7),
            introspected_at: Duration::ZERO,
        }
    }

    #[test]
    fn what_the_as_said_travels_beside_the_jwt() {
        // A minted JWT names our audience and a derived subject; the AS said
        // otherwise, and bound the token outside any JWT.
        let jwt = crate::jwt::for_test(
            &serde_json::json!({"sub": "alice", "aud": "ours", "exp": 4_000_000_000u64}),
        );
        let said = serde_json::json!({
            "sub": "alice", "username": "alice", "aud": "https://billing.example",
            "scope": "read", "cnf": {"jkt": "thumb-print_1"}, "exp": 4_000_000_000u64,
        });
        match shared_answer(&entry(payload(&active(&jwt, said, true)))) {
            Some(Introspection::Active(a)) => {
                assert_eq!(a.jwt, jwt);
                assert!(a.minted);
                assert_eq!(a.claims.audiences(), ["https://billing.example"]);
                assert_eq!(a.claims.jkt(), Some("thumb-print_1"));
                assert_eq!(a.claims.exp, Some(4_000_000_000));
                assert_eq!(a.claims.string("scope"), Some("read"));
                assert_eq!(a.claims.get("username"), None, "only the summary is shared");
                assert_eq!(a.cache.max_age, Some(Duration::from_secs(7)));
            }
            other => panic!("{other:?}"),
        }
        let ready = active(&jwt, serde_json::json!({"sub": "alice"}), false);
        match shared_answer(&entry(payload(&ready))) {
            Some(Introspection::Active(a)) => assert!(!a.minted),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn payloads_round_trip_and_junk_is_no_answer() {
        assert_eq!(
            shared_answer(&entry(payload(&Introspection::Inactive))),
            Some(Introspection::Inactive)
        );
        let jwt = crate::jwt::for_test(&serde_json::json!({"sub": "a"}));
        let good = payload(&active(&jwt, serde_json::json!({"sub": "a"}), false));
        let mut bad_flags = good.clone();
        bad_flags[1] = 0x80;
        let mut long_length = good.clone();
        long_length[2] = 0xff;
        let mut not_a_jwt = good.clone();
        not_a_jwt.truncate(good.len() - jwt.len());
        not_a_jwt.extend_from_slice(b"not-a-jwt");
        for junk in [
            Vec::new(),
            b"X".to_vec(),
            b"Inot-empty".to_vec(),
            b"A".to_vec(),
            b"A\x00\x00\x00".to_vec(),
            bad_flags,
            long_length,
            not_a_jwt,
        ] {
            assert_eq!(shared_answer(&entry(junk.clone())), None, "{junk:?}");
        }
    }
}
