//! The phantom-token decision: from an `Authorization` header to either the JWT
//! to forward or the reason to deny. Knows nothing of gRPC or Tyk's objects.
//!
//! With `REVALIDATE_AFTER_SECONDS`, a cached token older than that is
//! introspected again in the background while the request is served from the
//! cache: an inactive answer drops it (revocation takes effect within that
//! bound); a failure keeps it, never past its own expiry. Revalidation runs in
//! a free introspection slot or in one kept for it (see
//! [`RESERVED_REVALIDATIONS`](crate::introspect::RESERVED_REVALIDATIONS)), so
//! busy slots cannot starve it; an entry that still goes [`OVERDUE_PERIODS`]
//! periods without an answer is re-introspected on the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tracing::debug;

use crate::cache::{Cached, Lookup, TokenCache, TtlPolicy, unix_now};
use crate::config::Config;
use crate::introspect::{ClientBuildError, IntrospectError, Introspection, IntrospectionClient};
use crate::jwt::Claims;
use crate::metrics::{CacheLookup, Metrics};
use crate::token::{
    BearerToken, SESSION_KEY_PREFIX, SessionKeys, TokenDigest, TokenError, extract_bearer,
};
use crate::trace::TraceContext;

/// An active token, as cached: everything an allowed request needs, built once
/// per token so a cache hit only copies strings.
pub struct Grant {
    /// `Bearer <JWT>`, the upstream `Authorization` value.
    authorization: Box<str>,
    /// The claims every request reads ([`Claims::summary`]); the others are
    /// read from the JWT again when an API's rules ask for them.
    pub claims: Claims,
    /// Tyk's per-token session key (`metadata["token"]` unless the API keys
    /// sessions by a claim).
    pub session_key: Box<str>,
    /// Until when Tyk's id_extractor may skip the plugin, unix seconds
    /// (rounded down): the end of the cache entry, or, with revalidation on,
    /// when the answer is due for it if that comes first. Tyk must call the
    /// plugin by then, or a revoked token would outlive the revalidation
    /// bound in that mode.
    pub cached_until: u64,
    /// When it was fetched, in [`millis_since_start`].
    fetched_at: u64,
    /// When the next background revalidation may start, in
    /// [`millis_since_start`]; claimed by compare-and-swap so only one runs.
    next_revalidation: AtomicU64,
}

/// Milliseconds since the first call: a cheap monotonic clock that fits in an
/// atomic.
fn millis_since_start() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

const BEARER_PREFIX: &str = "Bearer ";

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
/// under distinct digests into a [`TokenCache`] and divides the growth of RSS
/// by N: 420 bytes at N = 100 000, 403 at 500 000 and at 1 000 000
/// (docs/performance.md). The largest figure is used, so that a flood of
/// distinct junk tokens holds no more than `CACHE_MAX_BYTES`.
pub const NEGATIVE_ENTRY_BYTES: u32 = 420;

/// An entry not revalidated for this many periods of
/// `REVALIDATE_AFTER_SECONDS` (every background attempt skipped or failed) is
/// re-introspected on the request path instead of being served.
pub const OVERDUE_PERIODS: u32 = 3;

/// How soon a revalidation skipped for want of a slot is tried again.
const SKIPPED_RETRY_MILLIS: u64 = 1000;

impl Grant {
    fn new(jwt: &str, claims: &Claims, session_key: String, cached_until: u64) -> Self {
        let now = millis_since_start();
        Grant {
            authorization: format!("{BEARER_PREFIX}{jwt}").into_boxed_str(),
            claims: claims.summary(),
            session_key: session_key.into_boxed_str(),
            cached_until,
            fetched_at: now,
            next_revalidation: AtomicU64::new(0),
        }
    }

    /// Whether this answer is older than `after`.
    fn is_stale(&self, after: Duration, now: u64) -> bool {
        now.saturating_sub(self.fetched_at) >= millis(after)
    }

    /// Claims the next revalidation if one is due: true for exactly one caller
    /// until [`Grant::reschedule`].
    fn claim_revalidation(&self, now: u64) -> bool {
        let next = self.next_revalidation.load(Ordering::Acquire);
        now >= next
            && self
                .next_revalidation
                .compare_exchange(next, u64::MAX, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    fn reschedule(&self, at: u64) {
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

    /// All the JWT's claims, read again from the JWT (it was checked when it
    /// was cached, so this cannot fail short of memory corruption; an empty
    /// set is the fallback).
    pub fn full_claims(&self) -> Claims {
        crate::jwt::parse(self.jwt()).unwrap_or_default()
    }

    /// The short identifier used in log lines (the session key's first hex
    /// characters; see [`SessionKeys::log_id`]).
    pub fn log_id(&self) -> &str {
        let hex = &self.session_key[SESSION_KEY_PREFIX.len()..];
        &hex[..hex.len().min(12)]
    }

    /// Approximate bytes held by a cache entry for this grant.
    fn weight(&self) -> u32 {
        let bytes = GRANT_OVERHEAD
            + self.authorization.len()
            + self.session_key.len()
            + self.claims.byte_len();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// A cached answer: `Some` for an active token, `None` for an inactive one.
type Answer = Option<Arc<Grant>>;

/// Why a request is denied. Turned into Tyk's answer in one place
/// (`dispatch::rescue`).
#[derive(Debug, Clone)]
pub enum Denial {
    /// No bearer credentials at all: a bare challenge.
    NoCredentials,
    /// The token is malformed, too long, inactive, expired, or not meant
    /// for this API.
    InvalidToken(InvalidToken),
    /// The token lacks scopes the API requires (space-separated here).
    InsufficientScope(String),
    /// The API's `config_data` is invalid: no request to it can be decided.
    InvalidApiConfig,
    /// The AS gave no answer about the token.
    Introspection(Arc<IntrospectError>),
    /// The service is stopping and the grace period for this call is over.
    ShuttingDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidToken {
    Malformed,
    TooLong,
    /// 204, or `{"active":false}`.
    Inactive,
    /// The AS answered with a JWT whose `exp` has passed.
    Expired,
    /// Its `aud` does not name this API.
    WrongAudience,
}

impl InvalidToken {
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidToken::Malformed => "malformed",
            InvalidToken::TooLong => "too_long",
            InvalidToken::Inactive => "inactive",
            InvalidToken::Expired => "expired",
            InvalidToken::WrongAudience => "audience",
        }
    }
}

/// The outcome of [`Authorizer::authorize`], with what logging needs.
pub struct Verdict {
    /// Digest of the token (or of the malformed header), when there was one.
    pub digest: Option<TokenDigest>,
    /// Whether the answer came from the cache, when the AS was consulted.
    pub lookup: Option<Lookup>,
    pub result: Result<Arc<Grant>, Denial>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub struct Authorizer {
    client: IntrospectionClient,
    cache: TokenCache<Answer>,
    ttl: TtlPolicy,
    keys: SessionKeys,
    max_token_bytes: usize,
    revalidate_after: Option<Duration>,
    metrics: Arc<Metrics>,
}

impl Authorizer {
    /// # Errors
    ///
    /// When the introspection client cannot be built (CA file, TLS set-up).
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Self, ClientBuildError> {
        let evictions = metrics.clone();
        Ok(Authorizer {
            client: IntrospectionClient::new(&config.introspection, metrics.clone())?,
            cache: TokenCache::new(
                config.cache.max_bytes,
                config.cache.max_entries,
                move |cause| {
                    evictions.eviction(cause);
                },
            ),
            ttl: TtlPolicy::from_config(&config.cache),
            keys: SessionKeys::new(config.session.key_secret.expose().as_bytes()),
            max_token_bytes: config.max_token_bytes,
            revalidate_after: config.cache.revalidate_after,
            metrics,
        })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn session_keys(&self) -> &SessionKeys {
        &self.keys
    }

    pub fn cache(&self) -> &TokenCache<Answer> {
        &self.cache
    }

    /// The public JWKS of the keys minted JWTs are signed with, when the
    /// plugin mints.
    pub fn minted_jwks(&self) -> Option<String> {
        self.client.minted_jwks()
    }

    /// Decides a request from its `Authorization` header (first value).
    ///
    /// Malformed headers never reach the AS. Valid tokens are looked up in the
    /// cache by digest; a miss introspects once however many requests wait,
    /// continuing `trace` on the AS request.
    pub async fn authorize(
        self: &Arc<Self>,
        header: Option<&str>,
        trace: Option<&TraceContext>,
    ) -> Verdict {
        let token = match extract_bearer(header, self.max_token_bytes) {
            Ok(token) => token,
            Err(TokenError::Missing) => return Verdict::denied(None, Denial::NoCredentials),
            Err(e) => {
                let why = if e == TokenError::TooLong {
                    InvalidToken::TooLong
                } else {
                    InvalidToken::Malformed
                };
                let digest = header.map(|h| TokenDigest::of(h.as_bytes()));
                return Verdict::denied(digest, Denial::InvalidToken(why));
            }
        };
        let digest = token.digest();
        let fetch = || async {
            let answer = self.client.introspect(&token, trace).await?;
            Ok(self.to_cached(&digest, answer))
        };
        // A cached JWT is forwarded only before its exp minus the skew, the
        // end the TTL rule gave its entry (a step of the wall clock could
        // outrun the entry's timer): past that, it is asked for again.
        let now = unix_now();
        let valid = |cached: &Cached<Answer>| {
            cached
                .value
                .as_ref()
                .is_none_or(|grant| self.ttl.forwardable(grant.claims.exp, now))
        };
        let (answer, lookup) = match self
            .cache
            .get_valid_or_fetch::<IntrospectError, _>(digest, valid, fetch)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                self.metrics.cache_lookup(CacheLookup::Miss);
                return Verdict::denied(Some(digest), Denial::Introspection(e));
            }
        };
        self.metrics.cache_lookup(match (lookup, &answer.value) {
            (Lookup::Hit, Some(_)) => CacheLookup::Hit,
            (Lookup::Hit, None) => CacheLookup::NegativeHit,
            (Lookup::Fetched, _) => CacheLookup::Miss,
            (Lookup::Coalesced, _) => CacheLookup::Coalesced,
        });
        // A hit was forwardable above, so it has not expired either.
        if lookup == Lookup::Hit
            && let Some(grant) = &answer.value
        {
            match self.revalidation_due(grant) {
                None => {}
                Some(Due::Background) => self.revalidate_in_background(grant, &token, digest),
                Some(Due::Overdue) => {
                    let grant = Arc::clone(grant);
                    return Box::pin(self.revalidate_overdue(grant, &token, digest, trace)).await;
                }
            }
        }
        let now = if lookup == Lookup::Hit {
            now
        } else {
            unix_now()
        };
        Verdict {
            digest: Some(digest),
            lookup: Some(lookup),
            result: decide(&answer.value, now),
        }
    }

    /// Whether a cached JWT expiring at `exp` may still be forwarded now
    /// (see [`TtlPolicy::forwardable`]). Every path that forwards a JWT from
    /// the cache or from Tyk's session asks this first.
    pub fn forwardable(&self, exp: Option<u64>) -> bool {
        self.ttl.forwardable(exp, unix_now())
    }

    /// The cache entry for an answer of the AS, with its TTL.
    fn to_cached(&self, digest: &TokenDigest, answer: Introspection) -> Cached<Answer> {
        match answer {
            Introspection::Active(active) => {
                let now = unix_now();
                let ttl = self.ttl.for_answer(active.claims.exp, &active.cache, now);
                let due = self.revalidate_after.map_or(ttl, |after| ttl.min(after));
                let grant = Grant::new(
                    &active.jwt,
                    &active.claims,
                    self.keys.session_key(digest),
                    (now + due).as_secs(),
                );
                Cached {
                    weight: grant.weight(),
                    value: Some(Arc::new(grant)),
                    ttl,
                }
            }
            Introspection::Inactive => Cached {
                value: None,
                ttl: self.ttl.inactive(),
                weight: NEGATIVE_ENTRY_BYTES,
            },
        }
    }

    /// Whether a hit on `grant` calls for a revalidation, and which. At most
    /// one caller at a time gets `Some` for a grant.
    fn revalidation_due(&self, grant: &Grant) -> Option<Due> {
        let after = self.revalidate_after?;
        let now = millis_since_start();
        if !grant.is_stale(after, now) {
            return None;
        }
        if !grant.claim_revalidation(now) {
            self.metrics.stale_serve();
            return None;
        }
        if grant.is_stale(after.saturating_mul(OVERDUE_PERIODS), now) {
            Some(Due::Overdue)
        } else {
            self.metrics.stale_serve();
            Some(Due::Background)
        }
    }

    /// Revalidates a cached grant in the background while it is served: in a
    /// free introspection slot, else in one of the
    /// [`RESERVED_REVALIDATIONS`](crate::introspect::RESERVED_REVALIDATIONS);
    /// when neither is free it is tried again a second later.
    fn revalidate_in_background(
        self: &Arc<Self>,
        grant: &Arc<Grant>,
        token: &BearerToken<'_>,
        digest: TokenDigest,
    ) {
        let Some(after) = self.revalidate_after else {
            return;
        };
        let (this, grant) = (Arc::clone(self), Arc::clone(grant));
        let token = token.expose().to_owned();
        tokio::spawn(async move {
            let bearer = BearerToken::from_trusted(&token);
            match this.client.introspect_in_background(&bearer).await {
                None => {
                    grant.reschedule(millis_since_start() + SKIPPED_RETRY_MILLIS);
                    this.metrics.revalidation("skipped");
                }
                Some(Ok(answer)) => {
                    let revoked = answer == Introspection::Inactive;
                    this.cache
                        .insert(digest, this.to_cached(&digest, answer))
                        .await;
                    if revoked {
                        this.metrics.revalidation("revoked");
                        debug!(
                            token.id = grant.log_id(),
                            "Revalidation found the token inactive; dropped"
                        );
                    } else {
                        this.metrics.revalidation("refreshed");
                    }
                }
                Some(Err(e)) => {
                    // Keep serving the cached JWT (its entry still ends
                    // before exp); try again after another period.
                    grant.reschedule(millis_since_start() + millis(after));
                    this.metrics.revalidation("failed");
                    debug!(token.id = grant.log_id(), error = %e, "Revalidation failed; serving the cached JWT");
                }
            }
        });
    }

    /// Re-introspects, on the request path, a grant overdue past the bound:
    /// the entry is dropped and fetched again like a miss (requests arriving
    /// meanwhile share the introspection), so the AS's answer decides this
    /// request. An AS fault keeps the cached JWT for the rest of its life, as
    /// a failed background revalidation does; no free slot is the answer a
    /// miss gets under overload (the entry stays dropped).
    async fn revalidate_overdue(
        &self,
        grant: Arc<Grant>,
        token: &BearerToken<'_>,
        digest: TokenDigest,
        trace: Option<&TraceContext>,
    ) -> Verdict {
        let after = self.revalidate_after.unwrap_or_default();
        let fetch = || async {
            match self.client.introspect(token, trace).await {
                Ok(answer) => {
                    self.metrics
                        .revalidation(if answer == Introspection::Inactive {
                            "revoked"
                        } else {
                            "refreshed"
                        });
                    Ok(self.to_cached(&digest, answer))
                }
                Err(IntrospectError::Overloaded) => {
                    self.metrics.revalidation("skipped");
                    Err(IntrospectError::Overloaded)
                }
                Err(e) => {
                    grant.reschedule(millis_since_start() + millis(after));
                    self.metrics.revalidation("failed");
                    self.metrics.stale_serve();
                    debug!(token.id = grant.log_id(), error = %e, "Revalidation failed; serving the cached JWT");
                    let left = Duration::from_secs(grant.cached_until).saturating_sub(unix_now());
                    Ok(Cached {
                        weight: grant.weight(),
                        value: Some(Arc::clone(&grant)),
                        ttl: left,
                    })
                }
            }
        };
        self.cache.invalidate(&digest).await;
        match self
            .cache
            .get_or_fetch::<IntrospectError, _>(digest, fetch)
            .await
        {
            Ok((answer, lookup)) => Verdict {
                digest: Some(digest),
                lookup: Some(lookup),
                result: decide(&answer.value, unix_now()),
            },
            Err(e) => Verdict::denied(Some(digest), Denial::Introspection(e)),
        }
    }

    /// The cached grant for a token, without introspecting: none once its JWT
    /// is no longer [`forwardable`](Authorizer::forwardable).
    pub async fn cached_grant(&self, digest: &TokenDigest) -> Option<Arc<Grant>> {
        self.cache
            .peek(digest)
            .await
            .and_then(|c| c.value.clone())
            .filter(|grant| self.forwardable(grant.claims.exp))
    }
}

/// Which revalidation a hit calls for.
enum Due {
    /// In the background, serving the cached grant meanwhile.
    Background,
    /// On this request: past [`OVERDUE_PERIODS`] without a revalidation.
    Overdue,
}

/// The decision for an answer at `now`: inactive, expired (the AS answered
/// with a JWT whose `exp` has passed), or the grant.
fn decide(answer: &Answer, now: Duration) -> Result<Arc<Grant>, Denial> {
    match answer {
        None => Err(Denial::InvalidToken(InvalidToken::Inactive)),
        Some(grant) if grant.claims.exp.is_some_and(|exp| exp <= now.as_secs()) => {
            Err(Denial::InvalidToken(InvalidToken::Expired))
        }
        Some(grant) => Ok(Arc::clone(grant)),
    }
}

impl Verdict {
    fn denied(digest: Option<TokenDigest>, denial: Denial) -> Self {
        Verdict {
            digest,
            lookup: None,
            result: Err(denial),
        }
    }
}
