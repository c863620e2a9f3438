//! The replay cache: each proof (`jkt` and `jti`) is accepted once within
//! the window its `iat` allows.
//!
//! In memory, a bounded LRU keyed by SHA-256 of the thumbprint and `jti`
//! (least recently used forgotten first, so a new proof is always
//! remembered). With the shared cache on, the proof is also claimed in
//! Redis, so a replay to another replica is caught; if Redis does not
//! answer, this replica's memory alone decides.

use std::time::Duration;

use moka::policy::EvictionPolicy;
use sha2::{Digest, Sha256};
use tracing::debug;

use crate::shared::SharedCache;

/// Proofs remembered per replica (about 150 bytes each).
pub const MAX_REMEMBERED_PROOFS: u64 = 500_000;

/// Whether a proof was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    First,
    Replayed,
}

pub struct ReplayCache {
    local: moka::sync::Cache<[u8; 32], ()>,
    ttl: Duration,
}

impl ReplayCache {
    /// Remembers proofs for `ttl` (the `iat` window plus the clock skew:
    /// past that the proof is stale anyway).
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        ReplayCache {
            local: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(EvictionPolicy::lru())
                .time_to_live(ttl.max(Duration::from_secs(1)))
                .build(),
            ttl,
        }
    }

    fn id(jkt: &str, jti: &str) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(jkt.as_bytes());
        hash.update([0]);
        hash.update(jti.as_bytes());
        hash.finalize().into()
    }

    /// Records the proof; [`Seen::Replayed`] when this replica (or, with
    /// `shared`, any replica) saw it within the window.
    pub async fn record(&self, jkt: &str, jti: &str, shared: Option<&SharedCache>) -> Seen {
        let id = Self::id(jkt, jti);
        if !self.local.entry(id).or_insert(()).is_fresh() {
            return Seen::Replayed;
        }
        if let Some(shared) = shared {
            match shared.claim_once(&hex::encode(id), self.ttl).await {
                Ok(true) => {}
                Ok(false) => return Seen::Replayed,
                Err(why) => {
                    debug!(reason = ?why, "Shared cache unavailable; DPoP replay checked on this replica only");
                }
            }
        }
        Seen::First
    }
}
