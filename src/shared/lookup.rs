//! Reading the shared cache: the lookup that takes the lock on a miss, and
//! the bounded wait for another replica's entry.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use redis::{Script, Value};
use tracing::debug;

use super::seal::FleetDigest;
use super::{
    SharedCache, SharedLookup, Unavailable, Waited, bytes, int, millis, stats, unexpected,
};
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

impl SharedCache {
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

    /// Looks `token` (whose [`SharedCache::digest`] is `digest`) up; on a
    /// miss, tries to take the fleet-wide lock in the same round trip. See
    /// [`SharedLookup`].
    pub async fn get_or_lock<'t>(&self, token: &'t str, digest: &FleetDigest) -> SharedLookup<'t> {
        let inner = &self.inner;
        let digest = *digest;
        let owner = inner.lock_owner();
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
                    lock: Some(inner.guard(token, digest, owner)),
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
                    lock: inner.try_lock(token, &digest).await.ok().flatten(),
                }
            }
            Err(e) => {
                inner.stats.lookup(stats::LookupResult::Tampered);
                debug!(error = %e, "Shared cache entry did not open; treated as a miss");
                SharedLookup::Tampered {
                    lock: inner.try_lock(token, &digest).await.ok().flatten(),
                }
            }
        }
    }

    /// Waits up to `max_wait` (plus at most one call timeout) for another
    /// replica's entry for `token` (whose digest is `digest`), looking every
    /// poll interval.
    pub async fn wait_for(&self, token: &str, digest: &FleetDigest, max_wait: Duration) -> Waited {
        let inner = &self.inner;
        let (value_key, lock_key) = (inner.value_key(digest), inner.lock_key(digest));
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
                Ok(Polled::Value(sealed)) => match inner.open(token, digest, &sealed) {
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
}
