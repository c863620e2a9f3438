//! The settings of `phantom-bench run`, shared by the run itself and by its
//! report (which writes them into the JSON file).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// The baseline: hit-1's requests against the echo server.
    #[value(name = "echo")]
    Echo,
    #[value(name = "hit-1")]
    Hit1,
    #[value(name = "hit-10k")]
    Hit10k,
    #[value(name = "miss")]
    Miss,
    #[value(name = "body-1mib")]
    Body1Mib,
    #[value(name = "tokens-500k")]
    Tokens500k,
    /// hit-1 with `Authorization: DPoP` and a fresh ES256 proof per request,
    /// alternating with hit-1 (Bearer) on the same plugin.
    #[value(name = "dpop-hit")]
    DpopHit,
}

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct RunArgs {
    /// The plugin binary.
    #[arg(long, default_value = "target/release/tyk-phantom-token")]
    pub plugin: PathBuf,
    /// The binary run as `BINARY echo-server …` for the baseline (default:
    /// this one).
    #[arg(long)]
    pub echo: Option<PathBuf>,
    /// Workloads, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "echo,hit-1,hit-10k,miss,body-1mib,tokens-500k"
    )]
    pub workloads: Vec<Workload>,
    /// Measured seconds per workload and transport (split into rounds where
    /// a workload alternates with its echo baseline).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Unmeasured seconds before each workload on each transport.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Rounds of plugin/echo alternation for the ratios (A B, B A, …).
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// Transports to run: HTTP/2 connections, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub connections: Vec<usize>,
    /// Concurrent requests in all, spread over the connections.
    #[arg(long, default_value_t = 64)]
    pub streams: usize,
    /// Tokens of hit-10k.
    #[arg(long, default_value_t = 10_000)]
    pub tokens: u64,
    /// Tokens of tokens-500k.
    #[arg(long, default_value_t = 500_000)]
    pub big_tokens: u64,
    /// Requests in flight while prefilling the cache.
    #[arg(long, default_value_t = 256)]
    pub prefill_concurrency: usize,
    /// Fake AS latency for the miss workload.
    #[arg(long, default_value_t = 5)]
    pub miss_latency_ms: u64,
    /// Requests (each with its own proof, made just before) per dpop-hit leg.
    #[arg(long, default_value_t = 20_000)]
    pub dpop_requests: usize,
    /// raw_body size of body-1mib.
    #[arg(long, default_value_t = 1 << 20)]
    pub body_bytes: usize,
    /// The plugin's CACHE_MAX_BYTES.
    #[arg(long, default_value = "1GiB")]
    pub cache_max_bytes: String,
    /// Extra plugin environment, NAME=VALUE (repeatable).
    #[arg(long = "plugin-env", value_parser = crate::parse_env)]
    pub plugin_env: Vec<(String, String)>,
    /// Write every figure to this file as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}
