//! `Cache-Control` from the AS.

use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::select;
use tyk_phantom_token::introspect::{CacheDirectives, cache_control};

use crate::{cases, with_case};

#[derive(Debug, Clone)]
enum Directive {
    MaxAge {
        secs: u64,
        quoted: bool,
    },
    NoStore,
    NoCache {
        field: Option<&'static str>,
    },
    /// A directive that must not limit anything (including look-alikes).
    Other(&'static str),
    /// `max-age` with an argument that is not a whole number of seconds.
    BadMaxAge(&'static str),
}

impl Directive {
    /// The `max-age` it gives: the only directive that limits the token cache
    /// unless `no-store` is honoured.
    fn max_age(&self) -> Option<u64> {
        match self {
            Directive::MaxAge { secs, .. } => Some(*secs),
            _ => None,
        }
    }

    /// `no-store` or `no-cache`: heeded only with `HONOR_CACHE_CONTROL_NO_STORE`.
    fn forbids_storing(&self) -> bool {
        matches!(self, Directive::NoStore | Directive::NoCache { .. })
    }
}

fn directive() -> impl Strategy<Value = Directive> {
    prop_oneof![
        3 => (prop_oneof![any::<u64>(), 0u64..100_000], any::<bool>())
            .prop_map(|(secs, quoted)| Directive::MaxAge { secs, quoted }),
        1 => Just(Directive::NoStore),
        1 => prop::option::of(select(&["Set-Cookie", "Authorization"][..]))
            .prop_map(|field| Directive::NoCache { field }),
        3 => select(&[
            "public", "private", "must-revalidate", "no-transform", "immutable",
            "s-maxage=5", "max-stale=7", "stale-while-revalidate=9", "proxy-revalidate",
            "x-max-age=1", "max-ages=3", "maxage=4", "no-stores", "xno-cache", "",
            "private=\"Set-Cookie\"", "community=\"UCI\"",
        ][..]).prop_map(Directive::Other),
        1 => select(&[
            "", "soon", "-1", "1.5", "0x10", "99999999999999999999999", "1 2", "\"\"", "1e3",
        ][..]).prop_map(Directive::BadMaxAge),
    ]
}

/// Renders a directive with random case and blanks around `=`.
fn render_directive() -> impl Strategy<Value = (Directive, String)> {
    (
        directive(),
        prop::collection::vec(any::<bool>(), 8),
        "[ \t]{0,2}",
        "[ \t]{0,2}",
    )
        .prop_map(|(d, upper, before, after)| {
            let text = match &d {
                Directive::MaxAge { secs, quoted: true } => {
                    format!("{}{before}={after}\"{secs}\"", with_case("max-age", &upper))
                }
                Directive::MaxAge {
                    secs,
                    quoted: false,
                } => {
                    format!("{}{before}={after}{secs}", with_case("max-age", &upper))
                }
                Directive::NoStore => with_case("no-store", &upper),
                Directive::NoCache { field: None } => with_case("no-cache", &upper),
                Directive::NoCache { field: Some(f) } => {
                    format!("{}{before}={after}\"{f}\"", with_case("no-cache", &upper))
                }
                Directive::Other(text) => with_case(text, &upper),
                Directive::BadMaxAge(arg) => {
                    format!("{}{before}={after}{arg}", with_case("max-age", &upper))
                }
            };
            (d, text)
        })
}

fn cache_control_header() -> impl Strategy<Value = (Vec<Directive>, String)> {
    prop::collection::vec((render_directive(), "[ \t]{0,2}", "[ \t]{0,2}"), 0..8).prop_map(
        |items| {
            let mut directives = Vec::new();
            let mut text = String::new();
            for (i, ((d, rendered), lead, trail)) in items.into_iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&lead);
                text.push_str(&rendered);
                text.push_str(&trail);
                directives.push(d);
            }
            (directives, text)
        },
    )
}

proptest! {
    #![proptest_config(cases(512))]

    /// `max-age` is the smallest one given and `no_store` is set by
    /// `no-store`/`no-cache`; case and blanks do not matter, look-alikes
    /// (`s-maxage`, `max-ages`, `no-stores`) and `private` do not count. The
    /// token cache is limited by `max-age` alone (zero included), and by
    /// `no-store`/`no-cache` only when they are honoured.
    #[test]
    fn cache_control_reads_the_smallest_max_age_and_any_no_store((directives, text) in cache_control_header()) {
        let max_age = directives.iter().filter_map(Directive::max_age).min().map(Duration::from_secs);
        let no_store = directives.iter().any(Directive::forbids_storing);
        let parsed = cache_control(&text);
        prop_assert_eq!(parsed, CacheDirectives { max_age, no_store }, "header {:?}", text);
        prop_assert_eq!(parsed.limit(false), max_age, "header {:?}", text);
        let strict = if no_store { Some(Duration::ZERO) } else { max_age };
        prop_assert_eq!(parsed.limit(true), strict, "header {:?}", text);
    }

    /// Joining two header values with a comma reads like merging the two (so
    /// several `Cache-Control` lines combine the same way), for any text at
    /// all.
    #[test]
    fn cache_control_of_a_list_is_the_merge_of_its_parts(a in ".{0,40}", b in ".{0,40}") {
        prop_assert_eq!(
            cache_control(&format!("{a},{b}")),
            cache_control(&a).merge(cache_control(&b))
        );
    }

    /// Arbitrary text never panics, and whatever is found comes from a
    /// directive named in it: only a `max-age` limits the cache by default.
    #[test]
    fn cache_control_findings_come_from_named_directives(text in any::<String>()) {
        let lower = text.to_ascii_lowercase();
        let parsed = cache_control(&text);
        if parsed.max_age.is_some() || parsed.limit(false).is_some() {
            prop_assert!(lower.contains("max-age"));
        }
        if parsed.no_store {
            prop_assert!(lower.contains("no-store") || lower.contains("no-cache"));
        }
    }
}
