//! The service's configuration: read once from the environment at start-up,
//! validated completely, and reported all at once when anything is wrong.
//!
//! Variable names follow Curity's Go plugin where one exists, so an existing
//! `.env` keeps working. No invalid value is ever replaced by a default: a typo
//! stops the service with a message naming the variable.
//!
//! # Layout
//!
//! - `vars`: the one list of variable names ([`ALL_VARIABLES`], `ENV_*`).
//! - `source`: where values come from ([`Source`], [`Environment`], [`MapSource`]).
//! - `reader`: reading one variable through its parser, collecting problems.
//! - `parse`: the parsers of single values.
//! - `redacted`: values whose output hides secrets ([`Secret`], [`ProxyUrl`]).
//! - One reader per section, each with its type and defaults:
//!   `introspection`, `transport`, `cache`, `challenge`, `session`,
//!   `identity`, `logging`, `shared` (the fleet's cache in Redis); `admin`
//!   (the admin endpoint's secret and the public JWKS listener) is read
//!   after `transport`.
//!
//! [`Config::from_source`] runs the section readers in that order over one
//! reader, so every problem is reported together, in the order of the
//! sections.

mod admin;
mod any_as;
mod cache;
mod challenge;
mod dpop;
mod identity;
mod introspection;
mod logging;
mod parse;
mod reader;
mod redacted;
mod session;
mod shared;
mod source;
mod transport;
mod vars;
mod verify_jwt;

use std::net::SocketAddr;
use std::time::Duration;

use crate::api_rules::IdentityRules;

pub use admin::MIN_ADMIN_TOKEN_CHARS;
pub use any_as::{AnyAsConfig, ClientAuthMethod, MintConfig};
pub use cache::{
    CacheConfig, DEFAULT_CACHE_DEFAULT_TTL_SECONDS, DEFAULT_CACHE_MAX_BYTES,
    DEFAULT_CLOCK_SKEW_SECONDS, DEFAULT_NEGATIVE_CACHE_SECONDS,
};
pub use challenge::{ChallengeConfig, DEFAULT_REALM, DEFAULT_RETRY_AFTER_SECONDS};
pub use dpop::{
    DEFAULT_DPOP_ALGS, DEFAULT_DPOP_IAT_WINDOW_SECONDS, DEFAULT_DPOP_REPLAY_CAPACITY, DpopConfig,
};
pub use introspection::{
    DEFAULT_BREAKER_FAILURES, DEFAULT_BREAKER_OPEN, DEFAULT_INFLIGHT_WAIT,
    DEFAULT_MAX_INFLIGHT_INTROSPECTIONS, DEFAULT_MAX_JWT_BYTES, DEFAULT_TIMEOUT,
    IntrospectionConfig,
};
pub use logging::LogFormat;
pub use redacted::{ProxyUrl, Secret, without_userinfo};
pub use session::{DEFAULT_SESSION_LIFETIME_GRACE_SECONDS, SessionConfig};
pub use shared::{DEFAULT_LOCK_WAIT, SharedConfig};
pub use source::{Environment, MapSource, Source};
pub use transport::{
    DEFAULT_GRPC_MAX_MESSAGE_BYTES, DEFAULT_MAX_TOKEN_BYTES, DEFAULT_PORT,
    DEFAULT_SHUTDOWN_GRACE_SECONDS, ListenAddr, parse_listen_addr,
};
pub use vars::*;
pub use verify_jwt::VerifyJwtConfig;

/// Every problem found in the configuration, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", .problems.join("; "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: ListenAddr,
    /// The admin endpoint (`/livez`, `/readyz`, `/metrics`, the write
    /// routes), if wanted.
    pub admin: Option<SocketAddr>,
    /// The bearer secret of the admin endpoint's write routes.
    pub admin_token: Option<Secret>,
    /// A listener serving only the minted JWTs' JWKS (and `/livez`).
    pub jwks_addr: Option<SocketAddr>,
    pub introspection: IntrospectionConfig,
    pub cache: CacheConfig,
    pub max_token_bytes: usize,
    pub challenge: ChallengeConfig,
    /// How DPoP proofs are checked.
    pub dpop: DpopConfig,
    pub session: SessionConfig,
    /// Global identity rules; an API's `config_data` may override them.
    pub identity: IdentityRules,
    pub grpc_max_message_bytes: usize,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    pub log_level: String,
    /// The fleet's shared cache in Redis, when `REDIS_URL` is set.
    pub shared: Option<SharedConfig>,
    /// Variables that are accepted for compatibility but change nothing.
    pub ignored: Vec<&'static str>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_source(&Environment)
    }

    /// Reads and validates every variable, section by section, collecting
    /// all problems.
    pub fn from_source(source: &dyn Source) -> Result<Config, ConfigError> {
        let mut r = reader::Reader::new(source);
        let introspection = introspection::read(&mut r);
        let transport = transport::read(&mut r);
        let admin_access = admin::read(&mut r, transport.as_ref().and_then(|t| t.admin));
        let cache = cache::read(&mut r);
        let challenge = challenge::read(&mut r);
        let dpop = dpop::read(&mut r);
        let client_secret = introspection.as_ref().map(|i| i.client_secret.as_ref());
        let session = session::read(&mut r, client_secret);
        let identity = identity::read(&mut r);
        let (log_format, log_level) = logging::read(&mut r);
        let shared = shared::read(&mut r);
        let ignored = r.finish()?;

        // A section is missing only when a problem was reported above.
        let (Some(mut introspection), Some(transport), Some(session)) =
            (introspection, transport, session)
        else {
            return Err(ConfigError {
                problems: vec![
                    "internal: a required value was neither read nor reported".to_owned(),
                ],
            });
        };
        let transport::Transport {
            listen,
            admin,
            max_token_bytes,
            grpc_max_message_bytes,
            shutdown_grace,
        } = transport;
        verify_jwt::with_clock_skew(&mut introspection.verify_jwt, cache.clock_skew);

        Ok(Config {
            listen,
            admin,
            admin_token: admin_access.token,
            jwks_addr: admin_access.jwks_addr,
            introspection,
            cache,
            max_token_bytes,
            challenge,
            dpop,
            session,
            identity,
            grpc_max_message_bytes,
            shutdown_grace,
            log_format,
            log_level,
            shared,
            ignored,
        })
    }
}

/// The global identity rules alone (the defaults every API's `config_data`
/// overrides), read exactly as [`Config::from_source`] reads them, for a
/// tool that needs them without the rest of the configuration (checking API
/// definitions needs no authorization server).
///
/// # Errors
///
/// Every problem in the identity variables.
pub fn identity_from_source(source: &dyn Source) -> Result<IdentityRules, ConfigError> {
    let mut r = reader::Reader::new(source);
    let identity = identity::read(&mut r);
    r.finish()?;
    Ok(identity)
}

#[cfg(test)]
mod tests;
