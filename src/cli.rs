//! The command line: `serve` (the default), and the operator's tools `health`,
//! `check`, `check-api`, `bundle`, `jwks` and `keygen`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cache::{TtlPolicy, unix_now};
use crate::config::{self, Config};
use crate::introspect::{Introspection, IntrospectionClient};
use crate::token::extract_bearer;

/// Exit status for an unusable configuration (sysexits `EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;
/// Exit status when the authorization server gave no answer (`EX_UNAVAILABLE`).
pub const EXIT_UNAVAILABLE: u8 = 69;
/// Exit status when an output file cannot be created (`EX_CANTCREAT`).
pub const EXIT_CANT_CREATE: u8 = 73;

#[derive(Debug, Parser)]
#[command(
    name = "tyk-phantom-token",
    version,
    about = "Phantom-token authentication for Tyk Gateway (gRPC rich plugin)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve coprocess.Dispatcher for Tyk (the default).
    Serve,
    /// Ask a running plugin's gRPC health service; exit 0 when SERVING.
    Health(HealthArgs),
    /// Validate the configuration, check the authorization server's answer
    /// format against it and, with --token, introspect one token.
    Check(CheckArgs),
    /// Check Tyk API definitions (classic or OAS), and the bundles they name,
    /// against what the plugin needs; exit 1 on errors, 2 on unreadable input.
    CheckApi(CheckApiArgs),
    /// Build or verify a Tyk plugin bundle.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Print the public JWK Set of the keys minted JWTs are signed with
    /// (what the admin endpoint serves at /.well-known/jwks.json).
    Jwks(JwksArgs),
    /// Write a new P-256 (ES256) signing key for SIGNING_KEY_FILE and print
    /// its kid.
    Keygen(KeygenArgs),
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The PEM file to create (PKCS#8, mode 0600).
    pub path: PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct JwksArgs {
    /// The PEM key file; default: SIGNING_KEY_FILE.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Plugin address (`host:port` or `unix:///path`); default: 127.0.0.1 on
    /// LISTEN_ADDR's or PORT's port, or LISTEN_ADDR's socket.
    #[arg(long)]
    pub addr: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// An access token to introspect; `-` reads it from standard input (keeps
    /// it out of the process list and shell history).
    #[arg(long)]
    pub token: Option<String>,
    /// Also print the JWT the authorization server returned.
    #[arg(long)]
    pub show_jwt: bool,
    /// Do not ask the authorization server which format it answers in
    /// (validate the configuration only; with --token, introspect it).
    #[arg(long)]
    pub no_probe: bool,
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Write a bundle zip from a manifest, optionally signed.
    Build {
        #[arg(long, default_value = "manifest/manifest.json")]
        manifest: PathBuf,
        #[arg(long, default_value = "bundles/phantom-bundle-v1.zip")]
        output: PathBuf,
        /// RSA private key (PEM, PKCS#1 or PKCS#8) to sign with.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Check a bundle as the gateway does: checksum, and signature with --key.
    Verify {
        /// The bundle zip.
        bundle: PathBuf,
        /// RSA public key (PEM, PKIX or PKCS#1) the gateway is configured with.
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

/// Loads `.env` from the working directory, if there is one.
///
/// # Errors
///
/// When the file exists but cannot be read or parsed.
pub fn load_dotenv() -> Result<(), String> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(format!("invalid configuration: cannot read .env: {e}")),
    }
}

/// `.env`, then the configuration from the environment. On failure the
/// problems are printed on one line and the exit code is [`EXIT_CONFIG`].
///
/// Call it before any thread starts: dotenvy writes into the process
/// environment. Variables already set in the environment win over the file.
///
/// # Errors
///
/// The exit code to end with.
pub fn load_config() -> Result<Config, ExitCode> {
    load_dotenv()
        .and_then(|()| Config::from_env().map_err(|e| e.to_string()))
        .map_err(|message| {
            eprintln!("{message}");
            ExitCode::from(EXIT_CONFIG)
        })
}

fn current_thread_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// `health`: exit 0 when the plugin's health service says SERVING.
pub fn health(args: &HealthArgs) -> ExitCode {
    let _ = load_dotenv();
    let addr = match &args.addr {
        Some(addr) => addr.clone(),
        None => default_health_addr(&config::Environment),
    };
    let timeout = Duration::from_secs_f64(args.timeout.clamp(0.1, 60.0));
    let result = current_thread_runtime()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                tokio::time::timeout(timeout, health_status(&addr))
                    .await
                    .unwrap_or_else(|_| Err("timed out".to_owned()))
            })
        });
    match result {
        Ok(status) if status == "SERVING" => {
            println!("{status}");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            println!("{status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("health check of {addr} failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the plugin of this environment listens, seen from the same host.
fn default_health_addr(source: &dyn config::Source) -> String {
    let listen = source.get(config::ENV_LISTEN_ADDR);
    if let Some(unix) = listen
        .as_deref()
        .map(str::trim)
        .filter(|v| v.starts_with("unix:"))
    {
        return unix.to_owned();
    }
    let from_listen = listen
        .and_then(|v| v.trim().parse::<SocketAddr>().ok())
        .map(|a| {
            if a.ip().is_unspecified() {
                format!("127.0.0.1:{}", a.port())
            } else {
                a.to_string()
            }
        });
    let from_port = || {
        source
            .get(config::ENV_PORT)
            .and_then(|v| v.trim().parse::<u16>().ok())
            .map(|p| format!("127.0.0.1:{p}"))
    };
    from_listen
        .or_else(from_port)
        .unwrap_or_else(|| format!("127.0.0.1:{}", config::DEFAULT_PORT))
}

async fn health_status(addr: &str) -> Result<String, String> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let target = crate::config::parse_listen_addr(addr)?;
    let channel = crate::server::connect(&target)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|e| format!("health service: {}", e.message()))?;
    let status =
        ServingStatus::try_from(reply.into_inner().status).unwrap_or(ServingStatus::Unknown);
    Ok(status.as_str_name().to_owned())
}

/// `jwks`: prints the public JWKS of the signing key file (every key in it:
/// the first signs, the others stay published for rotation).
pub fn jwks(args: &JwksArgs) -> ExitCode {
    let _ = load_dotenv();
    let path = match args.key_file.clone().or_else(|| {
        config::Source::get(&config::Environment, config::ENV_SIGNING_KEY_FILE)
            .filter(|v| !v.trim().is_empty())
            .map(|v| PathBuf::from(v.trim()))
    }) {
        Some(path) => path,
        None => {
            eprintln!("no key file: set SIGNING_KEY_FILE or pass --key-file");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match crate::keys::SigningKeys::from_pem_file(&path) {
        Ok(keys) => {
            println!("{}", keys.jwks_json());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("SIGNING_KEY_FILE {}: {e}", path.display());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `keygen`: writes a new signing key and prints its `kid` on standard
/// output (alone, for scripts); what to do next goes to standard error.
pub fn keygen(args: &KeygenArgs) -> ExitCode {
    match crate::keygen::write_p256_key(&args.path, args.force) {
        Ok(kid) => {
            println!("{kid}");
            eprintln!(
                "wrote a new P-256 (ES256) private key to {} (mode 0600); kid above. \
                 Set SIGNING_KEY_FILE={} (and MINTED_ISSUER, MINTED_AUDIENCE)",
                args.path.display(),
                args.path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keygen: {e}");
            ExitCode::from(EXIT_CANT_CREATE)
        }
    }
}

/// `bundle build` / `bundle verify`.
pub fn bundle(command: &BundleCommand) -> ExitCode {
    match command {
        BundleCommand::Build {
            manifest,
            output,
            key,
        } => match crate::bundle::build(manifest, output, key.as_deref()) {
            Ok(report) => {
                println!("wrote {}", output.display());
                println!("  checksum: {}", report.checksum);
                println!("  signed: {}", if report.signed { "yes" } else { "no" });
                println!("  files: {}", report.files.len());
                println!("Tyk caches bundles by name: publish a changed bundle under a new name.");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bundle build failed: {e}");
                ExitCode::FAILURE
            }
        },
        BundleCommand::Verify { bundle, key } => {
            match crate::bundle::verify(bundle, key.as_deref()) {
                Ok(report) => {
                    println!("{}: ok", bundle.display());
                    println!("  checksum: {}", report.checksum);
                    let signature = match (report.signature_present, report.signature_checked) {
                        (true, true) => "present, verified",
                        (true, false) => "present, not checked (no --key)",
                        (false, _) => "none",
                    };
                    println!("  signature: {signature}");
                    println!("  driver: {}", report.driver);
                    println!(
                        "  auth_check: {}",
                        report.auth_check.as_deref().unwrap_or("-")
                    );
                    for hook in &report.hooks {
                        println!("  hook: {hook}");
                    }
                    println!(
                        "  id_extractor: {}",
                        if report.id_extractor { "yes" } else { "no" }
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("bundle verify failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

mod check;
pub use check::check;

mod check_api;
pub use check_api::{CheckApiArgs, Format, check_api};

#[cfg(test)]
mod tests;
