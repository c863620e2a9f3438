//! The Tyk session of an allowed request: its key, expiry and lifetime, the
//! metadata and policies it carries, the API it opens, its analytics names,
//! its id_extractor deadline and its rate and quota. Computed from the grant
//! and the API's rules as plain data; [`crate::tyk::allow`] writes it into
//! Tyk's `SessionState`.

use crate::api_rules::{
    ApiRules, META_CLIENT_ID, META_JWT, META_SCOPE, META_SUB, META_TOKEN, identity_value,
    is_safe_meta_value,
};
use crate::authz::Grant;
use crate::config::Config;
use crate::token::SessionKeys;

/// What Tyk stores for an allowed request (times in unix seconds, durations
/// in seconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Session {
    /// Metadata (`$tyk_meta.<key>`), in the order it is written:
    /// [`META_TOKEN`] first, then the standard claims, the API's metadata
    /// claims, and the JWT when the API keeps it. Tyk merges it into the
    /// session's metadata and stores it.
    pub metadata: Vec<(String, String)>,
    /// The JWT's `exp`; 0 for a JWT without one (Tyk: never).
    pub expires: u64,
    /// How long Tyk keeps the stored session after each request.
    pub lifetime: u64,
    /// Until when Tyk's id_extractor may answer without calling the plugin.
    pub id_extractor_deadline: u64,
    /// Tyk policy IDs applied to the session.
    pub apply_policies: Vec<String>,
    /// The one API the session opens.
    pub api_id: String,
    /// The versions of that API it may use.
    pub api_versions: Vec<String>,
    /// The caller's name in Tyk's analytics.
    pub alias: String,
    /// Analytics tags (`claim:value`).
    pub tags: Vec<String>,
    /// Requests per `per` seconds; 0: unlimited.
    pub rate: f64,
    pub per: f64,
    /// Requests per quota period; -1: unlimited.
    pub quota_max: i64,
    pub quota_renewal_seconds: i64,
    /// When the session was computed.
    pub last_updated: u64,
}

/// Computes sessions with the deployment's settings.
pub struct Sessions {
    keys: SessionKeys,
    rate: f64,
    per: f64,
    quota_max: i64,
    quota_renewal_seconds: i64,
    lifetime_grace_seconds: u64,
    /// A JWT without `exp` is kept as long as a cache entry without one.
    default_ttl_seconds: u64,
}

impl Sessions {
    /// `keys` are the authorizer's, so a session key from a claim and one
    /// from the token come from the same secret.
    pub fn new(config: &Config, keys: SessionKeys) -> Self {
        let session = &config.session;
        Sessions {
            keys,
            rate: session.rate,
            per: session.per,
            quota_max: session.quota_max,
            quota_renewal_seconds: session.quota_renewal_seconds,
            lifetime_grace_seconds: session.lifetime_grace_seconds,
            default_ttl_seconds: config.cache.default_ttl.as_secs(),
        }
    }

    /// The session for `grant` on the API `api_id` with `rules`, at `now`
    /// (unix seconds).
    pub fn for_grant(&self, grant: &Grant, rules: &ApiRules, api_id: &str, now: u64) -> Session {
        // The cached summary serves the default rules; rules naming other
        // claims read them from the JWT again.
        let full;
        let claims = if rules.needs_full_claims() {
            full = grant.full_claims();
            &full
        } else {
            &grant.claims
        };
        let identity = &rules.identity;
        let remaining = claims
            .exp
            .map_or(self.default_ttl_seconds, |exp| exp.saturating_sub(now));

        let session_key = identity
            .session_key_claim
            .as_deref()
            .and_then(|claim| identity_value(claims, claim).map(|value| (claim, value)))
            .map_or_else(
                || grant.session_key.to_string(),
                |(claim, value)| self.keys.identity_key(claim, &value),
            );
        let mut metadata = Vec::with_capacity(4 + identity.metadata_claims.len());
        metadata.push((META_TOKEN.to_owned(), session_key));
        for key in [META_SUB, META_CLIENT_ID, META_SCOPE] {
            if let Some(value) = claims.string(key).filter(|v| is_safe_meta_value(v)) {
                metadata.push((key.to_owned(), value.to_owned()));
            }
        }
        metadata.extend(
            identity
                .metadata(claims)
                .map(|(key, value)| (key.to_owned(), value)),
        );
        if identity.jwt_in_metadata {
            metadata.push((META_JWT.to_owned(), grant.jwt().to_owned()));
        }

        Session {
            metadata,
            expires: claims.exp.unwrap_or(0),
            // Tyk keeps the stored session this long after each request, so
            // it disappears soon after the token expires instead of never.
            lifetime: remaining.max(1).saturating_add(self.lifetime_grace_seconds),
            // With an id_extractor, Tyk answers from its own cache until then
            // without calling the plugin; never past our cache entry, which
            // itself ends before the token's expiry, nor past the time the
            // answer is due for revalidation.
            id_extractor_deadline: grant.cached_until,
            apply_policies: identity.policies(claims),
            // Tyk reads empty access rights as "every API". In id_extractor
            // mode the session is stored under a key the client can compute
            // (org + MD5 of its Authorization value), and it would open every
            // auth-token API of the organisation: name this API only.
            // Policies the session names replace these rights with their own
            // (Tyk's policy engine).
            api_id: api_id.to_owned(),
            api_versions: rules.api_versions(),
            // Tyk's analytics records carry these: without them a record
            // names only a hashed key.
            alias: identity.alias(claims),
            tags: identity.tags(claims),
            rate: self.rate,
            per: self.per,
            quota_max: self.quota_max,
            quota_renewal_seconds: self.quota_renewal_seconds,
            last_updated: now,
        }
    }
}

#[cfg(test)]
mod tests;
