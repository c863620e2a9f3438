//! Prometheus metrics. Every label value comes from a fixed set (no tokens, no
//! API IDs), so the number of series is bounded whatever the traffic.
//!
//! Counters on the request path are resolved once at start-up, so recording
//! is a single atomic add.

use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::breaker::BreakerState;
use crate::dpop::DpopOutcome;

/// Declares a metric's label values as an enum: each variant with its text,
/// `ALL` in declaration order (the order counters are resolved in), `as_str`,
/// and the Prometheus encoding of the text.
macro_rules! label_values {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant,)+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
                encoder.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use label_values;

label_values! {
    /// What the plugin answered Tyk on an auth_check (label `outcome`; the
    /// `status` label is [`Decision::status`]).
    pub enum Decision {
        Allow => "allow",
        NoCredentials => "no_credentials",
        InvalidToken => "invalid_token",
        InsufficientScope => "insufficient_scope",
        InsufficientUserAuthentication => "insufficient_user_authentication",
        InvalidConfig => "invalid_config",
        AsError => "as_error",
        AsUnavailable => "as_unavailable",
        AsTimeout => "as_timeout",
        ShuttingDown => "shutting_down",
        /// The plugin had no room for the request (DPoP replay store full).
        Overloaded => "overloaded",
    }
}

impl Decision {
    /// The HTTP status Tyk sends for this answer.
    pub fn status(self) -> &'static str {
        match self {
            Decision::Allow => "200",
            Decision::NoCredentials
            | Decision::InvalidToken
            | Decision::InsufficientUserAuthentication => "401",
            Decision::InsufficientScope => "403",
            Decision::InvalidConfig => "500",
            Decision::AsError => "502",
            Decision::AsUnavailable | Decision::ShuttingDown | Decision::Overloaded => "503",
            Decision::AsTimeout => "504",
        }
    }
}

label_values! {
    /// How a cache lookup was answered.
    pub enum CacheLookup {
        /// An active token found in the cache.
        Hit => "hit",
        /// An inactive answer found in the cache.
        NegativeHit => "negative_hit",
        /// Not cached: this request introspected.
        Miss => "miss",
        /// Not cached: this request waited for another request's introspection.
        Coalesced => "coalesced",
    }
}

label_values! {
    /// What one introspection came to.
    pub enum AsOutcome {
        Active => "active",
        Inactive => "inactive",
        Timeout => "timeout",
        Unreachable => "unreachable",
        Tls => "tls",
        Unavailable => "unavailable",
        Rejected => "credentials_rejected",
        BadStatus => "bad_status",
        BadBody => "bad_body",
        Overloaded => "overloaded",
        BreakerOpen => "breaker_open",
    }
}

impl AsOutcome {
    /// Whether the AS was actually called (and its latency is meaningful).
    fn called(self) -> bool {
        !matches!(self, AsOutcome::Overloaded | AsOutcome::BreakerOpen)
    }
}

label_values! {
    /// What a revalidation of a cached token came to.
    pub enum Revalidation {
        /// The AS answered active: the entry holds the new answer.
        Refreshed => "refreshed",
        /// The AS answered inactive: the entry now denies.
        Revoked => "revoked",
        /// The AS gave no answer: the cached JWT is served meanwhile.
        Failed => "failed",
        /// No introspection slot was free: tried again later.
        Skipped => "skipped",
    }
}

label_values! {
    /// Why an entry left the token cache.
    pub enum Eviction {
        /// Pushed out to stay within the size bound.
        Size => "size",
        /// Its time to live was over.
        Expired => "expired",
        /// Removed on purpose (an overdue entry fetched again).
        Explicit => "explicit",
        /// Replaced by a newer answer for the same token.
        Replaced => "replaced",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    outcome: Decision,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabel {
    result: CacheLookup,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    result: AsOutcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevalidationLabel {
    result: Revalidation,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: Eviction,
}

/// All metrics of the process.
pub struct Metrics {
    registry: Registry,
    decisions: Vec<Counter>,
    cache_lookups: Vec<Counter>,
    cache_stale_serves: Counter,
    cache_evictions: Family<CauseLabel, Counter>,
    cache_entries: Gauge,
    cache_bytes: Gauge,
    revalidations: Family<RevalidationLabel, Counter>,
    as_outcomes: Vec<Counter>,
    as_latency: Histogram,
    inflight: Gauge,
    breaker_state: Gauge,
    dpop_checks: Vec<Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("phantom");

        let decisions_family = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Auth-check answers given to Tyk, by outcome and HTTP status",
            decisions_family.clone(),
        );
        let decisions = Decision::ALL
            .iter()
            .map(|&outcome| {
                decisions_family
                    .get_or_create(&DecisionLabels {
                        outcome,
                        status: outcome.status(),
                    })
                    .clone()
            })
            .collect();

        let lookups_family = Family::<LookupLabel, Counter>::default();
        registry.register(
            "cache_lookups",
            "Token cache lookups by result",
            lookups_family.clone(),
        );
        let cache_lookups = CacheLookup::ALL
            .iter()
            .map(|&result| {
                lookups_family
                    .get_or_create(&LookupLabel { result })
                    .clone()
            })
            .collect();

        let cache_stale_serves = Counter::default();
        registry.register(
            "cache_stale_serves",
            "Requests served from a cache entry due for revalidation",
            cache_stale_serves.clone(),
        );
        let cache_evictions = Family::<CauseLabel, Counter>::default();
        registry.register(
            "cache_evictions",
            "Cache entries removed, by cause (size, expired, explicit, replaced)",
            cache_evictions.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register(
            "cache_entries",
            "Entries in the token cache",
            cache_entries.clone(),
        );
        let cache_bytes = Gauge::default();
        registry.register(
            "cache_bytes",
            "Approximate bytes held by the token cache",
            cache_bytes.clone(),
        );
        let revalidations = Family::<RevalidationLabel, Counter>::default();
        registry.register(
            "cache_revalidations",
            "Background revalidations of cached tokens, by result",
            revalidations.clone(),
        );

        let outcomes_family = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "introspections",
            "Introspections by outcome (overloaded and breaker_open never reached the AS)",
            outcomes_family.clone(),
        );
        let as_outcomes = AsOutcome::ALL
            .iter()
            .map(|&result| {
                outcomes_family
                    .get_or_create(&OutcomeLabel { result })
                    .clone()
            })
            .collect();
        let as_latency = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "introspection_duration_seconds",
            "Time from sending an introspection to its answer",
            as_latency.clone(),
        );
        let inflight = Gauge::default();
        registry.register(
            "introspections_in_flight",
            "Introspections in progress",
            inflight.clone(),
        );
        let breaker_state = Gauge::default();
        registry.register(
            "breaker_state",
            "Authorization-server breaker: 0 closed, 1 open, 2 half-open",
            breaker_state.clone(),
        );

        let dpop_checks = crate::dpop::register_outcomes(&mut registry);
        Metrics {
            dpop_checks,
            registry,
            decisions,
            cache_lookups,
            cache_stale_serves,
            cache_evictions,
            cache_entries,
            cache_bytes,
            revalidations,
            as_outcomes,
            as_latency,
            inflight,
            breaker_state,
        }
    }

    pub fn decision(&self, decision: Decision) {
        self.decisions[decision as usize].inc();
    }

    pub fn dpop(&self, outcome: DpopOutcome) {
        self.dpop_checks[outcome as usize].inc();
    }

    pub fn cache_lookup(&self, lookup: CacheLookup) {
        self.cache_lookups[lookup as usize].inc();
    }

    pub fn stale_serve(&self) {
        self.cache_stale_serves.inc();
    }

    pub fn eviction(&self, cause: Eviction) {
        self.cache_evictions
            .get_or_create(&CauseLabel { cause })
            .inc();
    }

    pub fn revalidation(&self, result: Revalidation) {
        self.revalidations
            .get_or_create(&RevalidationLabel { result })
            .inc();
    }

    pub fn introspection(&self, outcome: AsOutcome, took: Duration) {
        self.as_outcomes[outcome as usize].inc();
        if outcome.called() {
            self.as_latency.observe(took.as_secs_f64());
        }
    }

    /// Counts an introspection in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.inflight.inc();
        InFlight(&self.inflight)
    }

    /// The registry, for metrics kept elsewhere (the shared cache's) to be
    /// registered before the service starts.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub fn breaker(&self, state: BreakerState) {
        self.breaker_state.set(state as i64);
    }

    /// The text exposition, with the cache gauges set to the given values.
    pub fn render(&self, cache_entries: u64, cache_bytes: u64) -> String {
        self.cache_entries
            .set(i64::try_from(cache_entries).unwrap_or(i64::MAX));
        self.cache_bytes
            .set(i64::try_from(cache_bytes).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Decrements the in-flight gauge when dropped.
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_bounded_labels() {
        let m = Metrics::new();
        m.decision(Decision::Allow);
        m.decision(Decision::Allow);
        m.decision(Decision::AsTimeout);
        m.cache_lookup(CacheLookup::Coalesced);
        m.introspection(AsOutcome::Active, Duration::from_millis(20));
        m.introspection(AsOutcome::BreakerOpen, Duration::ZERO);
        m.breaker(BreakerState::Open);
        m.eviction(Eviction::Size);
        m.revalidation(Revalidation::Revoked);
        {
            let _guard = m.in_flight();
            assert!(
                m.render(0, 0)
                    .contains("phantom_introspections_in_flight 1")
            );
        }
        let text = m.render(7, 1234);
        for line in [
            "phantom_decisions_total{outcome=\"allow\",status=\"200\"} 2",
            "phantom_decisions_total{outcome=\"as_timeout\",status=\"504\"} 1",
            "phantom_decisions_total{outcome=\"shutting_down\",status=\"503\"} 0",
            "phantom_cache_lookups_total{result=\"coalesced\"} 1",
            "phantom_introspections_total{result=\"active\"} 1",
            "phantom_introspections_total{result=\"breaker_open\"} 1",
            "phantom_introspection_duration_seconds_count 1",
            "phantom_introspections_in_flight 0",
            "phantom_breaker_state 1",
            "phantom_cache_entries 7",
            "phantom_cache_bytes 1234",
            "phantom_cache_evictions_total{cause=\"size\"} 1",
            "phantom_cache_revalidations_total{result=\"revoked\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
