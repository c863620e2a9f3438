//! A token cache shared by a fleet of plugin replicas, in Redis: the second
//! level behind each replica's in-process cache.
//!
//! On an in-process miss the integrator asks [`SharedCache::get_or_lock`]:
//!
//! - [`SharedLookup::Hit`]: another replica introspected this token; its
//!   answer (the integrator's own serialised bytes) is used as is.
//! - [`SharedLookup::Miss`] with a lock: this replica is the first in the
//!   fleet to miss. It introspects, then [`SharedCache::fill`] stores the
//!   answer and releases the lock in one step.
//! - [`SharedLookup::Miss`] without a lock: another replica is introspecting.
//!   [`SharedCache::wait_for`] polls for its answer for a bounded time; if
//!   none comes, this replica introspects on its own.
//! - [`SharedLookup::Tampered`]: an entry was there but did not open
//!   (counted; handled as a miss, and the fresh answer replaces it).
//! - [`SharedLookup::Unavailable`]: Redis did not answer in time, failed, or
//!   the breaker is open; the replica introspects on its own.
//!
//! Redis is never in the critical path: every call is bounded by
//! [`SharedCacheOptions::op_timeout`], connections are made and remade in the
//! background, and after a few consecutive failures a breaker
//! ([`crate::breaker::Breaker`]) answers `Unavailable` at once until one
//! probe, later, gets through. Transitions are logged and show in
//! [`SharedCache::health`].
//!
//! Nothing in Redis is readable or writable without both the token and the
//! server secret: see [`seal`] for the key names (a keyed digest) and the
//! sealed values (an AEAD under a key derived from the token and the
//! secret, with the introspection time and the expiry inside). The value,
//! its lock and its purge marker share a Redis Cluster hash slot: keys are
//! `<prefix>{<digest hex>}:v`, `…:lock` and `…:purged`.
//!
//! [`SharedCache::purge`] removes an entry fleet-wide: it deletes it from
//! Redis, leaves a purge marker holding the purge time, and publishes its
//! [`FleetDigest`] on `<prefix>purge`; every replica running
//! [`SharedCache::subscribe_purges`] hears it and drops its own copy. While
//! the marker lives (see [`PURGE_MARKER_TTL`]) no entry introspected at or
//! before the purge is read or written: an old sealed value written back by
//! someone with access to Redis is refused, and so is the answer of an
//! introspection that was in flight during the purge. Entries live at most
//! [`MAX_ENTRY_TTL`] from their introspection, so any entry the marker must
//! refuse has expired by its sealed expiry before the marker goes.
//!
//! Values longer than [`seal::MAX_SEALED_BYTES`] are refused by the lookup
//! script itself (counted as tampered): Redis sends only a marker, and
//! nothing is decrypted.
//!
//! Waiting replicas poll (every [`SharedCacheOptions::poll_interval`]) rather
//! than subscribe: a wait is short, polling needs no server configuration
//! (keyspace notifications are off by default and cost every write), and a
//! poll also sees a lock that went away without an entry, so waiters stop
//! early when the lock holder failed.

mod backend;
mod lock;
mod lookup;
pub mod options;
mod purge;
mod replay;
pub mod seal;
pub mod stats;
mod write;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{RedisResult, Value};
use tracing::{debug, info, warn};

use crate::breaker::{Breaker, BreakerState};
use backend::{Backend, Conn};
use seal::FleetKeys;

pub use lock::LockGuard;
pub use options::{OptionsError, RedisTarget, SharedCacheOptions, TlsFiles};
pub use purge::PurgeSubscription;
pub use seal::{FleetDigest, OpenError};
pub use stats::{SharedStats, StatsSnapshot, Unavailable, WriteResult};

/// Why the shared cache could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharedCacheError {
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error("cannot read the Redis TLS file {path}: {reason}", path = path.display())]
    TlsFile { path: PathBuf, reason: String },
    #[error("cannot set up the Redis client: {0}")]
    Client(String),
    #[error("no randomness for the shared cache's lock owner id")]
    Randomness,
}

/// The longest an entry lives in Redis, counted from its introspection:
/// one hour. Bounds how long a purge marker must live (see
/// [`PURGE_MARKER_TTL`]); a token used for longer is introspected again by
/// one replica for the fleet once an hour.
pub const MAX_ENTRY_TTL: Duration = Duration::from_secs(3600);

/// How long a purge marker lives: [`MAX_ENTRY_TTL`] and one minute. Every
/// entry the marker refuses was introspected at or before the purge, so its
/// sealed expiry is at most [`MAX_ENTRY_TTL`] after the purge; past that,
/// readers refuse it as expired anyway. The minute covers replicas whose
/// clocks differ (entries are stamped, and markers set, by each replica's
/// own clock).
pub const PURGE_MARKER_TTL: Duration = Duration::from_secs(3600 + 60);

/// An entry found in Redis.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedEntry {
    /// The bytes the writer stored.
    pub payload: Vec<u8>,
    /// How long the entry has left, by the expiry its writer sealed in.
    pub ttl: Duration,
    /// When the introspection behind it started, as its writer sealed it
    /// (unix time): an entry keeps its age on every replica.
    pub introspected_at: Duration,
}

impl std::fmt::Debug for SharedEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The payload holds a JWT: never in a log line or a panic message.
        f.debug_struct("SharedEntry")
            .field("payload_len", &self.payload.len())
            .field("ttl", &self.ttl)
            .field("introspected_at", &self.introspected_at)
            .finish()
    }
}

/// What [`SharedCache::get_or_lock`] found for a token it borrows.
#[derive(Debug)]
pub enum SharedLookup<'t> {
    Hit(SharedEntry),
    /// No usable entry. `lock` is `Some` when this replica holds the
    /// fleet-wide lock and should introspect and [`SharedCache::fill`];
    /// `None` when another replica holds it ([`SharedCache::wait_for`]).
    Miss {
        lock: Option<LockGuard<'t>>,
    },
    /// An entry that did not open under this token (altered, moved, sealed
    /// without the secret, oversized), or one introspected at or before the
    /// token's last purge (written back). A miss, with the lock as for
    /// [`SharedLookup::Miss`].
    Tampered {
        lock: Option<LockGuard<'t>>,
    },
    /// Redis gave no answer; introspect without it.
    Unavailable(Unavailable),
}

/// What [`SharedCache::wait_for`] came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited {
    /// The lock holder's answer.
    Hit(SharedEntry),
    /// No entry within the wait.
    TimedOut,
    /// The lock went away without an entry: its holder failed.
    Abandoned,
    /// An entry appeared that did not open under this token, or that
    /// predates the token's last purge.
    Tampered,
    Unavailable(Unavailable),
}

/// Whether the shared cache is working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// The breaker is open or probing: Redis is being left alone and every
    /// replica introspects on its own.
    Degraded,
}

/// A replica's handle on the shared cache; clones share connections,
/// breaker and counters.
#[derive(Clone)]
pub struct SharedCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCache")
            .field("prefix", &self.inner.prefix)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

struct Inner {
    backend: Backend,
    keys: FleetKeys,
    prefix: String,
    channel: String,
    op_timeout: Duration,
    connect_timeout: Duration,
    lock_ttl: Duration,
    poll_interval: Duration,
    breaker: Breaker,
    stats: SharedStats,
    degraded: AtomicBool,
    /// Drawn once at connect: names this handle's holds on locks, fleet-wide.
    owner_id: String,
    /// Makes each hold of this handle's distinct from its others.
    owner_count: AtomicU64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        _ => None,
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

fn unexpected() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected reply from a shared cache script",
    ))
}

impl Inner {
    fn value_key(&self, digest: &FleetDigest) -> String {
        format!("{}{{{}}}:v", self.prefix, digest.to_hex())
    }

    fn lock_key(&self, digest: &FleetDigest) -> String {
        format!("{}{{{}}}:lock", self.prefix, digest.to_hex())
    }

    fn marker_key(&self, digest: &FleetDigest) -> String {
        format!("{}{{{}}}:purged", self.prefix, digest.to_hex())
    }

    /// Runs one Redis call under the breaker and the timeout.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, Unavailable>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let Ok(permit) = self.breaker.admit(Instant::now()) else {
            self.stats.unavailable(Unavailable::BreakerOpen);
            return Err(Unavailable::BreakerOpen);
        };
        let call = async {
            let conn = self.backend.conn().await?;
            op(conn).await
        };
        let result = match tokio::time::timeout(self.op_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                debug!(error = %e, "Shared cache call failed");
                self.backend.failed(Some(&e));
                // redis-rs's own response timeout (set to the same bound)
                // may fire first.
                Err(if e.is_timeout() {
                    Unavailable::Timeout
                } else {
                    Unavailable::Error
                })
            }
            Err(_) => {
                self.backend.failed(None);
                Err(Unavailable::Timeout)
            }
        };
        if let Err(why) = result {
            self.stats.unavailable(why);
        }
        self.breaker.record(permit, result.is_ok(), Instant::now());
        self.observe_breaker();
        result
    }

    /// Publishes the breaker's state and logs a change of health.
    fn observe_breaker(&self) {
        let state = self.breaker.state();
        self.stats.breaker(state);
        let degraded = state != BreakerState::Closed;
        if self.degraded.swap(degraded, Ordering::AcqRel) != degraded {
            if degraded {
                warn!(
                    "Shared cache degraded: Redis is failing or slow; replicas introspect on their own until it answers"
                );
            } else {
                info!("Shared cache recovered: Redis answers again");
            }
        }
    }

    /// Opens a stored value read together with its token's purge marker
    /// (`marker`, the purge time in unix µs as stored); `Ok(None)` when its
    /// sealed expiry has passed.
    fn open(
        &self,
        token: &str,
        digest: &FleetDigest,
        sealed: &[u8],
        marker: Option<&[u8]>,
    ) -> Result<Option<SharedEntry>, Refused> {
        let opened = self
            .keys
            .open(token.as_bytes(), self.value_key(digest).as_bytes(), sealed)
            .map_err(Refused::Open)?;
        if let Some(marker) = marker {
            // A marker that is not a number was not written by a replica:
            // refuse rather than guess.
            let purged_at = std::str::from_utf8(marker)
                .ok()
                .and_then(|m| m.parse::<u64>().ok());
            if purged_at.is_none_or(|at| micros(opened.introspected_at) <= at) {
                return Err(Refused::Purged);
            }
        }
        let ttl = opened.expires_at.saturating_sub(unix_now());
        Ok((!ttl.is_zero()).then_some(SharedEntry {
            payload: opened.payload,
            ttl,
            introspected_at: opened.introspected_at,
        }))
    }
}

/// Why a value read from Redis is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// It did not open (or was too long to try).
    Open(OpenError),
    /// It was introspected at or before its token's last purge.
    Purged,
}

impl SharedCache {
    /// Sets up the clients; connects in the background, so a Redis that is
    /// down now delays nothing (calls answer `Unavailable` until it is up).
    /// Reads the TLS files. Must be called within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`SharedCacheError`] for invalid options, an unreadable TLS file or a
    /// client that cannot be built (e.g. a malformed PEM), or no randomness
    /// for the id naming this handle's holds on locks.
    pub fn connect(options: &SharedCacheOptions) -> Result<Self, SharedCacheError> {
        let target = options.validate()?;
        let backend = Backend::new(target, options)?;
        // 128 random bits, drawn once: lock owner values are this id and a
        // count, so taking a lock needs no system call and cannot fail.
        let mut owner_id = [0u8; 16];
        getrandom::fill(&mut owner_id).map_err(|_| SharedCacheError::Randomness)?;
        let stats = SharedStats::new();
        stats.breaker(BreakerState::Closed);
        Ok(SharedCache {
            inner: Arc::new(Inner {
                backend,
                keys: FleetKeys::new(options.secret.0.as_bytes()),
                prefix: options.key_prefix.clone(),
                channel: format!("{}purge", options.key_prefix),
                op_timeout: options.op_timeout,
                connect_timeout: options.connect_timeout,
                lock_ttl: options.lock_ttl,
                poll_interval: options.poll_interval.max(Duration::from_millis(1)),
                breaker: Breaker::new(options.breaker_threshold, options.breaker_open_for),
                stats,
                degraded: AtomicBool::new(false),
                owner_id: hex::encode(owner_id),
                owner_count: AtomicU64::new(0),
            }),
        })
    }

    /// The keyed digest naming `token`'s entry, as purges announce it. The
    /// calls that take a token take its digest too, computed once by the
    /// caller; it must be this one.
    pub fn digest(&self, token: &str) -> FleetDigest {
        self.inner.keys.digest(token.as_bytes())
    }

    /// The Redis key of `token`'s entry (for operators and tests).
    pub fn value_key(&self, token: &str) -> String {
        self.inner.value_key(&self.digest(token))
    }

    /// The Redis key of `token`'s lock.
    pub fn lock_key(&self, token: &str) -> String {
        self.inner.lock_key(&self.digest(token))
    }

    /// The channel purges are published on.
    pub fn purge_channel(&self) -> &str {
        &self.inner.channel
    }

    pub fn stats(&self) -> &SharedStats {
        &self.inner.stats
    }

    pub fn health(&self) -> Health {
        match self.inner.breaker.state() {
            BreakerState::Closed => Health::Healthy,
            BreakerState::Open | BreakerState::HalfOpen => Health::Degraded,
        }
    }

    /// Starts the task that hears purges from the fleet and hands each
    /// digest to `on_purge` (which drops the replica's own copy). The task
    /// reconnects on its own and stops when the subscription is dropped.
    /// Purges sent by this replica are heard too.
    pub fn subscribe_purges(
        &self,
        on_purge: impl Fn(FleetDigest) + Send + Sync + 'static,
    ) -> PurgeSubscription {
        purge::start(self.inner.clone(), Arc::new(on_purge))
    }
}
