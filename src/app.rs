//! The composition root: from a validated [`Config`] to the running service.
//!
//! The binary and the end-to-end tests both start the plugin through [`App`],
//! so what the tests exercise is wired exactly as what ships: one metrics
//! registry, one authorizer shared by the gRPC service and the admin endpoint,
//! and the serve options taken from the configuration.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::admin::{self, WriteAccess};
use crate::authz::Authorizer;
use crate::config::{Config, ListenAddr};
use crate::discovery::{self, DiscoveryError};
use crate::dispatch::DispatchService;
use crate::fleet::Fleet;
use crate::introspect::{self, ClientBuildError};
use crate::metrics::Metrics;
use crate::probe;
use crate::server::{self, Listener, ServeOptions, Serving};
use crate::shared::SharedCacheError;

/// Why the service could not start. The binary turns each into an exit code.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration parsed, but a part of it cannot be used (CA file,
    /// client certificate, TLS set-up).
    #[error("invalid configuration: {0}")]
    Config(#[from] ClientBuildError),
    /// The shared cache's settings cannot be used (TLS files, client).
    #[error("invalid shared cache configuration: {0}")]
    Shared(#[from] SharedCacheError),
    /// `ISSUER` is set but its metadata could not be read (or lacks what is
    /// needed).
    #[error("discovery at ISSUER failed: {0}")]
    Discovery(#[from] DiscoveryError),
    /// The gRPC address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: ListenAddr,
        source: std::io::Error,
    },
    /// The admin address cannot be bound.
    #[error("cannot listen for the admin endpoint on {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The JWKS address cannot be bound.
    #[error("cannot listen for the JWKS on {addr}: {source}")]
    Jwks {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl StartError {
    /// The process exit code: `EX_CONFIG` (78) for configuration that cannot
    /// be used, 1 otherwise.
    pub fn exit_code(&self) -> std::process::ExitCode {
        match self {
            StartError::Config(_) | StartError::Shared(_) | StartError::Discovery(_) => {
                std::process::ExitCode::from(crate::cli::EXIT_CONFIG)
            }
            StartError::Listen { .. } | StartError::Admin { .. } | StartError::Jwks { .. } => {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

/// With `ISSUER` set, the configuration completed from the AS's metadata
/// (RFC 8414, then OpenID Discovery): the introspection endpoint unless
/// `INTROSPECTION_URL` is set, the JWKS unless `INTROSPECTION_JWKS_URL` is.
/// Explicit variables win. `None` when there is nothing to discover.
///
/// # Errors
///
/// When the metadata cannot be read: the plugin does not start half
/// configured.
pub async fn discovered(config: &Config) -> Result<Option<Config>, StartError> {
    let any_as = &config.introspection.any_as;
    let Some(issuer) = &any_as.issuer else {
        return Ok(None);
    };
    if !any_as.discover_introspection_url && any_as.jwks_url.is_some() {
        return Ok(None);
    }
    let http = introspect::http_client(&config.introspection)?;
    let metadata = discovery::discover(&http, issuer, config.introspection.timeout).await?;
    info!(issuer = %issuer, document = %metadata.source, "Read the authorization server's metadata");
    let mut config = config.clone();
    if any_as.discover_introspection_url {
        config.introspection.url = metadata.introspection_endpoint;
    }
    if config.introspection.any_as.jwks_url.is_none() {
        config.introspection.any_as.jwks_url = metadata.jwks_uri;
    }
    Ok(Some(config))
}

/// The plugin, bound and ready to serve.
pub struct App {
    listener: Listener,
    grpc_addr: ListenAddr,
    /// The AS's host, for the start-up log line.
    introspection_host: String,
    admin: Option<(TcpListener, SocketAddr, WriteAccess)>,
    /// The JWKS listener (`JWKS_ADDR`).
    jwks: Option<(TcpListener, SocketAddr)>,
    authz: Arc<Authorizer>,
    service: DispatchService,
    options: ServeOptions,
    /// Whether to run the start-up probe (see [`App::with_start_up_probe`]).
    probe: bool,
    /// The configuration as resolved by discovery, for the probe.
    resolved: Arc<Config>,
}

impl App {
    /// Builds every part from `config` and binds the gRPC address and, when
    /// configured, the admin address (port 0 binds an ephemeral port; the
    /// bound addresses are reported by [`App::grpc_addr`] and
    /// [`App::admin_addr`]).
    ///
    /// # Errors
    ///
    /// When a part cannot be built or an address cannot be bound.
    pub async fn bind(config: &Config) -> Result<App, StartError> {
        for name in &config.ignored {
            info!(variable = name, "Accepted for compatibility; has no effect");
        }
        if config.session.key_secret_is_client_secret {
            tracing::warn!(
                "SESSION_KEY_SECRET is not set: Tyk session keys are derived from the client secret, \
                 which the authorization server and anything on the way to it see; set a separate secret"
            );
        }
        let resolved = discovered(config).await?;
        let config = resolved.as_ref().unwrap_or(config);
        if let Some(note) = config.introspection.plain_http_note() {
            tracing::warn!("{note}");
        }
        let mut metrics = Metrics::new();
        // Built without connecting: a Redis that is down delays neither
        // start-up nor readiness; requests introspect on their own meanwhile.
        let fleet = match &config.shared {
            Some(shared) => {
                let fleet = Fleet::connect(shared)?;
                fleet.shared().stats().register(metrics.registry_mut());
                info!(prefix = %shared.options.key_prefix, "Shared cache in Redis on");
                Some(fleet)
            }
            None => None,
        };
        let mut authz = Authorizer::new(config, Arc::new(metrics))?;
        if let Some(fleet) = fleet {
            authz = authz.with_fleet(fleet);
        }
        let authz = Arc::new(authz);
        authz.listen_for_purges();
        let listener = server::bind(&config.listen).map_err(|source| StartError::Listen {
            addr: config.listen.clone(),
            source,
        })?;
        let grpc_addr = listener
            .local_addr()
            .unwrap_or_else(|_| config.listen.clone());
        let admin = match config.admin {
            Some(addr) => {
                let admin_listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Admin { addr, source })?;
                let bound = admin_listener.local_addr().unwrap_or(addr);
                let access = WriteAccess::new(addr, config.admin_token.as_ref());
                Some((admin_listener, bound, access))
            }
            None => None,
        };
        let jwks = match config.jwks_addr {
            Some(addr) => {
                let jwks_listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Jwks { addr, source })?;
                let bound = jwks_listener.local_addr().unwrap_or(addr);
                Some((jwks_listener, bound))
            }
            None => None,
        };
        let service = DispatchService::new(authz.clone(), config);
        let options = ServeOptions {
            max_message_bytes: config.grpc_max_message_bytes,
            shutdown_grace: config.shutdown_grace,
            serving: Serving::default(),
        };
        Ok(App {
            listener,
            grpc_addr,
            introspection_host: config
                .introspection
                .url
                .host_str()
                .unwrap_or_default()
                .to_owned(),
            admin,
            jwks,
            authz,
            service,
            options,
            probe: false,
            resolved: Arc::new(config.clone()),
        })
    }

    /// Has [`App::run`] check the authorization server's answer format
    /// against the configuration once the service is up, in the background,
    /// and log the finding in one line ([`crate::probe`]), unless
    /// `STARTUP_PROBE=false`. It never delays readiness and never stops the
    /// service. The binary turns it on; tests that count requests to the AS
    /// leave it off.
    #[must_use]
    pub fn with_start_up_probe(mut self) -> Self {
        self.probe = true;
        self
    }

    /// The gRPC address actually bound.
    pub fn grpc_addr(&self) -> &ListenAddr {
        &self.grpc_addr
    }

    /// The admin address actually bound, when there is an admin endpoint.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(_, addr, _)| *addr)
    }

    /// The JWKS listener's address actually bound, when there is one.
    pub fn jwks_addr(&self) -> Option<SocketAddr> {
        self.jwks.as_ref().map(|(_, addr)| *addr)
    }

    /// The decision core the service uses (for tools and tests that inspect
    /// its cache or metrics).
    pub fn authorizer(&self) -> &Arc<Authorizer> {
        &self.authz
    }

    /// Serves until `shutdown` resolves, then drains (see [`server::serve`]).
    /// The admin endpoint answers "not ready" during the drain; it and the
    /// JWKS listener stop after it.
    ///
    /// # Errors
    ///
    /// When the gRPC server fails.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        let App {
            listener,
            grpc_addr,
            introspection_host,
            admin,
            jwks,
            authz,
            service,
            options,
            probe,
            resolved,
        } = self;
        info!(
            addr = %grpc_addr,
            introspection.host = %introspection_host,
            "Listening for Tyk"
        );
        let http_done = CancellationToken::new();
        let mut http_tasks = Vec::new();
        if let Some((admin_listener, addr, access)) = admin {
            info!(addr = %addr, "Admin endpoint listening");
            if matches!(access, WriteAccess::Refused) {
                warn!(
                    addr = %addr,
                    "ADMIN_ADDR is not a loopback address and ADMIN_TOKEN is not set: \
                     POST /tokens/revoke is refused; set ADMIN_TOKEN to use it"
                );
            }
            let router = admin::router(options.serving.clone(), authz.clone(), access);
            let done = http_done.clone();
            http_tasks.push(tokio::spawn(admin::serve(
                admin_listener,
                router,
                async move { done.cancelled().await },
            )));
        }
        if let Some((jwks_listener, addr)) = jwks {
            info!(addr = %addr, "JWKS listening");
            let router = admin::jwks_router(options.serving.clone(), authz.clone());
            let done = http_done.clone();
            http_tasks.push(tokio::spawn(admin::serve(
                jwks_listener,
                router,
                async move { done.cancelled().await },
            )));
        }
        // Its own task: the service is serving while the AS is asked.
        let probe = (probe && resolved.introspection.startup_probe)
            .then(|| tokio::spawn(probe::at_start_up(resolved)));
        let result = server::serve(listener, service, options, shutdown).await;
        if let Some(probe) = probe {
            probe.abort();
        }
        http_done.cancel();
        for task in http_tasks {
            let _ = task.await;
        }
        result
    }
}
