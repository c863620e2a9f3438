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
//! Nothing in Redis is readable without the token: see [`seal`] for the key
//! names (a keyed digest) and the sealed values (an AEAD under a key derived
//! from the token). The value and its lock share a Redis Cluster hash slot:
//! keys are `<prefix>{<digest hex>}:v` and `<prefix>{<digest hex>}:lock`.
//!
//! [`SharedCache::purge`] removes an entry fleet-wide: it deletes it from
//! Redis and publishes its [`FleetDigest`] on `<prefix>purge`; every replica
//! running [`SharedCache::subscribe_purges`] hears it and drops its own copy.
//!
//! Waiting replicas poll (every [`SharedCacheOptions::poll_interval`]) rather
//! than subscribe: a wait is short, polling needs no server configuration
//! (keyspace notifications are off by default and cost every write), and a
//! poll also sees a lock that went away without an entry, so waiters stop
//! early when the lock holder failed.

mod backend;
pub mod options;
mod purge;
pub mod seal;
pub mod stats;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{RedisResult, Script, Value};
use tracing::{debug, info, warn};

use crate::breaker::{Breaker, BreakerState};
use backend::{Backend, Conn};
use seal::FleetKeys;

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
}

/// An entry found in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedEntry {
    /// The bytes the writer stored.
    pub payload: Vec<u8>,
    /// How long the entry has left, by the expiry its writer sealed in.
    pub ttl: Duration,
}

/// What [`SharedCache::get_or_lock`] found.
#[derive(Debug)]
pub enum SharedLookup {
    Hit(SharedEntry),
    /// No usable entry. `lock` is `Some` when this replica holds the
    /// fleet-wide lock and should introspect and [`SharedCache::fill`];
    /// `None` when another replica holds it ([`SharedCache::wait_for`]).
    Miss {
        lock: Option<LockGuard>,
    },
    /// An entry that did not open under this token: altered or moved. A
    /// miss, with the lock as for [`SharedLookup::Miss`].
    Tampered {
        lock: Option<LockGuard>,
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
    /// An entry appeared that did not open under this token.
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

/// The fleet-wide lock on one token, held by this replica. Released by
/// [`SharedCache::fill`] or [`SharedCache::release`]; dropped unreleased, it
/// is released in the background (and expires after the lock TTL anyway).
pub struct LockGuard {
    inner: Arc<Inner>,
    digest: FleetDigest,
    owner: String,
    released: bool,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuard(..)")
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (inner, digest, owner) = (
                self.inner.clone(),
                self.digest,
                std::mem::take(&mut self.owner),
            );
            runtime.spawn(async move {
                let _ = inner.release(&digest, &owner).await;
            });
        }
    }
}

/// Reads the entry and, when there is none, takes the lock: one round trip.
/// Returns `{1, value}`, `{2}` (locked by us) or `{3}` (locked by another).
static LOOKUP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {3}",
    )
});

/// Reads the entry, or whether its lock is still held: `{1, value}` or
/// `{0, 0|1}`.
static POLL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
return {0, redis.call('EXISTS', KEYS[2])}",
    )
});

/// Stores the entry and releases the lock, only while the lock is still
/// ours: once it expired or a purge removed it, the answer may predate the
/// purge and is not stored. Returns 1 when stored, 0 when not.
static FILL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
return 1",
    )
});

/// Deletes the entry and its lock; returns 1 when there was an entry.
static PURGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local n = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
return n",
    )
});

/// Releases the lock if it is still ours (it may have expired and been
/// taken by another replica).
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0",
    )
});

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
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// 128 random bits naming this replica's hold on a lock.
fn lock_owner() -> Option<String> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).ok()?;
    Some(hex::encode(id))
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

/// What the lookup script answered.
enum Found {
    Value(Vec<u8>),
    Locked,
    HeldElsewhere,
}

/// What a poll saw.
enum Polled {
    Value(Vec<u8>),
    Absent { locked: bool },
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

    /// Takes the lock for `digest`; the guard when it was free.
    async fn try_lock(
        self: &Arc<Self>,
        digest: &FleetDigest,
    ) -> Result<Option<LockGuard>, Unavailable> {
        let Some(owner) = lock_owner() else {
            return Ok(None);
        };
        let key = self.lock_key(digest);
        let ttl = millis(self.lock_ttl).max(1);
        let taken: Option<String> = self
            .run(|mut conn| {
                let owner = owner.clone();
                async move {
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(owner)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        self.stats.lock(taken.is_some());
        Ok(taken.map(|_| self.guard(*digest, owner)))
    }

    fn guard(self: &Arc<Self>, digest: FleetDigest, owner: String) -> LockGuard {
        LockGuard {
            inner: self.clone(),
            digest,
            owner,
            released: false,
        }
    }

    async fn release(&self, digest: &FleetDigest, owner: &str) -> Result<(), Unavailable> {
        let key = self.lock_key(digest);
        self.run(|mut conn| async move {
            RELEASE
                .key(&key)
                .arg(owner)
                .invoke_async::<i64>(&mut conn)
                .await
        })
        .await
        .map(|_| ())
    }

    /// Opens a stored value; `Ok(None)` when its sealed expiry has passed.
    fn open(
        &self,
        token: &str,
        digest: &FleetDigest,
        sealed: &[u8],
    ) -> Result<Option<SharedEntry>, OpenError> {
        let opened = seal::open(token.as_bytes(), self.value_key(digest).as_bytes(), sealed)?;
        let ttl = opened.expires_at.saturating_sub(unix_now());
        Ok((!ttl.is_zero()).then_some(SharedEntry {
            payload: opened.payload,
            ttl,
        }))
    }
}

impl SharedCache {
    /// Sets up the clients; connects in the background, so a Redis that is
    /// down now delays nothing (calls answer `Unavailable` until it is up).
    /// Reads the TLS files. Must be called within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`SharedCacheError`] for invalid options, an unreadable TLS file or a
    /// client that cannot be built (e.g. a malformed PEM).
    pub async fn connect(options: &SharedCacheOptions) -> Result<Self, SharedCacheError> {
        let target = options.validate()?;
        let backend = Backend::new(target, options)?;
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
            }),
        })
    }

    /// The keyed digest naming `token`'s entry, as purges announce it.
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

    /// Asks Redis for a PING, under the same timeout and breaker as every
    /// call: for a readiness check or a log line at start-up.
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when Redis did not answer.
    pub async fn ping(&self) -> Result<(), Unavailable> {
        self.inner
            .run(|mut conn| async move {
                redis::cmd("PING")
                    .query_async::<redis::Value>(&mut conn)
                    .await
            })
            .await
            .map(|_| ())
    }

    /// Looks `token` up; on a miss, tries to take the fleet-wide lock in the
    /// same round trip. See [`SharedLookup`].
    pub async fn get_or_lock(&self, token: &str) -> SharedLookup {
        let inner = &self.inner;
        let digest = self.digest(token);
        let Some(owner) = lock_owner() else {
            // No randomness: a plain lookup, and no lock.
            return self.lookup_without_lock(token, &digest).await;
        };
        let (value_key, lock_key) = (inner.value_key(&digest), inner.lock_key(&digest));
        let ttl = millis(inner.lock_ttl).max(1);
        let found = inner
            .run(|mut conn| {
                let owner = owner.clone();
                async move {
                    let reply: Vec<Value> = LOOKUP
                        .key(&value_key)
                        .key(&lock_key)
                        .arg(owner)
                        .arg(ttl)
                        .invoke_async(&mut conn)
                        .await?;
                    let mut reply = reply.into_iter();
                    match reply.next().as_ref().and_then(int) {
                        Some(1) => reply.next().and_then(bytes).map(Found::Value),
                        Some(2) => Some(Found::Locked),
                        Some(3) => Some(Found::HeldElsewhere),
                        _ => None,
                    }
                    .ok_or_else(unexpected)
                }
            })
            .await;
        let sealed = match found {
            Err(why) => {
                inner.stats.lookup(stats::LookupResult::Unavailable);
                return SharedLookup::Unavailable(why);
            }
            Ok(Found::Locked) => {
                inner.stats.lookup(stats::LookupResult::Miss);
                inner.stats.lock(true);
                return SharedLookup::Miss {
                    lock: Some(inner.guard(digest, owner)),
                };
            }
            Ok(Found::HeldElsewhere) => {
                inner.stats.lookup(stats::LookupResult::Miss);
                inner.stats.lock(false);
                return SharedLookup::Miss { lock: None };
            }
            Ok(Found::Value(sealed)) => sealed,
        };
        match inner.open(token, &digest, &sealed) {
            Ok(Some(entry)) => {
                inner.stats.lookup(stats::LookupResult::Hit);
                SharedLookup::Hit(entry)
            }
            Ok(None) => {
                inner.stats.lookup(stats::LookupResult::Expired);
                SharedLookup::Miss {
                    lock: inner.try_lock(&digest).await.ok().flatten(),
                }
            }
            Err(e) => {
                inner.stats.lookup(stats::LookupResult::Tampered);
                debug!(error = %e, "Shared cache entry did not open; treated as a miss");
                SharedLookup::Tampered {
                    lock: inner.try_lock(&digest).await.ok().flatten(),
                }
            }
        }
    }

    async fn lookup_without_lock(&self, token: &str, digest: &FleetDigest) -> SharedLookup {
        let inner = &self.inner;
        let key = inner.value_key(digest);
        let found: Result<Option<Vec<u8>>, _> = inner
            .run(|mut conn| async move { redis::cmd("GET").arg(&key).query_async(&mut conn).await })
            .await;
        match found {
            Err(why) => {
                inner.stats.lookup(stats::LookupResult::Unavailable);
                SharedLookup::Unavailable(why)
            }
            Ok(None) => {
                inner.stats.lookup(stats::LookupResult::Miss);
                SharedLookup::Miss { lock: None }
            }
            Ok(Some(sealed)) => match inner.open(token, digest, &sealed) {
                Ok(Some(entry)) => {
                    inner.stats.lookup(stats::LookupResult::Hit);
                    SharedLookup::Hit(entry)
                }
                Ok(None) => {
                    inner.stats.lookup(stats::LookupResult::Expired);
                    SharedLookup::Miss { lock: None }
                }
                Err(_) => {
                    inner.stats.lookup(stats::LookupResult::Tampered);
                    SharedLookup::Tampered { lock: None }
                }
            },
        }
    }

    /// Waits up to `max_wait` (plus at most one call timeout) for another
    /// replica's entry for `token`, looking every poll interval.
    pub async fn wait_for(&self, token: &str, max_wait: Duration) -> Waited {
        let inner = &self.inner;
        let digest = self.digest(token);
        let (value_key, lock_key) = (inner.value_key(&digest), inner.lock_key(&digest));
        let deadline = Instant::now() + max_wait;
        let waited = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Waited::TimedOut;
            }
            tokio::time::sleep(left.min(inner.poll_interval)).await;
            let (value_key, lock_key) = (&value_key, &lock_key);
            let polled = inner
                .run(|mut conn| async move {
                    let reply: Vec<Value> = POLL
                        .key(value_key)
                        .key(lock_key)
                        .invoke_async(&mut conn)
                        .await?;
                    let mut reply = reply.into_iter();
                    match reply.next().as_ref().and_then(int) {
                        Some(1) => reply.next().and_then(bytes).map(Polled::Value),
                        Some(0) => reply
                            .next()
                            .as_ref()
                            .and_then(int)
                            .map(|n| Polled::Absent { locked: n > 0 }),
                        _ => None,
                    }
                    .ok_or_else(unexpected)
                })
                .await;
            match polled {
                Err(why) => break Waited::Unavailable(why),
                Ok(Polled::Absent { locked: true }) => {}
                Ok(Polled::Absent { locked: false }) => break Waited::Abandoned,
                Ok(Polled::Value(sealed)) => match inner.open(token, &digest, &sealed) {
                    Ok(Some(entry)) => break Waited::Hit(entry),
                    // Expired already: as good as absent; its holder is done.
                    Ok(None) => break Waited::Abandoned,
                    Err(_) => break Waited::Tampered,
                },
            }
        };
        inner.stats.wait(match &waited {
            Waited::Hit(_) => stats::WaitResult::Hit,
            Waited::TimedOut => stats::WaitResult::TimedOut,
            Waited::Abandoned => stats::WaitResult::Abandoned,
            Waited::Tampered => stats::WaitResult::Tampered,
            Waited::Unavailable(_) => stats::WaitResult::Unavailable,
        });
        waited
    }

    /// Stores `payload` for `token` for `ttl` (Redis expiry and sealed
    /// expiry), replacing any entry. Not stored when `ttl` is under a
    /// millisecond.
    pub async fn put(&self, token: &str, payload: &[u8], ttl: Duration) -> WriteResult {
        let digest = self.digest(token);
        self.write(token, &digest, payload, ttl, None).await
    }

    /// Stores the answer this replica introspected while holding `lock`, and
    /// releases the lock, in one round trip (waiting replicas see the entry
    /// and the lock go together). Nothing is stored when the lock is no
    /// longer ours ([`WriteResult::LockLost`]): it expired, or a purge
    /// removed it while this replica introspected.
    pub async fn fill(
        &self,
        mut lock: LockGuard,
        token: &str,
        payload: &[u8],
        ttl: Duration,
    ) -> WriteResult {
        let digest = self.digest(token);
        if lock.digest != digest {
            // Another token's lock: store this entry, and let the guard's
            // drop release its own.
            return self.write(token, &digest, payload, ttl, None).await;
        }
        let owner = std::mem::take(&mut lock.owner);
        lock.released = true;
        let result = self.write(token, &digest, payload, ttl, Some(&owner)).await;
        if result == WriteResult::Skipped {
            let _ = self.inner.release(&digest, &owner).await;
        }
        result
    }

    /// Releases `lock` without storing anything (the introspection failed):
    /// waiting replicas stop waiting at their next look.
    pub async fn release(&self, mut lock: LockGuard) {
        lock.released = true;
        let owner = std::mem::take(&mut lock.owner);
        let _ = self.inner.release(&lock.digest, &owner).await;
    }

    async fn write(
        &self,
        token: &str,
        digest: &FleetDigest,
        payload: &[u8],
        ttl: Duration,
        owner: Option<&str>,
    ) -> WriteResult {
        let inner = &self.inner;
        let ttl_ms = millis(ttl);
        if ttl_ms == 0 {
            inner.stats.write(WriteResult::Skipped);
            return WriteResult::Skipped;
        }
        let value_key = inner.value_key(digest);
        let Ok(sealed) = seal::seal(
            token.as_bytes(),
            value_key.as_bytes(),
            payload,
            unix_now() + ttl,
        ) else {
            warn!("Shared cache entry not stored: no randomness for a nonce");
            inner.stats.write(WriteResult::Failed);
            return WriteResult::Failed;
        };
        let lock_key = inner.lock_key(digest);
        let (value_key, lock_key, sealed) = (&value_key, &lock_key, &sealed);
        let stored = inner
            .run(|mut conn| async move {
                match owner {
                    Some(owner) => {
                        FILL.key(value_key)
                            .key(lock_key)
                            .arg(sealed)
                            .arg(ttl_ms)
                            .arg(owner)
                            .invoke_async::<i64>(&mut conn)
                            .await
                    }
                    None => redis::cmd("SET")
                        .arg(value_key)
                        .arg(sealed)
                        .arg("PX")
                        .arg(ttl_ms)
                        .query_async::<()>(&mut conn)
                        .await
                        .map(|()| 1),
                }
            })
            .await;
        let result = match stored {
            Ok(1) => WriteResult::Stored,
            Ok(_) => WriteResult::LockLost,
            Err(_) => WriteResult::Failed,
        };
        inner.stats.write(result);
        result
    }

    /// Removes `token`'s entry from Redis and tells every subscribed replica
    /// (its [`FleetDigest`], never the token). Returns whether an entry was
    /// there.
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when Redis did not take the deletion or the
    /// announcement.
    pub async fn purge(&self, token: &str) -> Result<bool, Unavailable> {
        let inner = &self.inner;
        let digest = self.digest(token);
        let (value_key, lock_key) = (inner.value_key(&digest), inner.lock_key(&digest));
        let deleted: Result<i64, _> = inner
            .run(|mut conn| async move {
                PURGE
                    .key(&value_key)
                    .key(&lock_key)
                    .invoke_async(&mut conn)
                    .await
            })
            .await;
        let announced: Result<i64, _> = match deleted {
            Ok(_) => {
                let message = digest.to_hex();
                let channel = inner.channel.clone();
                inner
                    .run(|mut conn| async move {
                        redis::cmd("PUBLISH")
                            .arg(&channel)
                            .arg(message)
                            .query_async(&mut conn)
                            .await
                    })
                    .await
            }
            Err(why) => Err(why),
        };
        inner.stats.purge_sent(announced.is_ok());
        announced?;
        Ok(deleted.is_ok_and(|n| n > 0))
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
