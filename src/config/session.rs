//! The session section: the limits and lifetime of the Tyk session an
//! allowed request gets, and the key its session key is derived with.

use super::parse;
use super::reader::Reader;
use super::redacted::Secret;
use super::vars::*;

/// Keeps Tyk's stored session a little past the token's expiry, never forever.
pub const DEFAULT_SESSION_LIFETIME_GRACE_SECONDS: u64 = 60;

/// What goes into the Tyk session of an allowed request.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Requests per `per` seconds; 0 = unlimited.
    pub rate: f64,
    pub per: f64,
    /// Requests per quota period; -1 = unlimited.
    pub quota_max: i64,
    pub quota_renewal_seconds: i64,
    pub lifetime_grace_seconds: u64,
    /// Key of the HMAC that turns a token digest into Tyk's session key.
    pub key_secret: Secret,
    /// `SESSION_KEY_SECRET` is not set, so `key_secret` is the client
    /// secret: the authorization server, and anything that sees the
    /// introspection requests, knows it. Warned about at start-up.
    pub key_secret_is_client_secret: bool,
}

/// The section, or `None` when there is no key secret: `SESSION_KEY_SECRET`
/// is unset and `client_secret` (its fallback) could not be read (`None`,
/// reported where the client secret is read) or is not configured
/// (`Some(None)`, with `private_key_jwt`: reported here).
pub(super) fn read(
    r: &mut Reader<'_>,
    client_secret: Option<Option<&Secret>>,
) -> Option<SessionConfig> {
    let rate = r.optional(ENV_SESSION_RATE, parse::non_negative_number);
    let per = r.optional(ENV_SESSION_RATE_PER_SECONDS, parse::non_negative_number);
    let quota_max = r.optional(ENV_SESSION_QUOTA_MAX, |v| {
        parse::integer::<i64>(v, -1, i64::MAX)
    });
    let renewal = r.optional(ENV_SESSION_QUOTA_RENEWAL_SECONDS, |v| {
        parse::integer::<i64>(v, 1, i64::MAX)
    });
    let grace = r.or(
        ENV_SESSION_LIFETIME_GRACE_SECONDS,
        parse::seconds,
        DEFAULT_SESSION_LIFETIME_GRACE_SECONDS,
    );
    let own_key_secret = r.raw(ENV_SESSION_KEY_SECRET).map(Secret::new);
    let key_secret_is_client_secret = own_key_secret.is_none();
    if own_key_secret.is_none() && matches!(client_secret, Some(None)) {
        r.problem(format!(
            "{ENV_SESSION_KEY_SECRET} is required when no client secret is set \
             (CLIENT_AUTH_METHOD=private_key_jwt): session keys would otherwise derive from it"
        ));
    }
    let key_secret = own_key_secret.or_else(|| client_secret.flatten().cloned());

    if rate.is_some_and(|r| r > 0.0) && per.is_none_or(|p| p <= 0.0) {
        r.problem(format!(
            "{ENV_SESSION_RATE} needs {ENV_SESSION_RATE_PER_SECONDS} greater than 0"
        ));
    }
    if quota_max.is_some_and(|q| q > 0) && renewal.is_none() {
        r.problem(format!(
            "{ENV_SESSION_QUOTA_MAX} needs {ENV_SESSION_QUOTA_RENEWAL_SECONDS}"
        ));
    }
    Some(SessionConfig {
        rate: rate.unwrap_or(0.0),
        per: per.unwrap_or(0.0),
        quota_max: match quota_max {
            Some(q) if q > 0 => q,
            _ => -1,
        },
        quota_renewal_seconds: renewal.unwrap_or(0),
        lifetime_grace_seconds: grace,
        key_secret: key_secret?,
        key_secret_is_client_secret,
    })
}
