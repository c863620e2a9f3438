//! Reading the shared cache: the lookup that takes the lock on a miss, and
//! the bounded wait for another replica's entry.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use redis::{Script, Value};
use tracing::debug;

use super::seal::{FleetDigest, MAX_SEALED_BYTES};
use super::{
    Refused, SharedCache, SharedLookup, Unavailable, Waited, bytes, int, millis, stats, unexpected,
};

/// Reads the entry with its purge marker and, when there is none, takes the
/// lock: one round trip. Returns `{1, value, marker|nil}`, `{2}` (locked by
/// us), `{3}` (locked by another) or `{4}` (a value longer than `ARGV[3]`
/// bytes: not sent, never opened).
static LOOKUP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[3]) then return {4} end
  return {1, redis.call('GET', KEYS[1]), redis.call('GET', KEYS[3])}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {3}",
    )
});

/// Reads the entry with its purge marker, or whether its lock is still
/// held: `{1, value, marker|nil}`, `{2}` (too long: not sent) or
/// `{0, 0|1}`.
static POLL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[1]) then return {2} end
  return {1, redis.call('GET', KEYS[1]), redis.call('GET', KEYS[3])}
end
return {0, redis.call('EXISTS', KEYS[2])}",
    )
});

/// A value as read: its bytes and its token's purge marker, if any.
struct Stored {
    sealed: Vec<u8>,
    marker: Option<Vec<u8>>,
}

impl Stored {
    /// From the rest of a script's reply after its leading tag.
    fn read(mut rest: impl Iterator<Item = Value>) -> Option<Self> {
        let sealed = rest.next().and_then(bytes)?;
        let marker = match rest.next() {
            None | Some(Value::Nil) => None,
            Some(value) => Some(bytes(value)?),
        };
        Some(Stored { sealed, marker })
    }
}

/// What the lookup script answered.
enum Found {
    Value(Stored),
    Locked,
    HeldElsewhere,
    TooLong,
}

/// What a poll saw.
enum Polled {
    Value(Stored),
    TooLong,
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
        let (value_key, lock_key, marker_key) = (
            inner.value_key(&digest),
            inner.lock_key(&digest),
            inner.marker_key(&digest),
        );
        let ttl = millis(inner.lock_ttl).max(1);
        let found = inner
            .run(|mut conn| {
                let owner = owner.clone();
                async move {
                    let reply: Vec<Value> = LOOKUP
                        .key(&value_key)
                        .key(&lock_key)
                        .key(&marker_key)
                        .arg(owner)
                        .arg(ttl)
                        .arg(MAX_SEALED_BYTES)
                        .invoke_async(&mut conn)
                        .await?;
                    let mut reply = reply.into_iter();
                    match reply.next().as_ref().and_then(int) {
                        Some(1) => Stored::read(reply).map(Found::Value),
                        Some(2) => Some(Found::Locked),
                        Some(3) => Some(Found::HeldElsewhere),
                        Some(4) => Some(Found::TooLong),
                        _ => None,
                    }
                    .ok_or_else(unexpected)
                }
            })
            .await;
        let stored = match found {
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
            Ok(Found::TooLong) => {
                inner.stats.lookup(stats::LookupResult::Tampered);
                debug!("Shared cache entry too long to open; treated as a miss");
                return SharedLookup::Tampered {
                    lock: inner.try_lock(token, &digest).await.ok().flatten(),
                };
            }
            Ok(Found::Value(stored)) => stored,
        };
        match inner.open(token, &digest, &stored.sealed, stored.marker.as_deref()) {
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
            Err(why) => {
                match why {
                    Refused::Open(e) => {
                        inner.stats.lookup(stats::LookupResult::Tampered);
                        debug!(error = %e, "Shared cache entry did not open; treated as a miss");
                    }
                    Refused::Purged => {
                        inner.stats.lookup(stats::LookupResult::Purged);
                        debug!(
                            "Shared cache entry predates its token's last purge; treated as a miss"
                        );
                    }
                }
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
        let (value_key, lock_key, marker_key) = (
            inner.value_key(digest),
            inner.lock_key(digest),
            inner.marker_key(digest),
        );
        let deadline = Instant::now() + max_wait;
        let waited = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Waited::TimedOut;
            }
            tokio::time::sleep(left.min(inner.poll_interval)).await;
            let (value_key, lock_key, marker_key) = (&value_key, &lock_key, &marker_key);
            let polled = inner
                .run(|mut conn| async move {
                    let reply: Vec<Value> = POLL
                        .key(value_key)
                        .key(lock_key)
                        .key(marker_key)
                        .arg(MAX_SEALED_BYTES)
                        .invoke_async(&mut conn)
                        .await?;
                    let mut reply = reply.into_iter();
                    match reply.next().as_ref().and_then(int) {
                        Some(1) => Stored::read(reply).map(Polled::Value),
                        Some(2) => Some(Polled::TooLong),
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
                Ok(Polled::TooLong) => break Waited::Tampered,
                Ok(Polled::Value(stored)) => {
                    match inner.open(token, digest, &stored.sealed, stored.marker.as_deref()) {
                        Ok(Some(entry)) => break Waited::Hit(entry),
                        // Expired already: as good as absent; its holder is done.
                        Ok(None) => break Waited::Abandoned,
                        Err(_) => break Waited::Tampered,
                    }
                }
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
