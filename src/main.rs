//! The binary: parse the command line, then serve or run an operator's tool.

/// mimalloc: fewer instructions per allocation than glibc's malloc on the
/// request path, and less fragmentation from the many short-lived buffers of
/// gRPC and HTTP (figures in docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tyk_phantom_token::authz::Authorizer;
use tyk_phantom_token::cli::{self, Cli, Command, EXIT_CONFIG};
use tyk_phantom_token::config::Config;
use tyk_phantom_token::dispatch::DispatchService;
use tyk_phantom_token::metrics::Metrics;
use tyk_phantom_token::server::{self, ServeOptions};
use tyk_phantom_token::{admin, signal, telemetry};

fn main() -> ExitCode {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
        Command::Health(args) => cli::health(&args),
        Command::Check(args) => cli::check(&args),
        Command::Bundle(command) => cli::bundle(&command),
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "Cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    for name in &config.ignored {
        tracing::info!(variable = name, "Accepted for compatibility; has no effect");
    }
    if config.session.key_secret_is_client_secret {
        tracing::warn!(
            "SESSION_KEY_SECRET is not set: Tyk session keys are derived from the client secret, \
             which the authorization server and anything on the way to it see; set a separate secret"
        );
    }
    let metrics = Arc::new(Metrics::new());
    let authz = match Authorizer::new(&config, metrics) {
        Ok(authz) => Arc::new(authz),
        Err(e) => {
            tracing::error!(error = %e, "Invalid configuration");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let listener = match server::bind(&config.listen) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(addr = %config.listen, error = %e, "Cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let local = listener
        .local_addr()
        .map_or_else(|_| config.listen.to_string(), |a| a.to_string());
    tracing::info!(
        addr = %local,
        introspection.host = config.introspection.url.host_str().unwrap_or_default(),
        "Listening for Tyk"
    );
    let serving = server::Serving::default();
    let admin_done = tokio_util::sync::CancellationToken::new();
    let admin = match config.admin {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                tracing::info!(addr = %addr, "Admin endpoint listening");
                let done = admin_done.clone();
                Some(tokio::spawn(admin::serve(
                    listener,
                    serving.clone(),
                    authz.clone(),
                    async move { done.cancelled().await },
                )))
            }
            Err(e) => {
                tracing::error!(addr = %addr, error = %e, "Cannot listen for the admin endpoint");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let service = DispatchService::new(authz, &config);
    let options = ServeOptions {
        max_message_bytes: config.grpc_max_message_bytes,
        shutdown_grace: config.shutdown_grace,
        serving,
    };
    let result = server::serve(listener, service, options, signal::shutdown()).await;
    // The admin endpoint answered "not ready" during the drain; now it stops.
    admin_done.cancel();
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    match result {
        Ok(()) => {
            tracing::info!("Stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "Server failed");
            ExitCode::FAILURE
        }
    }
}
