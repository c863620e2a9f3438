//! The token cache: answers from the authorization server, keyed by the SHA-256
//! of the token, each living for the time the TTL rule gives it.
//!
//! Concurrent misses for one token share a single introspection (moka runs one
//! initialiser per key and hands its result to every waiter). Introspection
//! errors are returned to every waiter and never stored.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;

use crate::config::CacheConfig;
use crate::introspect::CacheDirectives;
use crate::metrics::Eviction;
use crate::token::TokenDigest;

/// How long answers may be kept. Pure: give it the facts, it gives a duration.
#[derive(Debug, Clone)]
pub struct TtlPolicy {
    pub clock_skew: Duration,
    pub max_ttl: Option<Duration>,
    pub default_ttl: Duration,
    pub negative_ttl: Duration,
    /// Whether the AS's `no-store` / `no-cache` (and `Pragma: no-cache`) keep
    /// an answer out of the cache (see [`CacheDirectives`]).
    pub honor_no_store: bool,
}

impl TtlPolicy {
    pub fn from_config(config: &CacheConfig) -> Self {
        TtlPolicy {
            clock_skew: config.clock_skew,
            max_ttl: config.max_ttl,
            default_ttl: config.default_ttl,
            negative_ttl: config.negative_ttl,
            honor_no_store: config.honor_no_store,
        }
    }

    /// TTL of an active answer carrying the AS's caching headers: as
    /// [`TtlPolicy::active`], limited by what [`CacheDirectives::limit`] makes
    /// of them.
    pub fn for_answer(
        &self,
        exp: Option<u64>,
        directives: &CacheDirectives,
        now: Duration,
    ) -> Duration {
        self.active(exp, directives.limit(self.honor_no_store), now)
    }

    /// Whether a JWT expiring at `exp` may still be forwarded at `now`:
    /// before `exp` minus the clock skew. In the last `clock_skew` of a
    /// token's life it is refused as expired (an upstream whose clock runs
    /// ahead would refuse it anyway), from the cache and without asking the
    /// AS again. (A JWT without `exp` lives by its entry alone.)
    pub fn forwardable(&self, exp: Option<u64>, now: Duration) -> bool {
        exp.is_none_or(|exp| Duration::from_secs(exp).saturating_sub(self.clock_skew) > now)
    }

    /// How much longer a JWT expiring at `exp` may be forwarded after `now`
    /// (see [`TtlPolicy::forwardable`]); `None` without `exp`.
    pub fn forwardable_for(&self, exp: Option<u64>, now: Duration) -> Option<Duration> {
        exp.map(|exp| {
            Duration::from_secs(exp)
                .saturating_sub(self.clock_skew)
                .saturating_sub(now)
        })
    }

    /// TTL of an active answer: until the token's `exp`, no longer than the
    /// configured cap or the AS's `max-age`. A JWT without `exp` gets the
    /// short default, under the same caps. `now` is the time since the unix
    /// epoch.
    ///
    /// The entry outlives the time its JWT is forwarded by the clock skew
    /// (see [`TtlPolicy::forwardable`]): so a token in its last seconds is
    /// refused from the cache instead of being introspected on every
    /// request, and at most one introspection (a first request in that
    /// window) ever happens then.
    pub fn active(&self, exp: Option<u64>, max_age: Option<Duration>, now: Duration) -> Duration {
        let base = match exp {
            Some(exp) => Duration::from_secs(exp).saturating_sub(now),
            None => self.default_ttl,
        };
        [Some(base), self.max_ttl, max_age]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(base)
    }

    /// TTL of an inactive answer.
    pub fn inactive(&self) -> Duration {
        self.negative_ttl
    }
}

/// The current time as a duration since the unix epoch (zero if the clock is
/// before 1970, which only makes entries expire sooner).
pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// A value stored in the cache, with the lifetime fixed when it was inserted
/// (hits never extend it).
#[derive(Debug)]
pub struct Cached<T> {
    pub value: T,
    pub ttl: Duration,
    /// Approximate bytes held, for the byte bound.
    pub weight: u32,
}

/// Each entry lives for its own value's TTL, counted from when that value was
/// stored: a replacement (a revalidation) does not inherit what was left of
/// the entry it replaces, shorter or longer.
struct FixedTtl;

impl<T> Expiry<TokenDigest, Arc<Cached<T>>> for FixedTtl {
    fn expire_after_create(
        &self,
        _: &TokenDigest,
        value: &Arc<Cached<T>>,
        _: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _: &TokenDigest,
        value: &Arc<Cached<T>>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Bounded, expiring map from token digests to answers.
pub struct TokenCache<T> {
    inner: Cache<TokenDigest, Arc<Cached<T>>>,
}

/// Where a lookup's answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Found in the cache.
    Hit,
    /// This call ran the fetch.
    Fetched,
    /// This call used another call's fetch.
    Coalesced,
}

impl<T: Send + Sync + 'static> TokenCache<T> {
    /// A cache holding at most `max_bytes` (by entry weight) and, when set,
    /// `max_entries` entries.
    ///
    /// Both bounds are kept with moka's single weighted capacity: every entry
    /// weighs at least `max_bytes / max_entries`, so the total weight reaching
    /// `max_bytes` also caps the count at `max_entries`.
    ///
    /// `on_evict` hears why each entry left.
    pub fn new(
        max_bytes: u64,
        max_entries: Option<u64>,
        on_evict: impl Fn(Eviction) + Send + Sync + 'static,
    ) -> Self {
        let floor = max_entries.map_or(1, |n| {
            (max_bytes / n.max(1)).clamp(1, u32::MAX as u64) as u32
        });
        let inner = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |_: &TokenDigest, v: &Arc<Cached<T>>| v.weight.max(floor))
            .expire_after(FixedTtl)
            .eviction_listener(move |_, _, cause| {
                on_evict(match cause {
                    RemovalCause::Size => Eviction::Size,
                    RemovalCause::Expired => Eviction::Expired,
                    RemovalCause::Explicit => Eviction::Explicit,
                    RemovalCause::Replaced => Eviction::Replaced,
                });
            })
            .build();
        TokenCache { inner }
    }

    /// The cached value for `key`, or the result of `fetch`, which runs at most
    /// once at a time per key. `fetch` returns the value with its TTL and
    /// weight; errors are shared with concurrent waiters but not stored.
    ///
    /// # Errors
    ///
    /// The error of the fetch this call ran or waited for.
    pub async fn get_or_fetch<E, F>(
        &self,
        key: TokenDigest,
        fetch: impl FnOnce() -> F,
    ) -> Result<(Arc<Cached<T>>, Lookup), Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<Cached<T>, E>>,
    {
        self.get_valid_or_fetch(key, |_| true, fetch).await
    }

    /// As [`TokenCache::get_or_fetch`], but an entry that `valid` refuses is
    /// dropped and fetched again, as if it had expired.
    ///
    /// # Errors
    ///
    /// The error of the fetch this call ran or waited for.
    pub async fn get_valid_or_fetch<E, F>(
        &self,
        key: TokenDigest,
        valid: impl FnOnce(&Cached<T>) -> bool,
        fetch: impl FnOnce() -> F,
    ) -> Result<(Arc<Cached<T>>, Lookup), Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<Cached<T>, E>>,
    {
        if let Some(hit) = self.inner.get(&key).await {
            if valid(&hit) {
                return Ok((hit, Lookup::Hit));
            }
            Box::pin(self.inner.invalidate(&key)).await;
        }
        // The miss path (moka's initialiser and the fetch, an HTTP exchange)
        // is a large future: boxed, so the hit path's future stays small and
        // cheap to move.
        Box::pin(self.fetch_into(key, fetch())).await
    }

    async fn fetch_into<E, F>(
        &self,
        key: TokenDigest,
        fetch: F,
    ) -> Result<(Arc<Cached<T>>, Lookup), Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<Cached<T>, E>>,
    {
        let ran = std::sync::atomic::AtomicBool::new(false);
        let entry = self
            .inner
            .entry(key)
            .or_try_insert_with(async {
                ran.store(true, std::sync::atomic::Ordering::Relaxed);
                fetch.await.map(Arc::new)
            })
            .await?;
        // Not our fetch: we waited for another call's (or, rarely, it landed
        // between our look and our fetch).
        let how = if ran.load(std::sync::atomic::Ordering::Relaxed) {
            Lookup::Fetched
        } else {
            Lookup::Coalesced
        };
        Ok((entry.into_value(), how))
    }

    /// Stores `value` for `key`, replacing any entry (a background refresh).
    pub async fn insert(&self, key: TokenDigest, value: Cached<T>) {
        self.inner.insert(key, Arc::new(value)).await;
    }

    /// Drops the entry for `key`, if any.
    pub async fn invalidate(&self, key: &TokenDigest) {
        self.inner.invalidate(key).await;
    }

    /// The entry for `key` if present and unexpired, without fetching.
    pub async fn peek(&self, key: &TokenDigest) -> Option<Arc<Cached<T>>> {
        self.inner.get(key).await
    }

    /// Entries currently held (approximate until pending work is run).
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }

    /// Total weight currently held (approximate until pending work is run).
    pub fn weighted_size(&self) -> u64 {
        self.inner.weighted_size()
    }

    /// Applies pending inserts and evictions, so the counts above are exact.
    pub async fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks().await;
    }
}

#[cfg(test)]
mod tests;
