//! Writing the shared cache: storing an answer (with or without the lock),
//! releasing the lock, and the fleet-wide purge.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use tracing::warn;

use super::seal::{self, FleetDigest};
use super::{LockGuard, SharedCache, Unavailable, WriteResult, millis, unix_now};
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

impl SharedCache {
    /// Stores `payload` for `token` (whose digest is `digest`) for `ttl`
    /// (Redis expiry and sealed expiry), replacing any entry. Not stored
    /// when `ttl` is under a millisecond.
    pub async fn put(
        &self,
        token: &str,
        digest: &FleetDigest,
        payload: &[u8],
        ttl: Duration,
    ) -> WriteResult {
        self.write(token, digest, payload, ttl, None).await
    }

    /// Stores the answer this replica introspected for the token `lock` was
    /// taken for, while holding it, and releases the lock, in one round trip (waiting replicas see the entry
    /// and the lock go together). Nothing is stored when the lock is no
    /// longer ours ([`WriteResult::LockLost`]): it expired, or a purge
    /// removed it while this replica introspected.
    pub async fn fill(
        &self,
        mut lock: LockGuard<'_>,
        payload: &[u8],
        ttl: Duration,
    ) -> WriteResult {
        let (token, digest) = (lock.token, lock.digest);
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
}
