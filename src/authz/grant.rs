//! The cached form of an active token, and what a cache entry weighs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::millis;
use crate::jwt::Claims;
use crate::token::SESSION_KEY_PREFIX;

/// An active token, as cached: everything an allowed request needs, built once
/// per token so a cache hit only copies strings.
pub struct Grant {
    /// `Bearer <JWT>`, the upstream `Authorization` value.
    authorization: Box<str>,
    /// What the AS said about the token: the claims every request reads
    /// ([`Claims::summary`]). An API's rules check these, never the JWT the
    /// plugin minted; the others are read again when an API's identity rules
    /// ask for them (see [`Grant::full_claims`]).
    pub claims: Claims,
    /// The plugin minted the JWT, so it may mint it again for an API's own
    /// audience; an AS's JWT is forwarded as it is.
    minted: bool,
    /// Tyk's per-token session key (`metadata["token"]` unless the API keys
    /// sessions by a claim).
    pub session_key: Box<str>,
    /// Until when Tyk's id_extractor may skip the plugin, unix seconds
    /// (rounded down): the end of the cache entry, or, with revalidation on,
    /// when the answer is due for it if that comes first. Tyk must call the
    /// plugin by then, or a revoked token would outlive the revalidation
    /// bound in that mode.
    pub cached_until: u64,
    /// When the introspection that gave it started, unix milliseconds: for
    /// an answer read from the fleet's cache, the time sealed with it, so a
    /// shared hit does not restart the revalidation clock.
    fetched_at: u64,
    /// When the next background revalidation may start, in
    /// unix milliseconds; claimed by compare-and-swap so only one runs.
    next_revalidation: AtomicU64,
    /// Copies of this grant minted for other audiences (APIs whose
    /// `config_data` names a `minted_audience`), at most
    /// [`MAX_AUDIENCES`]; they live and die with this entry.
    audiences: Mutex<Vec<(Box<str>, Arc<Grant>)>>,
}

/// Audiences remembered per grant; past this the oldest is dropped (and
/// minted again if asked for).
pub const MAX_AUDIENCES: usize = 8;

/// The wall clock in unix milliseconds, the clock of an answer's age: it
/// is shared by the fleet (a replica reading another's answer sees how old
/// it is), so it cannot be a process's own monotonic clock.
pub(super) fn unix_millis() -> u64 {
    millis(crate::cache::unix_now())
}

pub(crate) const BEARER_PREFIX: &str = "Bearer ";

/// Bytes a cache entry holds beyond the strings it owns: the grant itself,
/// its `Arc`, moka's entry, expiry timer and sketch, and the allocator's
/// rounding. Calibrated with the 500 k-token benchmark (docs/performance.md:
/// 1.83 KB of RSS per cached token with 866-byte JWTs, which this weighs at
/// 1.88 KB), so that `CACHE_MAX_BYTES` bounds the real memory.
const GRANT_OVERHEAD: usize = 640;

/// Bytes a cache entry for an inactive answer holds: moka's entry, expiry
/// timer and sketch, the `Arc`'d value and the allocator's rounding — most of
/// what [`GRANT_OVERHEAD`] counts, since every entry pays it. Measured like
/// the positive figure, as resident memory: `phantom-bench cache-memory`
/// (release build, mimalloc as in the plugin) inserts N inactive answers
/// under distinct digests into a [`TokenCache`](crate::cache::TokenCache)
/// and divides the growth of RSS by N: 420 bytes at N = 100 000, 403 at
/// 500 000 and at 1 000 000
/// (docs/performance.md). The largest figure is used, so that a flood of
/// distinct junk tokens holds no more than `CACHE_MAX_BYTES`.
pub const NEGATIVE_ENTRY_BYTES: u32 = 420;

impl Grant {
    pub(crate) fn new(
        jwt: &str,
        claims: &Claims,
        minted: bool,
        session_key: String,
        cached_until: u64,
        introspected_at: Duration,
    ) -> Self {
        Grant {
            authorization: format!("{BEARER_PREFIX}{jwt}").into_boxed_str(),
            claims: claims.summary(),
            minted,
            session_key: session_key.into_boxed_str(),
            cached_until,
            fetched_at: millis(introspected_at),
            next_revalidation: AtomicU64::new(0),
            audiences: Mutex::new(Vec::new()),
        }
    }

    /// This grant with its JWT minted again for `audience` by `remint`,
    /// remembered. `None` when `remint` gives nothing (the JWT is not one
    /// the plugin minted). The copy keeps this grant's session key and cache
    /// bound, and its JWT the original's `exp`.
    pub(crate) fn for_audience<E>(
        &self,
        audience: &str,
        remint: impl FnOnce(&str) -> Result<Option<String>, E>,
    ) -> Result<Option<Arc<Grant>>, E> {
        if let Ok(known) = self.audiences.lock()
            && let Some((_, grant)) = known.iter().find(|(a, _)| &**a == audience)
        {
            return Ok(Some(Arc::clone(grant)));
        }
        let Some(jwt) = remint(self.jwt())? else {
            return Ok(None);
        };
        if crate::jwt::parse(&jwt).is_err() {
            return Ok(None);
        }
        // The copy differs from this grant in its JWT only: what the AS
        // said stays what it said.
        let copy = Arc::new(Grant::new(
            &jwt,
            &self.claims,
            self.minted,
            self.session_key.to_string(),
            self.cached_until,
            Duration::from_millis(self.fetched_at),
        ));
        if let Ok(mut known) = self.audiences.lock() {
            if known.len() >= MAX_AUDIENCES {
                known.remove(0);
            }
            known.push((Box::from(audience), Arc::clone(&copy)));
        }
        Ok(Some(copy))
    }

    /// Whether this answer is older than `after`.
    pub(super) fn is_stale(&self, after: Duration, now: u64) -> bool {
        now.saturating_sub(self.fetched_at) >= millis(after)
    }

    /// Claims the next revalidation if one is due: true for exactly one caller
    /// until [`Grant::reschedule`].
    pub(super) fn claim_revalidation(&self, now: u64) -> bool {
        let next = self.next_revalidation.load(Ordering::Acquire);
        now >= next
            && self
                .next_revalidation
                .compare_exchange(next, u64::MAX, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    pub(super) fn reschedule(&self, at: u64) {
        self.next_revalidation.store(at, Ordering::Release);
    }

    /// The `Authorization` header value for the upstream request.
    pub fn authorization(&self) -> &str {
        &self.authorization
    }

    /// The phantom JWT.
    pub fn jwt(&self) -> &str {
        &self.authorization[BEARER_PREFIX.len()..]
    }

    /// Whether the plugin minted the JWT.
    pub fn minted(&self) -> bool {
        self.minted
    }

    /// Whether the token is meant for `audience`, an API's own name for the
    /// JWTs minted for it: the AS restricted it to no audience (RFC 8707),
    /// or named this one, or `accepted` (the API's `required_audience`,
    /// which the token's audiences were checked to contain).
    pub fn meant_for(&self, audience: &str, accepted: bool) -> bool {
        let granted = self.claims.audiences();
        granted.is_empty() || accepted || granted.contains(&audience)
    }

    /// All the claims an identity rule may read: the JWT's, read again (it
    /// was checked when it was cached, so this cannot fail short of memory
    /// corruption; an empty set is the fallback), with what the AS said
    /// ([`Grant::claims`]) over them. For a minted JWT the others are the
    /// ones `MINTED_CLAIMS` copied from the answer.
    pub fn full_claims(&self) -> Claims {
        let mut all = crate::jwt::parse(self.jwt()).unwrap_or_default();
        for (name, value) in self.claims.to_map() {
            all.set(&name, value);
        }
        all.exp = self.claims.exp.or(all.exp);
        all
    }

    /// The short identifier used in log lines (the session key's first hex
    /// characters; see [`SessionKeys::log_id`](crate::token::SessionKeys::log_id)).
    pub fn log_id(&self) -> &str {
        let hex = &self.session_key[SESSION_KEY_PREFIX.len()..];
        &hex[..hex.len().min(12)]
    }

    /// Approximate bytes held by a cache entry for this grant.
    pub(super) fn weight(&self) -> u32 {
        let bytes = GRANT_OVERHEAD
            + self.authorization.len()
            + self.session_key.len()
            + self.claims.byte_len();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// A cached answer: `Some` for an active token, `None` for an inactive one.
pub type Answer = Option<Arc<Grant>>;
