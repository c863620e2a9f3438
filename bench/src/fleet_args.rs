//! The settings of `phantom-bench fleet`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct FleetArgs {
    /// The plugin binary.
    #[arg(long, default_value = "target/release/tyk-phantom-token")]
    pub plugin: PathBuf,
    /// The Redis server binary (Debian's `redis-server`).
    #[arg(long, default_value = "redis-server")]
    pub redis_server: PathBuf,
    /// Plugin processes sharing the Redis.
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Tokens spread over the replicas, each sent to every replica.
    #[arg(long, default_value_t = 100_000)]
    pub tokens: u64,
    /// Tokens in flight while spreading.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Concurrent requests of the measured legs (one HTTP/2 connection).
    #[arg(long, default_value_t = 64)]
    pub streams: usize,
    /// The fake AS's delay before each answer.
    #[arg(long, default_value_t = 5)]
    pub as_latency_ms: u64,
    /// Measured seconds of each timed leg (split into rounds for the
    /// with/without Redis comparison).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Unmeasured seconds before each timed leg.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Rounds of the with/without Redis alternation (A B, B A, …).
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// Shared hits measured: tokens introspected through one replica, then
    /// sent once each to another.
    #[arg(long, default_value_t = 20_000)]
    pub shared_hits: u64,
    /// Tokens of the hit-10k comparison.
    #[arg(long, default_value_t = 10_000)]
    pub hit_tokens: u64,
    /// Seconds of the outage run: a third with Redis, a third without, the
    /// rest after Redis is started again.
    #[arg(long, default_value_t = 30.0)]
    pub outage_seconds: f64,
    /// Iterations of each timed step of the sealing cost (digest, open).
    #[arg(long, default_value_t = 200_000)]
    pub seal_iterations: u32,
    /// The plugins' CACHE_MAX_BYTES.
    #[arg(long, default_value = "1GiB")]
    pub cache_max_bytes: String,
    /// Extra plugin environment, NAME=VALUE (repeatable).
    #[arg(long = "plugin-env", value_parser = crate::parse_env)]
    pub plugin_env: Vec<(String, String)>,
    /// Write every figure to this file as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}
