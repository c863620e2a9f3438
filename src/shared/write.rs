//! Writing the shared cache: storing an answer (with or without the lock),
//! releasing the lock, and the fleet-wide purge with its marker.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use tracing::warn;

use super::seal::{FleetDigest, MAX_SEALED_BYTES};
use super::{
    LockGuard, MAX_ENTRY_TTL, PURGE_MARKER_TTL, SharedCache, Unavailable, WriteResult, micros,
    millis, unix_now,
};

/// Stores the entry and releases the lock, only while the lock is still
/// ours (once it expired or a purge removed it, the answer may predate the
/// purge) and the answer was introspected after the token's last purge
/// (`ARGV[4]` against the marker, unix µs). Returns 1 when stored, 0 when
/// the lock was lost, 2 when the marker refused it (the lock is released).
static FILL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
local m = redis.call('GET', KEYS[3])
if m and not (tonumber(m) and tonumber(ARGV[4]) > tonumber(m)) then
  redis.call('DEL', KEYS[2])
  return 2
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
return 1",
    )
});

/// Stores the entry unless the answer was introspected at or before the
/// token's last purge (`ARGV[3]` against the marker, unix µs). Returns 1
/// when stored, 2 when the marker refused it.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local m = redis.call('GET', KEYS[2])
if m and not (tonumber(m) and tonumber(ARGV[3]) > tonumber(m)) then return 2 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1",
    )
});

/// Deletes the entry and its lock, and sets the purge marker to the purge
/// time (`ARGV[1]`, unix µs) for `ARGV[2]` ms, keeping a later time already
/// there. Returns 1 when there was an entry.
static PURGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local n = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
local m = tonumber(redis.call('GET', KEYS[3]))
if m and m >= tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
else
  redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
end
return n",
    )
});

impl SharedCache {
    /// Stores `payload` for `token` (whose digest is `digest`) for `ttl`
    /// (Redis expiry and sealed expiry), replacing any entry.
    /// `introspected_at` (unix time) is when the introspection behind it
    /// started: sealed in, and refused (not stored,
    /// [`WriteResult::Purged`]) when at or before the token's last purge,
    /// so an answer in flight during a purge does not outlive it. Nothing
    /// is stored for longer than [`super::MAX_ENTRY_TTL`] from
    /// `introspected_at`, nor when that leaves under a millisecond.
    pub async fn put(
        &self,
        token: &str,
        digest: &FleetDigest,
        payload: &[u8],
        ttl: Duration,
        introspected_at: Duration,
    ) -> WriteResult {
        self.write(token, digest, payload, ttl, introspected_at, None)
            .await
    }

    /// Stores the answer this replica introspected for the token `lock` was
    /// taken for, while holding it, and releases the lock, in one round trip
    /// (waiting replicas see the entry and the lock go together). Nothing is
    /// stored when the lock is no longer ours ([`WriteResult::LockLost`]):
    /// it expired, or a purge removed it while this replica introspected;
    /// nor when `introspected_at` is at or before the token's last purge
    /// ([`WriteResult::Purged`]). See [`SharedCache::put`] for the rest.
    pub async fn fill(
        &self,
        mut lock: LockGuard<'_>,
        payload: &[u8],
        ttl: Duration,
        introspected_at: Duration,
    ) -> WriteResult {
        let (token, digest) = (lock.token, lock.digest);
        let owner = std::mem::take(&mut lock.owner);
        lock.released = true;
        let result = self
            .write(token, &digest, payload, ttl, introspected_at, Some(&owner))
            .await;
        if matches!(result, WriteResult::Skipped | WriteResult::TooLarge) {
            let _ = self.inner.release(&digest, &owner).await;
        }
        result
    }

    /// Releases `lock` without storing anything (the introspection failed):
    /// waiting replicas stop waiting at their next look.
    pub async fn release(&self, mut lock: LockGuard<'_>) {
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
        introspected_at: Duration,
        owner: Option<&str>,
    ) -> WriteResult {
        let inner = &self.inner;
        let now = unix_now();
        // A stamp from the future would outlive the purge markers meant to
        // refuse it.
        let introspected_at = introspected_at.min(now);
        let expires_at = now
            .saturating_add(ttl)
            .min(introspected_at.saturating_add(MAX_ENTRY_TTL));
        let ttl_ms = millis(expires_at.saturating_sub(now));
        if ttl_ms == 0 {
            inner.stats.write(WriteResult::Skipped);
            return WriteResult::Skipped;
        }
        let value_key = inner.value_key(digest);
        let Ok(sealed) = inner.keys.seal(
            token.as_bytes(),
            value_key.as_bytes(),
            payload,
            introspected_at,
            expires_at,
        ) else {
            warn!("Shared cache entry not stored: no randomness for a nonce");
            inner.stats.write(WriteResult::Failed);
            return WriteResult::Failed;
        };
        if sealed.len() > MAX_SEALED_BYTES {
            inner.stats.write(WriteResult::TooLarge);
            return WriteResult::TooLarge;
        }
        let (lock_key, marker_key) = (inner.lock_key(digest), inner.marker_key(digest));
        let stamp = micros(introspected_at);
        let (value_key, lock_key, marker_key, sealed) =
            (&value_key, &lock_key, &marker_key, &sealed);
        let stored = inner
            .run(|mut conn| async move {
                match owner {
                    Some(owner) => {
                        FILL.key(value_key)
                            .key(lock_key)
                            .key(marker_key)
                            .arg(sealed)
                            .arg(ttl_ms)
                            .arg(owner)
                            .arg(stamp)
                            .invoke_async::<i64>(&mut conn)
                            .await
                    }
                    None => {
                        PUT.key(value_key)
                            .key(marker_key)
                            .arg(sealed)
                            .arg(ttl_ms)
                            .arg(stamp)
                            .invoke_async::<i64>(&mut conn)
                            .await
                    }
                }
            })
            .await;
        let result = match stored {
            Ok(1) => WriteResult::Stored,
            Ok(2) => WriteResult::Purged,
            Ok(_) => WriteResult::LockLost,
            Err(_) => WriteResult::Failed,
        };
        inner.stats.write(result);
        result
    }

    /// Removes `token`'s entry from Redis, leaves its purge marker (this
    /// replica's time now, kept [`PURGE_MARKER_TTL`]; a later one already
    /// there is kept), and tells every subscribed replica (its
    /// [`FleetDigest`], never the token). Returns whether an entry was
    /// there. While the marker lives, no entry introspected at or before
    /// the purge is read or stored.
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when Redis did not take the deletion or the
    /// announcement.
    pub async fn purge(&self, token: &str) -> Result<bool, Unavailable> {
        let inner = &self.inner;
        let digest = self.digest(token);
        let (value_key, lock_key, marker_key) = (
            inner.value_key(&digest),
            inner.lock_key(&digest),
            inner.marker_key(&digest),
        );
        let purged_at = micros(unix_now());
        let marker_ttl = millis(PURGE_MARKER_TTL);
        let deleted: Result<i64, _> = inner
            .run(|mut conn| async move {
                PURGE
                    .key(&value_key)
                    .key(&lock_key)
                    .key(&marker_key)
                    .arg(purged_at)
                    .arg(marker_ttl)
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
}
