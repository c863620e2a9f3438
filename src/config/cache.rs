//! The cache section: the token cache's bounds and how long answers live in
//! it.

use std::time::Duration;

use super::parse;
use super::reader::{Reader, in_range};
use super::vars::*;

pub const DEFAULT_CACHE_MAX_BYTES: u64 = 64 << 20;
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 30;
/// A JWT without `exp` is cached only this long.
pub const DEFAULT_CACHE_DEFAULT_TTL_SECONDS: u64 = 30;
/// Inactive answers are remembered briefly, so a client retrying a dead token in
/// a loop does not turn each retry into an introspection.
pub const DEFAULT_NEGATIVE_CACHE_SECONDS: u64 = 5;

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub max_bytes: u64,
    /// `None`: bounded by bytes only.
    pub max_entries: Option<u64>,
    pub clock_skew: Duration,
    /// `None`: no cap beyond the JWT's `exp` and the AS's `max-age`.
    pub max_ttl: Option<Duration>,
    pub default_ttl: Duration,
    pub negative_ttl: Duration,
    /// Let the AS's `Cache-Control: no-store` / `no-cache` (and `Pragma:
    /// no-cache`) keep its answers out of the token cache. Off by default:
    /// most servers send them on every response, meaning HTTP caches between
    /// the two parties, not the gateway's token cache.
    pub honor_no_store: bool,
    /// Re-introspect cached tokens older than this in the background, so a
    /// revocation takes effect within it.
    pub revalidate_after: Option<Duration>,
}

/// The section (every value has a default).
pub(super) fn read(r: &mut Reader<'_>) -> CacheConfig {
    let revalidate_after = r.optional(ENV_REVALIDATE_AFTER_SECONDS, |v| {
        parse::seconds(v).and_then(|n| in_range(n, 1, 86_400))
    });
    let max_bytes = r.or(
        ENV_CACHE_MAX_BYTES,
        |v| parse::byte_size(v).and_then(|n| in_range(n, 64 * 1024, 1 << 40)),
        DEFAULT_CACHE_MAX_BYTES,
    );
    // Curity's plugin reads 0 as "no entry limit"; so do we.
    let max_entries = r
        .optional(ENV_CACHE_MAX_ENTRIES, |v| {
            parse::integer::<u64>(v, 0, u64::MAX)
        })
        .filter(|n| *n > 0);
    if r.optional(ENV_CACHE_JANITOR_SECONDS, parse::seconds)
        .is_some()
    {
        r.ignore(ENV_CACHE_JANITOR_SECONDS);
    }
    let clock_skew = r.or(
        ENV_CLOCK_SKEW_SECONDS,
        |v| parse::seconds(v).and_then(|n| in_range(n, 0, 3600)),
        DEFAULT_CLOCK_SKEW_SECONDS,
    );
    let max_ttl = r.optional(ENV_CACHE_MAX_TTL_SECONDS, parse::seconds);
    let default_ttl = r.or(
        ENV_CACHE_DEFAULT_TTL_SECONDS,
        parse::seconds,
        DEFAULT_CACHE_DEFAULT_TTL_SECONDS,
    );
    let negative_ttl = r.or(
        ENV_NEGATIVE_CACHE_SECONDS,
        |v| parse::seconds(v).and_then(|n| in_range(n, 0, 3600)),
        DEFAULT_NEGATIVE_CACHE_SECONDS,
    );
    let honor_no_store = r.or(ENV_HONOR_CACHE_CONTROL_NO_STORE, parse::boolean, false);

    CacheConfig {
        max_bytes,
        max_entries,
        clock_skew: Duration::from_secs(clock_skew),
        max_ttl: max_ttl.map(Duration::from_secs),
        default_ttl: Duration::from_secs(default_ttl),
        negative_ttl: Duration::from_secs(negative_ttl),
        honor_no_store,
        revalidate_after: revalidate_after.map(Duration::from_secs),
    }
}
