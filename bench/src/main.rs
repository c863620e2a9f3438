//! Benchmark and soak tool for the phantom-token plugin.
//!
//! - `run`: each workload (cache hits with one or many tokens, misses against
//!   a slow AS, 1 MiB bodies, 500 k live tokens) over one HTTP/2 connection
//!   and over many, with the plugin's hit path compared back to back with a
//!   bare echo dispatcher built from the same protos and server settings.
//! - `fleet`: three plugin processes sharing one Redis (started here): AS
//!   calls per token for the fleet, the cost of an in-process hit, a shared
//!   hit and a miss, the hit path with and without Redis, and a Redis outage.
//! - `soak`: a set rate for a long time with token churn; rate, latency,
//!   errors, AS calls and RSS as it goes.
//! - `echo-server`, `fake-as`: the baseline and the fake authorization
//!   server on their own.
//! - `cache-memory`: resident memory per inactive answer in the token cache.
//!
//! Everything listens and connects on loopback only. The machine is shared:
//! read ratios and medians, not absolute figures.

mod dpop;
mod echo;
mod fake_as;
mod fleet;
mod fleet_args;
mod fleet_outage;
mod fleet_report;
mod load;
mod memory;
mod procs;
mod redis_proc;
mod report;
mod run;
mod run_args;
mod scrape;
mod soak;
mod spread;
mod stats;

/// mimalloc: fewer instructions per allocation than glibc's malloc on the
/// request path, and less fragmentation from the many short-lived buffers of
/// gRPC and HTTP (figures in docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "phantom-bench",
    about = "Benchmark and soak tool for tyk-phantom-token"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmark the plugin against the echo baseline.
    Run(run_args::RunArgs),
    /// Benchmark a fleet of plugins sharing one Redis (started and stopped
    /// here; `redis-server` must be installed).
    Fleet(fleet_args::FleetArgs),
    /// Drive the plugin at a set rate with token churn, watching RSS.
    Soak(soak::SoakArgs),
    /// Serve a coprocess.Dispatcher that returns every object unchanged.
    EchoServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Also stop when standard input closes.
        #[arg(long)]
        watch_stdin: bool,
    },
    /// Measure the resident memory an inactive answer holds in the token cache.
    CacheMemory(memory::CacheMemoryArgs),
    /// Serve a fake introspection endpoint that answers every token with a JWT.
    FakeAs {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Lifetime of the JWTs (`exp` this far ahead).
        #[arg(long, default_value_t = 3600)]
        jwt_ttl: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => interruptible(run::run(args)).await,
            Command::Fleet(args) => interruptible(fleet::fleet(args)).await,
            Command::Soak(args) => interruptible(soak::soak(args)).await,
            Command::CacheMemory(args) => memory::measure(args).await,
            Command::EchoServer {
                listen,
                watch_stdin,
            } => echo::serve(listen, watch_stdin).await.map(|()| true),
            Command::FakeAs {
                listen,
                latency_ms,
                jwt_ttl,
            } => fake_as::serve(listen, Duration::from_millis(latency_ms), jwt_ttl)
                .await
                .map(|()| true),
        }
    });
    // Tasks still holding clients must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("phantom-bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// Stops `work` on SIGINT or SIGTERM; dropping it kills the child processes.
async fn interruptible(work: impl Future<Output = Result<bool, String>>) -> Result<bool, String> {
    tokio::select! {
        result = work => result,
        () = tyk_phantom_token::signal::shutdown() => Err("interrupted".into()),
    }
}

/// `NAME=VALUE`.
fn parse_env(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected NAME=VALUE".to_owned())
}

/// A size such as `65536`, `64KiB`, `16MiB` or `1GiB`.
fn byte_size(raw: &str) -> Option<u64> {
    let end = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let number: u64 = raw[..end].parse().ok()?;
    let unit: u64 = match raw[end..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(unit)
}
