//! The fleet-wide lock on a token: the values naming each hold on it, taking
//! it, and releasing it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};

use redis::Script;

use super::seal::FleetDigest;
use super::{Inner, Unavailable, millis};

/// The fleet-wide lock on one token, held by this replica. Released by
/// [`super::SharedCache::fill`] or [`super::SharedCache::release`]; dropped
/// unreleased, it is released in the background (and expires after the lock
/// TTL anyway).
///
/// It borrows the token it was taken for, with its digest, so the answer
/// filled under it is sealed for that token and stored under that token's
/// key: a lock cannot be filled with another token's answer.
pub struct LockGuard<'t> {
    pub(super) inner: Arc<Inner>,
    pub(super) token: &'t str,
    pub(super) digest: FleetDigest,
    pub(super) owner: String,
    pub(super) released: bool,
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuard(..)")
    }
}

impl Drop for LockGuard<'_> {
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

/// Releases the lock if it is still ours (it may have expired and been
/// taken by another replica).
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0",
    )
});

impl Inner {
    /// A value naming one hold on a lock, unique across the fleet: the
    /// handle's random id and a count of its holds.
    pub(super) fn lock_owner(&self) -> String {
        let n = self.owner_count.fetch_add(1, Ordering::Relaxed);
        format!("{}{n:016x}", self.owner_id)
    }

    /// Takes the lock for `token` (whose digest is `digest`); the guard
    /// when it was free.
    pub(super) async fn try_lock<'t>(
        self: &Arc<Self>,
        token: &'t str,
        digest: &FleetDigest,
    ) -> Result<Option<LockGuard<'t>>, Unavailable> {
        let owner = self.lock_owner();
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
        Ok(taken.map(|_| self.guard(token, *digest, owner)))
    }

    pub(super) fn guard<'t>(
        self: &Arc<Self>,
        token: &'t str,
        digest: FleetDigest,
        owner: String,
    ) -> LockGuard<'t> {
        LockGuard {
            inner: self.clone(),
            token,
            digest,
            owner,
            released: false,
        }
    }

    pub(super) async fn release(
        &self,
        digest: &FleetDigest,
        owner: &str,
    ) -> Result<(), Unavailable> {
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
}
