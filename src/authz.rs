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

use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use crate::api_rules::ApiRules;
use crate::cache::{Cached, Lookup, TokenCache, TtlPolicy, unix_now};
use crate::config::Config;
use crate::fleet::{Fleet, FleetPurge};
use crate::introspect::{ClientBuildError, IntrospectError, Introspection, IntrospectionClient};
use crate::jwt::Binding;
use crate::metrics::{CacheLookup, Metrics};
use crate::token::{BearerToken, SessionKeys, TokenDigest, TokenError, extract_bearer};
use crate::trace::TraceContext;

mod denial;
mod grant;
mod revalidate;

pub use denial::{Denial, InvalidToken, Upstream, Verdict};
use grant::BEARER_PREFIX;
pub use grant::{Answer, Grant, NEGATIVE_ENTRY_BYTES};
use revalidate::Due;
pub use revalidate::OVERDUE_PERIODS;

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
    /// Accept tokens bound in a way the plugin cannot check as bearer
    /// tokens (`ALLOW_UNCHECKED_BINDINGS`).
    allow_unchecked_bindings: bool,
    metrics: Arc<Metrics>,
    /// The fleet's shared cache, when `REDIS_URL` is set.
    fleet: Option<Fleet>,
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
            allow_unchecked_bindings: config.introspection.any_as.allow_unchecked_bindings,
            metrics,
            fleet: None,
        })
    }

    /// Adds the fleet's shared cache as the second level.
    #[must_use]
    pub fn with_fleet(mut self, fleet: Fleet) -> Self {
        self.fleet = Some(fleet);
        self
    }

    pub fn fleet(&self) -> Option<&Fleet> {
        self.fleet.as_ref()
    }

    /// The in-process cache key of `token`: its SHA-256, or with the shared
    /// cache on, the fleet's keyed digest (what purge messages carry).
    fn key(&self, token: &BearerToken<'_>, digest: TokenDigest) -> TokenDigest {
        self.fleet
            .as_ref()
            .map_or(digest, |fleet| fleet.key(token.expose()))
    }

    /// Starts dropping this replica's entries when the fleet purges them.
    pub fn listen_for_purges(self: &Arc<Self>) {
        let Some(fleet) = &self.fleet else {
            return;
        };
        let this = Arc::downgrade(self);
        fleet.listen(move |key| {
            if let Some(this) = this.upgrade() {
                tokio::spawn(async move { this.cache.invalidate(&key).await });
            }
        });
    }

    /// Ends `token` here and, with the shared cache on, in Redis and on every
    /// replica. `None` for a value that is not a token.
    pub async fn revoke(&self, token: &str) -> Option<FleetPurge> {
        let header = format!("{BEARER_PREFIX}{token}");
        let token = extract_bearer(Some(&header), self.max_token_bytes).ok()?;
        self.cache
            .invalidate(&self.key(&token, token.digest()))
            .await;
        Some(match &self.fleet {
            Some(fleet) => fleet.purge(token.expose()).await,
            None => FleetPurge::Off,
        })
    }

    /// The public JWKS of the keys minted JWTs are signed with, when the
    /// plugin mints.
    pub fn minted_jwks(&self) -> Option<String> {
        self.client.minted_jwks()
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

    /// Decides a request to an API from its `Authorization` header (first
    /// value) and the API's rules: the grant to forward, or why it is denied.
    ///
    /// Malformed headers never reach the AS. Valid tokens are looked up in the
    /// cache by digest; a miss introspects once however many requests wait,
    /// continuing `trace` on the AS request. The API's own checks (audience,
    /// scopes) run on every request, cached answer or not.
    pub async fn decide(
        self: &Arc<Self>,
        header: Option<&str>,
        rules: &ApiRules,
        trace: Option<&TraceContext>,
    ) -> Verdict {
        self.decide_bound(header, rules, |_| Ok(()), trace).await
    }

    /// [`Authorizer::decide`], with `bind` checking the token's key binding
    /// (DPoP) before the API's rules: a token presented without its key
    /// learns nothing about what the API requires.
    pub async fn decide_bound(
        self: &Arc<Self>,
        header: Option<&str>,
        rules: &ApiRules,
        bind: impl FnOnce(&Grant) -> Result<(), Denial>,
        trace: Option<&TraceContext>,
    ) -> Verdict {
        let mut verdict = self.authorize(header, trace).await;
        if let Ok(grant) = &verdict.result {
            // A binding the plugin cannot check (mutual TLS, RFC 8705) is
            // not a bearer token: refused, unless the operator said so.
            if grant.claims.binding() == Binding::Unchecked && !self.allow_unchecked_bindings {
                verdict.result = Err(Denial::InvalidToken(InvalidToken::UncheckedBinding));
            } else if let Err(refused) = bind(grant) {
                verdict.result = Err(refused);
            }
        }
        if let Ok(grant) = &verdict.result {
            match rules.check(&grant.claims) {
                Ok(()) => debug!(
                    token.id = grant.log_id(),
                    cache = if verdict.lookup == Some(Lookup::Hit) {
                        "hit"
                    } else {
                        "miss"
                    },
                    "Request allowed"
                ),
                Err(refused) => verdict.result = Err(refused.into()),
            }
        }
        // An API's own audience is signed only into a JWT the plugin minted,
        // and only for a token meant for it: an AS's JWT goes as it is, and
        // a token the AS issued for other resources is not re-signed for
        // this one.
        if let (Ok(grant), Some(audience)) = (&verdict.result, &rules.minted_audience)
            && grant.minted()
            && let Some(minter) = self.client.minter()
        {
            if !grant.meant_for(audience, rules.required_audience.is_some()) {
                verdict.result = Err(Denial::InvalidToken(InvalidToken::WrongAudience));
                return verdict;
            }
            match grant.for_audience(audience, |jwt| {
                minter
                    .remint(jwt, audience, unix_now().as_secs())
                    .map(|m| m.map(|m| m.jwt))
            }) {
                Ok(Some(copy)) => verdict.result = Ok(copy),
                // Not a JWT the plugin minted: forwarded as the AS gave it.
                Ok(None) => {}
                Err(e) => {
                    verdict.result = Err(Denial::Introspection(Arc::new(IntrospectError::Mint(
                        e.to_string(),
                    ))));
                }
            }
        }
        verdict
    }

    /// The `Authorization` for the upstream of a request Tyk already
    /// authenticated (Curity's `post_key_auth` hook), without introspecting
    /// again when it can be helped.
    ///
    /// After our auth hook, Tyk has already applied its `set_headers`, so the
    /// request carries the JWT and nothing changes. When Tyk's id_extractor
    /// answered from its own cache, the auth hook did not run and the request
    /// still carries the opaque token: the JWT comes from our cache, or from
    /// `kept_jwt` (the session's `phantom_jwt` metadata) when that is kept,
    /// either only while the JWT is before its `exp` minus the clock skew.
    /// Only if neither has it (e.g. after a restart) is the token decided in
    /// full, without the API's rules (Tyk's session already passed them).
    pub async fn upstream(
        self: &Arc<Self>,
        header: Option<&str>,
        kept_jwt: Option<&str>,
        trace: Option<&TraceContext>,
    ) -> Upstream {
        let Ok(token) = extract_bearer(header, self.max_token_bytes) else {
            return Upstream::Unchanged;
        };
        if let Some(grant) = self.cached_grant(&token).await {
            return Upstream::Forward(grant.authorization().to_owned());
        }
        if crate::jwt::parse(token.expose()).is_ok() {
            debug!("Upstream already carries the JWT");
            return Upstream::Unchanged;
        }
        let kept = kept_jwt
            .filter(|jwt| crate::jwt::parse(jwt).is_ok_and(|claims| self.forwardable(claims.exp)));
        if let Some(jwt) = kept {
            return Upstream::Forward(format!("Bearer {jwt}"));
        }
        let verdict = self.authorize(header, trace).await;
        match verdict.result {
            Ok(grant) => Upstream::Forward(grant.authorization().to_owned()),
            Err(denial) => Upstream::Deny {
                digest: verdict.digest,
                denial,
            },
        }
    }

    /// Decides a request from its `Authorization` header alone.
    async fn authorize(
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
        let key = self.key(&token, digest);
        let fetch = || async {
            let introspect = || self.client.introspect(&token, trace);
            let to_cached = |answer, at| self.to_cached(&digest, answer, at);
            match &self.fleet {
                Some(fleet) => {
                    fleet
                        .fetch(token.expose(), key, introspect, to_cached)
                        .await
                }
                None => {
                    let started = unix_now();
                    Ok(to_cached(introspect().await?, started))
                }
            }
        };
        let (answer, lookup) = match self
            .cache
            .get_or_fetch::<IntrospectError, _>(key, fetch)
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
        let now = unix_now();
        // Revalidation is for grants still served: one in its last seconds
        // is refused below whatever the AS would say now.
        if lookup == Lookup::Hit
            && let Some(grant) = &answer.value
            && self.ttl.forwardable(grant.claims.exp, now)
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
        Verdict {
            digest: Some(digest),
            lookup: Some(lookup),
            result: self.judge(&answer.value, now),
        }
    }

    /// Whether a cached JWT expiring at `exp` may still be forwarded now
    /// (see [`TtlPolicy::forwardable`]). Every path that forwards a JWT from
    /// the cache or from Tyk's session asks this first.
    pub fn forwardable(&self, exp: Option<u64>) -> bool {
        self.ttl.forwardable(exp, unix_now())
    }

    /// The cache entry for an answer of the AS, with its TTL.
    /// `introspected_at` is when the introspection that gave it started
    /// (unix time): for another replica's answer read from the fleet's
    /// cache, its sealed time, so the answer keeps its age and
    /// `REVALIDATE_AFTER_SECONDS` counts from when the AS gave it.
    fn to_cached(
        &self,
        digest: &TokenDigest,
        answer: Introspection,
        introspected_at: Duration,
    ) -> Cached<Answer> {
        match answer {
            Introspection::Active(active) => {
                let now = unix_now();
                let exp = active.claims.exp;
                let ttl = self.ttl.for_answer(exp, &active.cache, now);
                // Tyk's id_extractor may answer from its own cache until
                // then: never while the plugin itself would refuse the JWT
                // (its last seconds), nor past the answer's revalidation.
                let until = [
                    Some(now + ttl),
                    self.ttl
                        .forwardable_for(exp, now)
                        .map(|usable| now + usable),
                    self.revalidate_after.map(|after| introspected_at + after),
                ]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + ttl);
                let grant = Grant::new(
                    &active.jwt,
                    &active.claims,
                    active.minted,
                    self.keys.session_key(digest),
                    until.as_secs(),
                    introspected_at,
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

    /// The cached grant for a token, without introspecting: none once its JWT
    /// is no longer [`forwardable`](Authorizer::forwardable).
    pub async fn cached_grant(&self, token: &BearerToken<'_>) -> Option<Arc<Grant>> {
        self.cache
            .peek(&self.key(token, token.digest()))
            .await
            .and_then(|c| c.value.clone())
            .filter(|grant| self.forwardable(grant.claims.exp))
    }
}

impl Authorizer {
    /// The decision for an answer at `now`: inactive; expired (its `exp`
    /// has passed, or it is in its last `CLOCK_SKEW_SECONDS`: see
    /// [`TtlPolicy::forwardable`]); or the grant.
    fn judge(&self, answer: &Answer, now: Duration) -> Result<Arc<Grant>, Denial> {
        match answer {
            None => Err(Denial::InvalidToken(InvalidToken::Inactive)),
            Some(grant) if !self.ttl.forwardable(grant.claims.exp, now) => {
                Err(Denial::InvalidToken(InvalidToken::Expired))
            }
            Some(grant) => Ok(Arc::clone(grant)),
        }
    }
}
