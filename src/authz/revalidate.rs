//! Revalidation of cached answers: in the background while the cached JWT is
//! served, or on the request path once overdue.

use std::sync::Arc;

use tracing::debug;

use super::grant::unix_millis;
use super::{Authorizer, Denial, Grant, Verdict, millis};
use crate::cache::{Cached, unix_now};
use crate::introspect::{IntrospectError, Introspection};
use crate::metrics::Revalidation;
use crate::token::{BearerToken, TokenDigest};
use crate::trace::TraceContext;

/// An entry not revalidated for this many periods of
/// `REVALIDATE_AFTER_SECONDS` (every background attempt skipped or failed) is
/// re-introspected on the request path instead of being served.
pub const OVERDUE_PERIODS: u32 = 3;

/// How soon a revalidation skipped for want of a slot is tried again.
const SKIPPED_RETRY_MILLIS: u64 = 1000;

/// Which revalidation a hit calls for.
pub(super) enum Due {
    /// In the background, serving the cached grant meanwhile.
    Background,
    /// On this request: past [`OVERDUE_PERIODS`] without a revalidation.
    Overdue,
}

impl Authorizer {
    /// Whether a hit on `grant` calls for a revalidation, and which. At most
    /// one caller at a time gets `Some` for a grant.
    pub(super) fn revalidation_due(&self, grant: &Grant) -> Option<Due> {
        let after = self.revalidate_after?;
        let now = unix_millis();
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
    pub(super) fn revalidate_in_background(
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
            let started = unix_now();
            match this.client.introspect_in_background(&bearer).await {
                None => {
                    grant.reschedule(unix_millis() + SKIPPED_RETRY_MILLIS);
                    this.metrics.revalidation(Revalidation::Skipped);
                }
                Some(Ok(answer)) => {
                    let revoked = answer == Introspection::Inactive;
                    let cached = this.to_cached(&digest, answer.clone(), started);
                    if let Some(fleet) = &this.fleet {
                        fleet.refresh(&token, &answer, cached.ttl, started).await;
                    }
                    this.cache.insert(this.key(&bearer, digest), cached).await;
                    if revoked {
                        this.metrics.revalidation(Revalidation::Revoked);
                        debug!(
                            token.id = grant.log_id(),
                            "Revalidation found the token inactive; dropped"
                        );
                    } else {
                        this.metrics.revalidation(Revalidation::Refreshed);
                    }
                }
                Some(Err(e)) => {
                    // Keep serving the cached JWT (its entry still ends
                    // before exp); try again after another period.
                    grant.reschedule(unix_millis() + millis(after));
                    this.metrics.revalidation(Revalidation::Failed);
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
    pub(super) async fn revalidate_overdue(
        &self,
        grant: Arc<Grant>,
        token: &BearerToken<'_>,
        digest: TokenDigest,
        trace: Option<&TraceContext>,
    ) -> Verdict {
        let after = self.revalidate_after.unwrap_or_default();
        let fetch = || async {
            let started = unix_now();
            match self.client.introspect(token, trace).await {
                Ok(answer) => {
                    self.metrics
                        .revalidation(if answer == Introspection::Inactive {
                            Revalidation::Revoked
                        } else {
                            Revalidation::Refreshed
                        });
                    let cached = self.to_cached(&digest, answer.clone(), started);
                    if let Some(fleet) = &self.fleet {
                        fleet
                            .refresh(token.expose(), &answer, cached.ttl, started)
                            .await;
                    }
                    Ok(cached)
                }
                Err(IntrospectError::Overloaded) => {
                    self.metrics.revalidation(Revalidation::Skipped);
                    Err(IntrospectError::Overloaded)
                }
                Err(e) => {
                    grant.reschedule(unix_millis() + millis(after));
                    self.metrics.revalidation(Revalidation::Failed);
                    self.metrics.stale_serve();
                    debug!(token.id = grant.log_id(), error = %e, "Revalidation failed; serving the cached JWT");
                    // Kept for the rest of the token's life; the next try
                    // comes a period later.
                    let left = self.ttl.active(grant.claims.exp, None, unix_now());
                    Ok(Cached {
                        weight: grant.weight(),
                        value: Some(Arc::clone(&grant)),
                        ttl: left,
                    })
                }
            }
        };
        let key = self.key(token, digest);
        self.cache.invalidate(&key).await;
        match self
            .cache
            .get_or_fetch::<IntrospectError, _>(key, fetch)
            .await
        {
            Ok((answer, lookup)) => Verdict {
                digest: Some(digest),
                lookup: Some(lookup),
                result: self.judge(&answer.value, unix_now()),
            },
            Err(e) => Verdict::denied(Some(digest), Denial::Introspection(e)),
        }
    }
}
