//! The fleet-wide half of the DPoP replay check: a proof's `jti` is claimed
//! in Redis with `SET NX PX`, so a proof replayed to another replica within
//! its window is refused there too.

use std::time::Duration;

use super::{SharedCache, Unavailable, millis};

impl SharedCache {
    /// Claims `id` (a hex digest naming one proof) for `ttl` (what is left
    /// of the proof's acceptance window, so the claim ends with it):
    /// `Ok(true)` the first time, `Ok(false)` when any replica claimed it
    /// before.
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when Redis does not answer: the caller falls back to
    /// its own replay cache.
    pub async fn claim_once(&self, id: &str, ttl: Duration) -> Result<bool, Unavailable> {
        let key = format!("{}dpop:{id}", self.inner.prefix);
        let ttl = millis(ttl).max(1);
        let taken: Option<String> = self
            .inner
            .run(|mut conn| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(taken.is_some())
    }
}
