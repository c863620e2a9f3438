//! Counters of the shared cache, and its health.
//!
//! Kept as prometheus-client metrics the integrator registers with
//! [`SharedStats::register`]; every label comes from a fixed set. Recording
//! is one atomic add. [`SharedStats::snapshot`] reads them all at once.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::breaker::BreakerState;

/// How a shared lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    Hit,
    Miss,
    /// An entry whose sealed expiry had passed (Redis had not yet dropped it).
    Expired,
    /// An entry that did not open: altered, moved, unknown format, sealed
    /// without the server secret, or longer than the cap.
    Tampered,
    Unavailable,
    /// An entry introspected at or before its token's last purge: an old
    /// value written back into Redis.
    Purged,
}

/// Why Redis was not asked or gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The breaker is open: Redis recently failed, and is left alone for now.
    BreakerOpen,
    /// The call took longer than the configured timeout.
    Timeout,
    /// Connection refused or lost, or an error reply.
    Error,
}

/// How a wait for another replica's entry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitResult {
    Hit,
    TimedOut,
    /// The lock went away without an entry (its holder failed).
    Abandoned,
    Tampered,
    Unavailable,
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    Stored,
    /// Nothing to store: the entry would expire at once.
    Skipped,
    Failed,
    /// A locked write found the lock gone (expired or purged): not stored.
    LockLost,
    /// The answer was introspected at or before the token's last purge:
    /// not stored (it may predate the revocation).
    Purged,
    /// Sealed, it would be longer than Redis values may be read back.
    TooLarge,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

const LOOKUPS: [&str; 6] = [
    "hit",
    "miss",
    "expired",
    "tampered",
    "unavailable",
    "purged",
];
const UNAVAILABLE: [&str; 3] = ["breaker_open", "timeout", "error"];
const LOCKS: [&str; 2] = ["won", "held_elsewhere"];
const WAITS: [&str; 5] = ["hit", "timed_out", "abandoned", "tampered", "unavailable"];
const WRITES: [&str; 6] = [
    "stored",
    "skipped",
    "failed",
    "lock_lost",
    "purged",
    "too_large",
];
const PURGES: [&str; 3] = ["sent", "failed", "received"];

fn results(labels: &[&'static str]) -> (Family<ResultLabel, Counter>, Vec<Counter>) {
    let family = Family::<ResultLabel, Counter>::default();
    let counters = labels
        .iter()
        .map(|&result| family.get_or_create(&ResultLabel { result }).clone())
        .collect();
    (family, counters)
}

/// The shared cache's counters; clones share them.
#[derive(Clone)]
pub struct SharedStats {
    lookups_family: Family<ResultLabel, Counter>,
    lookups: Vec<Counter>,
    unavailable_family: Family<ReasonLabel, Counter>,
    unavailable: Vec<Counter>,
    locks_family: Family<ResultLabel, Counter>,
    locks: Vec<Counter>,
    waits_family: Family<ResultLabel, Counter>,
    waits: Vec<Counter>,
    writes_family: Family<ResultLabel, Counter>,
    writes: Vec<Counter>,
    purges_family: Family<ResultLabel, Counter>,
    purges: Vec<Counter>,
    breaker_state: Gauge,
    subscribed: Gauge,
}

impl std::fmt::Debug for SharedStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}

impl Default for SharedStats {
    fn default() -> Self {
        SharedStats::new()
    }
}

/// All counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub expired: u64,
    pub tampered: u64,
    pub unavailable: u64,
    /// Entries refused for predating their token's last purge.
    pub purged: u64,
    pub breaker_rejections: u64,
    pub timeouts: u64,
    pub errors: u64,
    pub locks_won: u64,
    pub locks_held_elsewhere: u64,
    pub wait_hits: u64,
    pub wait_timeouts: u64,
    pub wait_abandoned: u64,
    pub wait_tampered: u64,
    pub wait_unavailable: u64,
    pub writes: u64,
    pub writes_skipped: u64,
    pub writes_failed: u64,
    pub writes_lock_lost: u64,
    pub writes_purged: u64,
    pub writes_too_large: u64,
    pub purges_sent: u64,
    pub purges_failed: u64,
    pub purges_received: u64,
    /// 0 closed, 1 open, 2 half-open.
    pub breaker_state: i64,
}

impl SharedStats {
    pub fn new() -> Self {
        let (lookups_family, lookups) = results(&LOOKUPS);
        let unavailable_family = Family::<ReasonLabel, Counter>::default();
        let unavailable = UNAVAILABLE
            .iter()
            .map(|&reason| {
                unavailable_family
                    .get_or_create(&ReasonLabel { reason })
                    .clone()
            })
            .collect();
        let (locks_family, locks) = results(&LOCKS);
        let (waits_family, waits) = results(&WAITS);
        let (writes_family, writes) = results(&WRITES);
        let (purges_family, purges) = results(&PURGES);
        SharedStats {
            lookups_family,
            lookups,
            unavailable_family,
            unavailable,
            locks_family,
            locks,
            waits_family,
            waits,
            writes_family,
            writes,
            purges_family,
            purges,
            breaker_state: Gauge::default(),
            subscribed: Gauge::default(),
        }
    }

    /// Registers every metric under `shared_cache_…` in `registry` (which
    /// adds its own prefix, `phantom_` for the service's).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "shared_cache_lookups",
            "Shared (Redis) cache lookups by result",
            self.lookups_family.clone(),
        );
        registry.register(
            "shared_cache_unavailable",
            "Shared cache calls that got no answer from Redis, by reason",
            self.unavailable_family.clone(),
        );
        registry.register(
            "shared_cache_locks",
            "Fleet-wide introspection locks asked for, by result",
            self.locks_family.clone(),
        );
        registry.register(
            "shared_cache_waits",
            "Waits for another replica's introspection, by result",
            self.waits_family.clone(),
        );
        registry.register(
            "shared_cache_writes",
            "Shared cache writes by result",
            self.writes_family.clone(),
        );
        registry.register(
            "shared_cache_purges",
            "Fleet-wide purges sent and received",
            self.purges_family.clone(),
        );
        registry.register(
            "shared_cache_breaker_state",
            "Shared cache breaker: 0 closed, 1 open, 2 half-open",
            self.breaker_state.clone(),
        );
        registry.register(
            "shared_cache_purge_subscribed",
            "1 while the purge subscription is connected",
            self.subscribed.clone(),
        );
    }

    pub(crate) fn lookup(&self, result: LookupResult) {
        self.lookups[result as usize].inc();
    }

    pub(crate) fn unavailable(&self, why: Unavailable) {
        self.unavailable[why as usize].inc();
    }

    pub(crate) fn lock(&self, won: bool) {
        self.locks[usize::from(!won)].inc();
    }

    pub(crate) fn wait(&self, result: WaitResult) {
        self.waits[result as usize].inc();
    }

    pub(crate) fn write(&self, result: WriteResult) {
        self.writes[result as usize].inc();
    }

    pub(crate) fn purge_sent(&self, ok: bool) {
        self.purges[usize::from(!ok)].inc();
    }

    pub(crate) fn purge_received(&self) {
        self.purges[2].inc();
    }

    pub(crate) fn breaker(&self, state: BreakerState) {
        self.breaker_state.set(state as i64);
    }

    pub(crate) fn subscribed(&self, up: bool) {
        self.subscribed.set(i64::from(up));
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |v: &[Counter], i: usize| v.get(i).map_or(0, Counter::get);
        StatsSnapshot {
            hits: get(&self.lookups, 0),
            misses: get(&self.lookups, 1),
            expired: get(&self.lookups, 2),
            tampered: get(&self.lookups, 3),
            unavailable: get(&self.lookups, 4),
            purged: get(&self.lookups, 5),
            breaker_rejections: get(&self.unavailable, 0),
            timeouts: get(&self.unavailable, 1),
            errors: get(&self.unavailable, 2),
            locks_won: get(&self.locks, 0),
            locks_held_elsewhere: get(&self.locks, 1),
            wait_hits: get(&self.waits, 0),
            wait_timeouts: get(&self.waits, 1),
            wait_abandoned: get(&self.waits, 2),
            wait_tampered: get(&self.waits, 3),
            wait_unavailable: get(&self.waits, 4),
            writes: get(&self.writes, 0),
            writes_skipped: get(&self.writes, 1),
            writes_failed: get(&self.writes, 2),
            writes_lock_lost: get(&self.writes, 3),
            writes_purged: get(&self.writes, 4),
            writes_too_large: get(&self.writes, 5),
            purges_sent: get(&self.purges, 0),
            purges_failed: get(&self.purges, 1),
            purges_received: get(&self.purges, 2),
            breaker_state: self.breaker_state.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_render_with_bounded_labels() {
        let stats = SharedStats::new();
        let mut registry = Registry::with_prefix("phantom");
        stats.register(&mut registry);
        stats.lookup(LookupResult::Hit);
        stats.lookup(LookupResult::Tampered);
        stats.lookup(LookupResult::Purged);
        stats.write(WriteResult::Purged);
        stats.write(WriteResult::TooLarge);
        stats.unavailable(Unavailable::Timeout);
        stats.lock(false);
        stats.wait(WaitResult::Abandoned);
        stats.write(WriteResult::Stored);
        stats.purge_received();
        stats.breaker(BreakerState::Open);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "phantom_shared_cache_lookups_total{result=\"hit\"} 1",
            "phantom_shared_cache_lookups_total{result=\"tampered\"} 1",
            "phantom_shared_cache_lookups_total{result=\"miss\"} 0",
            "phantom_shared_cache_lookups_total{result=\"purged\"} 1",
            "phantom_shared_cache_writes_total{result=\"purged\"} 1",
            "phantom_shared_cache_writes_total{result=\"too_large\"} 1",
            "phantom_shared_cache_unavailable_total{reason=\"timeout\"} 1",
            "phantom_shared_cache_locks_total{result=\"held_elsewhere\"} 1",
            "phantom_shared_cache_waits_total{result=\"abandoned\"} 1",
            "phantom_shared_cache_writes_total{result=\"stored\"} 1",
            "phantom_shared_cache_purges_total{result=\"received\"} 1",
            "phantom_shared_cache_breaker_state 1",
            "phantom_shared_cache_purge_subscribed 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        let snap = stats.snapshot();
        assert_eq!((snap.hits, snap.tampered, snap.timeouts), (1, 1, 1));
        assert_eq!((snap.locks_held_elsewhere, snap.wait_abandoned), (1, 1));
        assert_eq!(
            (snap.purged, snap.writes_purged, snap.writes_too_large),
            (1, 1, 1)
        );
        assert_eq!(
            (snap.writes, snap.purges_received, snap.breaker_state),
            (1, 1, 1)
        );
    }
}
