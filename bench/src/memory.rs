//! `phantom-bench cache-memory`: what one inactive answer costs in the token
//! cache, measured as the growth of this process's resident memory over many
//! of them (same allocator and cache as the plugin; no network).
//!
//! The plugin weighs each cache entry in bytes for `CACHE_MAX_BYTES`; the
//! weight of an inactive answer comes from this figure.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tyk_phantom_token::authz::Grant;
use tyk_phantom_token::cache::{Cached, TokenCache};
use tyk_phantom_token::token::TokenDigest;

use crate::procs;

#[derive(Debug, Args)]
pub struct CacheMemoryArgs {
    /// Inactive answers to insert, each under its own token digest.
    #[arg(long, default_value_t = 500_000)]
    pub entries: u32,
}

/// Inserts the entries, then prints resident memory before and after and the
/// difference per entry.
///
/// # Errors
///
/// When `/proc` cannot be read or the cache did not keep every entry.
pub async fn measure(args: CacheMemoryArgs) -> Result<bool, String> {
    let pid = std::process::id();
    // A bound far above what the entries weigh: nothing is evicted.
    let cache = TokenCache::<Option<Arc<Grant>>>::new(1 << 40, None, |_| {});
    // Warm the cache's own structures with one entry, so the figure is the
    // per-entry growth and not the fixed cost.
    cache.insert(digest(u32::MAX), inactive()).await;
    cache.run_pending_tasks().await;
    let (before, _) = procs::memory(pid).ok_or("cannot read /proc/self/status")?;
    for n in 0..args.entries {
        cache.insert(digest(n), inactive()).await;
        if n % 4096 == 0 {
            cache.run_pending_tasks().await;
        }
    }
    cache.run_pending_tasks().await;
    let (after, peak) = procs::memory(pid).ok_or("cannot read /proc/self/status")?;
    let held = cache.entry_count();
    if held < u64::from(args.entries) {
        return Err(format!("only {held} of {} entries were kept", args.entries));
    }
    let per_entry = after.saturating_sub(before) as f64 / f64::from(args.entries);
    println!(
        "inactive entries: {}  RSS before {:.1} MiB  after {:.1} MiB (peak {:.1} MiB)  per entry {per_entry:.0} bytes",
        args.entries,
        mib(before),
        mib(after),
        mib(peak),
    );
    Ok(true)
}

/// A distinct, SHA-256-like digest for `n` (the cache hashes its keys again,
/// so only distinctness matters).
fn digest(n: u32) -> TokenDigest {
    let mut bytes = [0x5a; 32];
    bytes[..4].copy_from_slice(&n.to_le_bytes());
    bytes[28..].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_be_bytes());
    TokenDigest(bytes)
}

/// An inactive answer as the plugin stores it (the weight does not change
/// the memory held).
fn inactive() -> Cached<Option<Arc<Grant>>> {
    Cached {
        value: None,
        ttl: Duration::from_secs(3600),
        weight: 1,
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}
