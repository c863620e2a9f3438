//! The binary: parse the command line, set up logging, and turn outcomes into
//! exit codes. The service itself is wired in `tyk_phantom_token::app`.

/// mimalloc: fewer instructions per allocation and less fragmentation than
/// glibc's malloc on the request path (figures in docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;
use tyk_phantom_token::cli::{self, Cli, Command};
use tyk_phantom_token::{app::App, config::Config, signal, telemetry};

fn main() -> ExitCode {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
        Command::Health(args) => cli::health(&args),
        Command::Check(args) => cli::check(&args),
        Command::CheckApi(args) => cli::check_api(&args),
        Command::Bundle(command) => cli::bundle(&command),
        Command::Jwks(args) => cli::jwks(&args),
        Command::Keygen(args) => cli::keygen(&args),
    }
}

fn serve() -> ExitCode {
    // Before any thread exists (see `load_config`).
    let config = match cli::load_config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Err(e) = telemetry::init(config.log_format, &config.log_level) {
        eprintln!("cannot start logging: {e}");
        return ExitCode::FAILURE;
    }
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run(config)),
        Err(e) => {
            tracing::error!(error = %e, "Cannot start the runtime");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> ExitCode {
    let app = match App::bind(&config).await {
        Ok(app) => app.with_start_up_probe(),
        Err(e) => {
            tracing::error!(error = %e, "Cannot start");
            return e.exit_code();
        }
    };
    if let Err(e) = app.run(signal::shutdown()).await {
        tracing::error!(error = %e, "Server failed");
        return ExitCode::FAILURE;
    }
    tracing::info!("Stopped");
    ExitCode::SUCCESS
}
