//! The caching headers of the AS's answers.

use super::*;

/// What an answer's caching headers say: `Cache-Control` (every line) and
/// `Pragma`.
///
/// Only a positive `max-age` limits the token cache by default (Curity's own
/// gateway plugins read it as an upper bound); `max-age=0` means "do not
/// cache". `no-store`, `no-cache` and `Pragma: no-cache`, which most
/// authorization servers send on every response, address HTTP caches between
/// the AS and its client: the phantom-token pattern is the gateway keeping the
/// answer until the token expires, so they are heeded only when
/// `HONOR_CACHE_CONTROL_NO_STORE` asks for it. `private` never limits (the
/// gateway is the answer's only recipient).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheDirectives {
    /// The smallest `max-age`, if any.
    pub max_age: Option<Duration>,
    /// `no-store` or `no-cache` in `Cache-Control`, or `Pragma: no-cache`.
    pub no_store: bool,
}

impl CacheDirectives {
    /// The directives of two header values together: the smaller `max-age`,
    /// and `no_store` if either has it.
    #[must_use]
    pub fn merge(self, other: CacheDirectives) -> CacheDirectives {
        CacheDirectives {
            max_age: match (self.max_age, other.max_age) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            no_store: self.no_store || other.no_store,
        }
    }

    /// The limit these put on the token cache's TTL: `max-age`, or zero for
    /// `no-store` / `no-cache` when `honor_no_store`.
    pub fn limit(&self, honor_no_store: bool) -> Option<Duration> {
        if honor_no_store && self.no_store {
            Some(Duration::ZERO)
        } else {
            self.max_age
        }
    }
}

/// The directives of an answer's headers: every `Cache-Control` line, and
/// `Pragma: no-cache`.
pub fn cache_directives(headers: &HeaderMap) -> CacheDirectives {
    let mut cache = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(cache_control)
        .fold(CacheDirectives::default(), CacheDirectives::merge);
    cache.no_store |= headers
        .get_all(PRAGMA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(pragma_no_cache);
    cache
}

/// The directives in one `Cache-Control` header value. Unknown directives and
/// unreadable `max-age` values are ignored.
pub fn cache_control(value: &str) -> CacheDirectives {
    let mut found = CacheDirectives::default();
    for directive in value.split(',') {
        let directive = directive.trim();
        let (name, arg) = match directive.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            found.no_store = true;
        } else if name.eq_ignore_ascii_case("max-age")
            && let Some(secs) = arg.and_then(|a| a.parse::<u64>().ok())
        {
            found = found.merge(CacheDirectives {
                max_age: Some(Duration::from_secs(secs)),
                no_store: false,
            });
        }
    }
    found
}

/// Whether a `Pragma` header value holds `no-cache` (HTTP/1.0's `no-cache`).
pub fn pragma_no_cache(value: &str) -> bool {
    value
        .split(',')
        .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
}
