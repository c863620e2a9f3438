//! The replay store: each proof (`jkt` and `jti`) is accepted once within
//! the window its `iat` allows.
//!
//! What must hold:
//! - A proof is claimed only once its token was decided and bound to the
//!   proof's key ([`super::Dpop::remember`]): proofs for junk or unbound
//!   tokens, which anyone can sign by the million, never take room.
//! - A live claim is never dropped to make room. When [`ReplayCache`] holds
//!   its capacity of live claims, a new one is refused ([`Seen::Full`]) and
//!   the request is answered 503; claims free their room when their window
//!   ends.
//! - A claim lives exactly as long as its proof could be accepted: a proof
//!   passes [`super::Proof::check`] while `now_secs <= iat + window` (whole
//!   seconds, fractions dropped), so its claim lives until the unix second
//!   `iat + window + 1` begins. Counted from `iat`, not from when it was
//!   claimed: a proof dated `skew` seconds ahead is remembered `skew`
//!   seconds longer than one dated now.
//!
//! In memory, claims are kept in shards by their id (SHA-256 of thumbprint
//! and `jti`); each shard maps ids to their end and lists them by end
//! second, so expired claims are dropped in order, each once, and no request
//! scans the store. With the shared cache on, a claim is also made in Redis
//! (`SET NX PX`, the same end), so a replay to another replica is caught; if
//! Redis does not answer, this replica's memory alone decides.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tracing::debug;

use crate::shared::SharedCache;

/// Shards of the in-memory store: requests for different proofs rarely wait
/// on one another.
const SHARDS: usize = 16;

/// Whether a proof could be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First seen: claimed now.
    First,
    /// Claimed before, by this replica or (through Redis) another.
    Replayed,
    /// The store holds its capacity of live claims: not claimed.
    Full,
}

/// One proof that passed its checks, to be claimed once its token checks
/// out: its id and the unix second its window ends (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofClaim {
    id: [u8; 32],
    ends_at: u64,
}

impl ProofClaim {
    /// The claim of the proof with key thumbprint `jkt`, `jti` and `iat`,
    /// accepted while `iat` is at most `window` seconds old.
    pub fn new(jkt: &str, jti: &str, iat: u64, window: u64) -> Self {
        let mut hash = Sha256::new();
        hash.update(jkt.as_bytes());
        hash.update([0]);
        hash.update(jti.as_bytes());
        ProofClaim {
            id: hash.finalize().into(),
            ends_at: iat.saturating_add(window).saturating_add(1),
        }
    }

    /// When the proof stops being accepted (unix time).
    pub fn ends_at(&self) -> Duration {
        Duration::from_secs(self.ends_at)
    }

    fn live_at(&self, now: Duration) -> bool {
        now.as_secs() < self.ends_at
    }
}

#[derive(Default)]
struct Shard {
    /// Live (and not yet swept) claims: id → end second.
    ends: HashMap<[u8; 32], u64>,
    /// The same claims by end second, for sweeping in order.
    by_end: BTreeMap<u64, Vec<[u8; 32]>>,
}

impl Shard {
    /// Drops every claim whose window ended by `now` (unix seconds);
    /// returns how many.
    fn sweep(&mut self, now: u64) -> usize {
        let mut dropped = 0;
        while let Some(entry) = self.by_end.first_entry() {
            if *entry.key() > now {
                break;
            }
            let (end, ids) = entry.remove_entry();
            for id in ids {
                // A claim re-made after its window ended carries a later
                // end: it stays.
                if self.ends.get(&id) == Some(&end) {
                    self.ends.remove(&id);
                    dropped += 1;
                }
            }
        }
        dropped
    }
}

/// The replay store of one replica.
pub struct ReplayCache {
    shards: Box<[Mutex<Shard>]>,
    /// Claims held across the shards, swept or not.
    held: AtomicUsize,
    capacity: usize,
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("held", &self.held())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl ReplayCache {
    /// A store of at most `capacity` live claims.
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            held: AtomicUsize::new(0),
            capacity,
        }
    }

    /// Claims held now (expired ones not yet swept included).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    fn shard(&self, id: &[u8; 32]) -> MutexGuard<'_, Shard> {
        self.shards[usize::from(id[0]) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sweeps one shard, keeping the count right.
    fn sweep(&self, shard: &mut Shard, now: u64) {
        let dropped = shard.sweep(now);
        if dropped > 0 {
            self.held.fetch_sub(dropped, Ordering::AcqRel);
        }
    }

    /// Whether this replica holds a live claim of `claim`'s proof at `now`
    /// (unix time); claims nothing. For refusing an obvious replay before
    /// its token is looked up.
    pub fn seen(&self, claim: &ProofClaim, now: Duration) -> bool {
        let mut shard = self.shard(&claim.id);
        self.sweep(&mut shard, now.as_secs());
        shard.ends.contains_key(&claim.id)
    }

    /// Claims the proof in this replica's memory at `now` (unix time).
    /// A proof whose window already ended needs no claim ([`Seen::First`]:
    /// it was accepted inside its window, and any replay is stale).
    pub fn claim(&self, claim: &ProofClaim, now: Duration) -> Seen {
        if !claim.live_at(now) {
            return Seen::First;
        }
        let now_secs = now.as_secs();
        for attempt in 0..2 {
            {
                let mut shard = self.shard(&claim.id);
                self.sweep(&mut shard, now_secs);
                if shard.ends.contains_key(&claim.id) {
                    return Seen::Replayed;
                }
                let reserved = self
                    .held
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                        (held < self.capacity).then_some(held + 1)
                    })
                    .is_ok();
                if reserved {
                    shard.ends.insert(claim.id, claim.ends_at);
                    shard
                        .by_end
                        .entry(claim.ends_at)
                        .or_default()
                        .push(claim.id);
                    return Seen::First;
                }
            }
            if attempt == 0 {
                // Full as counted: other shards may hold claims that ended
                // but were not swept yet. One pass over the shards (one lock
                // at a time), then one more try.
                for shard in &self.shards {
                    let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                    self.sweep(&mut shard, now_secs);
                }
            }
        }
        Seen::Full
    }

    /// Claims the proof here and, with `shared`, in Redis for the same
    /// lifetime: [`Seen::Replayed`] when this replica or any other claimed
    /// it within its window, [`Seen::Full`] when this replica has no room
    /// (Redis is then not asked).
    pub async fn record(
        &self,
        claim: &ProofClaim,
        now: Duration,
        shared: Option<&SharedCache>,
    ) -> Seen {
        match self.claim(claim, now) {
            Seen::First => {}
            other => return other,
        }
        // Rounded up to the millisecond: Redis keeps the claim to the end.
        let left_ms = u128::from(claim.ends_at)
            .saturating_mul(1000)
            .saturating_sub(now.as_millis());
        let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(u64::MAX));
        if let Some(shared) = shared
            && !left.is_zero()
        {
            match shared.claim_once(&hex::encode(claim.id), left).await {
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
