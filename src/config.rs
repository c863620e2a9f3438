//! The service's configuration: read once from the environment at start-up,
//! validated completely, and reported all at once when anything is wrong.
//!
//! Variable names follow Curity's Go plugin where one exists, so an existing
//! `.env` keeps working. No invalid value is ever replaced by a default: a typo
//! stops the service with a message naming the variable.

mod any_as;
mod parse;

pub use any_as::{AnyAsConfig, ClientAuthMethod, ENV_SIGNING_KEY_FILE, MintConfig};

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::policy::{self, IdentityRules};

pub const ENV_INTROSPECTION_URL: &str = "INTROSPECTION_URL";
pub const ENV_CLIENT_ID: &str = "CLIENT_ID";
pub const ENV_CLIENT_SECRET: &str = "CLIENT_SECRET";
pub const ENV_CLIENT_SECRET_FILE: &str = "CLIENT_SECRET_FILE";
pub const ENV_INTROSPECTION_CA_FILE: &str = "INTROSPECTION_CA_FILE";
pub const ENV_INTROSPECTION_CLIENT_CERT_FILE: &str = "INTROSPECTION_CLIENT_CERT_FILE";
pub const ENV_INTROSPECTION_CLIENT_KEY_FILE: &str = "INTROSPECTION_CLIENT_KEY_FILE";
pub const ENV_INTROSPECTION_ALLOW_HTTP: &str = "INTROSPECTION_ALLOW_HTTP";
pub const ENV_INTROSPECTION_PROXY: &str = "INTROSPECTION_PROXY";
pub const ENV_MAX_INFLIGHT_INTROSPECTIONS: &str = "MAX_INFLIGHT_INTROSPECTIONS";
pub const ENV_INFLIGHT_WAIT_SECONDS: &str = "INFLIGHT_WAIT_SECONDS";
pub const ENV_BREAKER_FAILURES: &str = "BREAKER_FAILURES";
pub const ENV_BREAKER_OPEN_SECONDS: &str = "BREAKER_OPEN_SECONDS";
pub const ENV_REVALIDATE_AFTER_SECONDS: &str = "REVALIDATE_AFTER_SECONDS";
pub const ENV_ADMIN_ADDR: &str = "ADMIN_ADDR";
pub const ENV_PORT: &str = "PORT";
pub const ENV_LISTEN_ADDR: &str = "LISTEN_ADDR";
pub const ENV_TIMEOUT_SECONDS: &str = "TIMEOUT_SECONDS";
pub const ENV_MAX_TOKEN_BYTES: &str = "MAX_TOKEN_BYTES";
pub const ENV_MAX_JWT_BYTES: &str = "MAX_JWT_BYTES";
pub const ENV_CACHE_MAX_BYTES: &str = "CACHE_MAX_BYTES";
pub const ENV_CACHE_MAX_ENTRIES: &str = "CACHE_MAX_ENTRIES";
pub const ENV_CACHE_JANITOR_SECONDS: &str = "CACHE_JANITOR_SECONDS";
pub const ENV_CACHE_MAX_TTL_SECONDS: &str = "CACHE_MAX_TTL_SECONDS";
pub const ENV_CACHE_DEFAULT_TTL_SECONDS: &str = "CACHE_DEFAULT_TTL_SECONDS";
pub const ENV_NEGATIVE_CACHE_SECONDS: &str = "NEGATIVE_CACHE_SECONDS";
pub const ENV_HONOR_CACHE_CONTROL_NO_STORE: &str = "HONOR_CACHE_CONTROL_NO_STORE";
pub const ENV_CLOCK_SKEW_SECONDS: &str = "CLOCK_SKEW_SECONDS";
pub const ENV_REALM: &str = "REALM";
pub const ENV_RETRY_AFTER_SECONDS: &str = "RETRY_AFTER_SECONDS";
pub const ENV_SESSION_RATE: &str = "SESSION_RATE";
pub const ENV_SESSION_RATE_PER_SECONDS: &str = "SESSION_RATE_PER_SECONDS";
pub const ENV_SESSION_QUOTA_MAX: &str = "SESSION_QUOTA_MAX";
pub const ENV_SESSION_QUOTA_RENEWAL_SECONDS: &str = "SESSION_QUOTA_RENEWAL_SECONDS";
pub const ENV_SESSION_LIFETIME_GRACE_SECONDS: &str = "SESSION_LIFETIME_GRACE_SECONDS";
pub const ENV_SESSION_KEY_SECRET: &str = "SESSION_KEY_SECRET";
pub const ENV_GRPC_MAX_MESSAGE_BYTES: &str = "GRPC_MAX_MESSAGE_BYTES";
pub const ENV_SHUTDOWN_GRACE_SECONDS: &str = "SHUTDOWN_GRACE_SECONDS";
pub const ENV_SESSION_KEY_CLAIM: &str = "SESSION_KEY_CLAIM";
pub const ENV_POLICY_CLAIM: &str = "POLICY_CLAIM";
pub const ENV_POLICY_MAP: &str = "POLICY_MAP";
pub const ENV_APPLY_POLICIES: &str = "APPLY_POLICIES";
pub const ENV_METADATA_CLAIMS: &str = "METADATA_CLAIMS";
pub const ENV_JWT_IN_METADATA: &str = "JWT_IN_METADATA";
pub const ENV_COMMA_SEPARATED_CLAIMS: &str = "COMMA_SEPARATED_CLAIMS";
pub const ENV_ANALYTICS_ALIAS_CLAIM: &str = "ANALYTICS_ALIAS_CLAIM";
pub const ENV_ANALYTICS_TAG_CLAIMS: &str = "ANALYTICS_TAG_CLAIMS";
pub const ENV_LOG_FORMAT: &str = "LOG_FORMAT";
pub const ENV_LOG_LEVEL: &str = "LOG_LEVEL";

/// Every variable the service reads (documented in `.env.example` and the
/// README; a test keeps them in step).
pub const ALL_VARIABLES: &[&str] = &[
    ENV_INTROSPECTION_URL,
    ENV_CLIENT_ID,
    ENV_CLIENT_SECRET,
    ENV_CLIENT_SECRET_FILE,
    ENV_INTROSPECTION_CA_FILE,
    ENV_INTROSPECTION_CLIENT_CERT_FILE,
    ENV_INTROSPECTION_CLIENT_KEY_FILE,
    ENV_INTROSPECTION_ALLOW_HTTP,
    ENV_INTROSPECTION_PROXY,
    ENV_MAX_INFLIGHT_INTROSPECTIONS,
    ENV_INFLIGHT_WAIT_SECONDS,
    ENV_BREAKER_FAILURES,
    ENV_BREAKER_OPEN_SECONDS,
    ENV_REVALIDATE_AFTER_SECONDS,
    ENV_ADMIN_ADDR,
    ENV_PORT,
    ENV_LISTEN_ADDR,
    ENV_TIMEOUT_SECONDS,
    ENV_MAX_TOKEN_BYTES,
    ENV_MAX_JWT_BYTES,
    ENV_CACHE_MAX_BYTES,
    ENV_CACHE_MAX_ENTRIES,
    ENV_CACHE_JANITOR_SECONDS,
    ENV_CACHE_MAX_TTL_SECONDS,
    ENV_CACHE_DEFAULT_TTL_SECONDS,
    ENV_NEGATIVE_CACHE_SECONDS,
    ENV_HONOR_CACHE_CONTROL_NO_STORE,
    ENV_CLOCK_SKEW_SECONDS,
    ENV_REALM,
    ENV_RETRY_AFTER_SECONDS,
    ENV_SESSION_RATE,
    ENV_SESSION_RATE_PER_SECONDS,
    ENV_SESSION_QUOTA_MAX,
    ENV_SESSION_QUOTA_RENEWAL_SECONDS,
    ENV_SESSION_LIFETIME_GRACE_SECONDS,
    ENV_SESSION_KEY_SECRET,
    ENV_SESSION_KEY_CLAIM,
    ENV_POLICY_CLAIM,
    ENV_POLICY_MAP,
    ENV_APPLY_POLICIES,
    ENV_METADATA_CLAIMS,
    ENV_JWT_IN_METADATA,
    ENV_COMMA_SEPARATED_CLAIMS,
    ENV_ANALYTICS_ALIAS_CLAIM,
    ENV_ANALYTICS_TAG_CLAIMS,
    ENV_GRPC_MAX_MESSAGE_BYTES,
    ENV_SHUTDOWN_GRACE_SECONDS,
    ENV_LOG_FORMAT,
    ENV_LOG_LEVEL,
    any_as::ENV_ISSUER,
    any_as::ENV_INTROSPECTION_ACCEPT,
    any_as::ENV_INTROSPECTION_JWT_FIELD,
    any_as::ENV_INTROSPECTION_JWKS_URL,
    any_as::ENV_INTROSPECTION_SIGNING_ALGS,
    any_as::ENV_SIGNING_KEY_FILE,
    any_as::ENV_MINTED_ISSUER,
    any_as::ENV_MINTED_AUDIENCE,
    any_as::ENV_MINTED_CLAIMS,
    any_as::ENV_MINTED_MAX_LIFETIME_SECONDS,
    any_as::ENV_CLIENT_AUTH_METHOD,
    any_as::ENV_CLIENT_ASSERTION_KEY_FILE,
];

/// Curity's plugin listens on this port; Tyk's examples dial it.
pub const DEFAULT_PORT: u16 = 50051;
/// Curity's default; Tyk sets no deadline on our call, so this bounds the wait.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2500);
/// Opaque tokens are tens of bytes; 4 KiB leaves room for any real one.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 4096;
/// JWTs with many claims reach several KiB; 64 KiB is far above any seen.
pub const DEFAULT_MAX_JWT_BYTES: usize = 64 * 1024;
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 64 << 20;
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 30;
/// A JWT without `exp` is cached only this long.
pub const DEFAULT_CACHE_DEFAULT_TTL_SECONDS: u64 = 30;
/// Inactive answers are remembered briefly, so a client retrying a dead token in
/// a loop does not turn each retry into an introspection.
pub const DEFAULT_NEGATIVE_CACHE_SECONDS: u64 = 5;
pub const DEFAULT_REALM: &str = "api";
pub const DEFAULT_RETRY_AFTER_SECONDS: u64 = 5;
/// Keeps Tyk's stored session a little past the token's expiry, never forever.
pub const DEFAULT_SESSION_LIFETIME_GRACE_SECONDS: u64 = 60;
/// A 16 MiB body crosses the reply twice (`body` and `raw_body`) plus headers.
pub const DEFAULT_GRPC_MAX_MESSAGE_BYTES: u64 = 64 << 20;
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 10;
/// Introspections in flight at once. Each waits on the AS, so this bounds the
/// load a flood of new tokens can put on it.
pub const DEFAULT_MAX_INFLIGHT_INTROSPECTIONS: usize = 64;
/// How long a miss may wait for an introspection slot before a 503.
pub const DEFAULT_INFLIGHT_WAIT: Duration = Duration::from_millis(100);
/// Consecutive connection failures or timeouts that open the breaker.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// How long the breaker stays open before letting one probe through.
pub const DEFAULT_BREAKER_OPEN: Duration = Duration::from_secs(2);

/// Where configuration values come from: the process environment in
/// production, a map in tests (tests never change the process environment).
pub trait Source {
    /// The raw value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
    /// The contents of a file named by a variable (used for `CLIENT_SECRET_FILE`).
    fn read_file(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// The process environment.
pub struct Environment;

impl Source for Environment {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl Source for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).map(|v| (*v).to_owned())
    }
}

/// A secret string: its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is sent or hashed, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A proxy URL (`http://` or `https://`, host and port, perhaps
/// `user:password@`). `Debug` and `Display` mask the credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(reqwest::Url);

impl ProxyUrl {
    /// The URL, credentials included: for building the client only.
    pub fn url(&self) -> &reqwest::Url {
        &self.0
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&without_userinfo(self.0.as_str()))
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

/// Every problem found in the configuration, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", .problems.join("; "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: ListenAddr,
    /// The admin endpoint (`/livez`, `/readyz`, `/metrics`), if wanted.
    pub admin: Option<SocketAddr>,
    pub introspection: IntrospectionConfig,
    pub cache: CacheConfig,
    pub max_token_bytes: usize,
    pub challenge: ChallengeConfig,
    pub session: SessionConfig,
    /// Global identity rules; an API's `config_data` may override them.
    pub identity: IdentityRules,
    pub grpc_max_message_bytes: usize,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Variables that are accepted for compatibility but change nothing.
    pub ignored: Vec<&'static str>,
}

#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    /// The introspection endpoint. When only `ISSUER` is set this is the
    /// issuer until discovery at start-up ([`crate::app::App::bind`])
    /// replaces it (see [`AnyAsConfig::discover_introspection_url`]).
    pub url: reqwest::Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub timeout: Duration,
    pub max_jwt_bytes: usize,
    pub ca_file: Option<PathBuf>,
    /// Certificate chain and key (PEM) for mutual TLS to the AS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// The proxy for introspection requests. `None`: straight to the AS,
    /// whatever `HTTP_PROXY`, `HTTPS_PROXY` or `ALL_PROXY` say (tokens and
    /// client credentials must not leave through a proxy set for other
    /// traffic).
    pub proxy: Option<ProxyUrl>,
    pub max_inflight: usize,
    pub inflight_wait: Duration,
    pub breaker_failures: u32,
    pub breaker_open: Duration,
    /// Answer formats, minting, discovery and client authentication.
    pub any_as: AnyAsConfig,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub max_bytes: u64,
    /// `None`: bounded by bytes only.
    pub max_entries: Option<u64>,
    pub clock_skew: Duration,
    /// `None`: no cap beyond the JWT's `exp` and the AS's `max-age`.
    pub max_ttl: Option<Duration>,
    pub default_ttl: Duration,
    pub negative_ttl: Duration,
    /// Let the AS's `Cache-Control: no-store` / `no-cache` (and `Pragma:
    /// no-cache`) keep its answers out of the token cache. Off by default:
    /// most servers send them on every response, meaning HTTP caches between
    /// the two parties, not the gateway's token cache.
    pub honor_no_store: bool,
    /// Re-introspect cached tokens older than this in the background, so a
    /// revocation takes effect within it.
    pub revalidate_after: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct ChallengeConfig {
    pub realm: String,
    pub retry_after_seconds: u64,
}

/// What goes into the Tyk session of an allowed request.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Requests per `per` seconds; 0 = unlimited.
    pub rate: f64,
    pub per: f64,
    /// Requests per quota period; -1 = unlimited.
    pub quota_max: i64,
    pub quota_renewal_seconds: i64,
    pub lifetime_grace_seconds: u64,
    /// Key of the HMAC that turns a token digest into Tyk's session key.
    pub key_secret: Secret,
    /// `SESSION_KEY_SECRET` is not set, so `key_secret` is the client
    /// secret: the authorization server, and anything that sees the
    /// introspection requests, knows it. Warned about at start-up.
    pub key_secret_is_client_secret: bool,
}

/// Reads a listen address as `LISTEN_ADDR` does (`host:port` or
/// `unix:///path`).
///
/// # Errors
///
/// What is wrong with it.
pub fn parse_listen_addr(raw: &str) -> Result<ListenAddr, String> {
    parse::listen_addr(raw.trim())
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_source(&Environment)
    }

    /// Reads and validates every variable, collecting all problems.
    pub fn from_source(source: &dyn Source) -> Result<Config, ConfigError> {
        let mut r = Reader {
            source,
            problems: Vec::new(),
        };

        let url = if r.raw(ENV_INTROSPECTION_URL).is_none() && r.raw(any_as::ENV_ISSUER).is_some() {
            // Discovered at start-up; the issuer stands in until then.
            r.optional(any_as::ENV_ISSUER, parse::introspection_url)
        } else {
            r.required(ENV_INTROSPECTION_URL, parse::introspection_url)
        };
        let has_introspection_url = r.raw(ENV_INTROSPECTION_URL).is_some();
        let client_id = r.required(ENV_CLIENT_ID, |v| Ok::<_, String>(v.to_owned()));
        let client_secret = r.client_secret();
        let ca_file = r.optional(ENV_INTROSPECTION_CA_FILE, |v| {
            Ok::<_, String>(PathBuf::from(v))
        });
        let client_identity = r.client_identity();
        let allow_http = r
            .optional(ENV_INTROSPECTION_ALLOW_HTTP, parse::boolean)
            .unwrap_or(false);
        let proxy = r
            .optional(ENV_INTROSPECTION_PROXY, parse::proxy_url)
            .map(ProxyUrl);
        if has_introspection_url
            && let Some(url) = &url
            && url.scheme() == "http"
            && !allow_http
        {
            r.problems.push(format!(
                    "{ENV_INTROSPECTION_URL} uses http://, which would send tokens and client credentials in clear; \
                     use https:// or set {ENV_INTROSPECTION_ALLOW_HTTP}=true"
                ));
        }
        let max_inflight = r
            .optional(ENV_MAX_INFLIGHT_INTROSPECTIONS, |v| {
                parse::integer::<usize>(v, 1, 100_000)
            })
            .unwrap_or(DEFAULT_MAX_INFLIGHT_INTROSPECTIONS);
        let inflight_wait = r
            .optional(ENV_INFLIGHT_WAIT_SECONDS, parse::fractional_seconds)
            .unwrap_or(DEFAULT_INFLIGHT_WAIT);
        let breaker_failures = r
            .optional(ENV_BREAKER_FAILURES, |v| {
                parse::integer::<u32>(v, 1, 10_000)
            })
            .unwrap_or(DEFAULT_BREAKER_FAILURES);
        let breaker_open = r
            .optional(ENV_BREAKER_OPEN_SECONDS, parse::fractional_seconds)
            .unwrap_or(DEFAULT_BREAKER_OPEN);
        let revalidate_after = r.optional(ENV_REVALIDATE_AFTER_SECONDS, |v| {
            parse::seconds(v).and_then(|n| in_range(n, 1, 86_400))
        });
        let admin = r.optional(ENV_ADMIN_ADDR, |v| {
            v.parse::<SocketAddr>()
                .map_err(|_| "expected an address such as 127.0.0.1:9090".to_owned())
        });
        let timeout = r
            .optional(ENV_TIMEOUT_SECONDS, parse::fractional_seconds)
            .unwrap_or(DEFAULT_TIMEOUT);
        let max_jwt_bytes = r
            .optional(ENV_MAX_JWT_BYTES, |v| {
                parse::byte_size(v).and_then(|n| in_range(n, 256, 16 << 20))
            })
            .map_or(DEFAULT_MAX_JWT_BYTES, |n| n as usize);
        let max_token_bytes = r
            .optional(ENV_MAX_TOKEN_BYTES, |v| {
                parse::integer::<usize>(v, 1, 1 << 20)
            })
            .unwrap_or(DEFAULT_MAX_TOKEN_BYTES);

        let listen = r.listen();

        let max_bytes = r
            .optional(ENV_CACHE_MAX_BYTES, |v| {
                parse::byte_size(v).and_then(|n| in_range(n, 64 * 1024, 1 << 40))
            })
            .unwrap_or(DEFAULT_CACHE_MAX_BYTES);
        // Curity's plugin reads 0 as "no entry limit"; so do we.
        let max_entries = r
            .optional(ENV_CACHE_MAX_ENTRIES, |v| {
                parse::integer::<u64>(v, 0, u64::MAX)
            })
            .filter(|n| *n > 0);
        let janitor = r.optional(ENV_CACHE_JANITOR_SECONDS, parse::seconds);
        let clock_skew = r
            .optional(ENV_CLOCK_SKEW_SECONDS, |v| {
                parse::seconds(v).and_then(|n| in_range(n, 0, 3600))
            })
            .unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS);
        let max_ttl = r.optional(ENV_CACHE_MAX_TTL_SECONDS, parse::seconds);
        let default_ttl = r
            .optional(ENV_CACHE_DEFAULT_TTL_SECONDS, parse::seconds)
            .unwrap_or(DEFAULT_CACHE_DEFAULT_TTL_SECONDS);
        let negative_ttl = r
            .optional(ENV_NEGATIVE_CACHE_SECONDS, |v| {
                parse::seconds(v).and_then(|n| in_range(n, 0, 3600))
            })
            .unwrap_or(DEFAULT_NEGATIVE_CACHE_SECONDS);
        let honor_no_store = r
            .optional(ENV_HONOR_CACHE_CONTROL_NO_STORE, parse::boolean)
            .unwrap_or(false);

        let realm = r
            .optional(ENV_REALM, parse::realm)
            .unwrap_or_else(|| DEFAULT_REALM.to_owned());
        let retry_after_seconds = r
            .optional(ENV_RETRY_AFTER_SECONDS, |v| {
                parse::integer::<u64>(v, 1, 3600)
            })
            .unwrap_or(DEFAULT_RETRY_AFTER_SECONDS);

        let session = r.session(client_secret.clone());
        let identity = r.identity();

        let grpc_max_message_bytes =
            r.optional(ENV_GRPC_MAX_MESSAGE_BYTES, |v| {
                parse::byte_size(v).and_then(|n| in_range(n, 4 << 20, 2047 << 20))
            })
            .unwrap_or(DEFAULT_GRPC_MAX_MESSAGE_BYTES) as usize;
        let shutdown_grace = r
            .optional(ENV_SHUTDOWN_GRACE_SECONDS, |v| {
                parse::seconds(v).and_then(|n| in_range(n, 0, 600))
            })
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECONDS);
        let log_format = r
            .optional(ENV_LOG_FORMAT, |v| match v.to_ascii_lowercase().as_str() {
                "text" | "plain" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err("expected text or json".to_owned()),
            })
            .unwrap_or(LogFormat::Text);
        let log_level = r
            .optional(ENV_LOG_LEVEL, |v| {
                tracing_subscriber::EnvFilter::try_new(v)
                    .map(|_| v.to_owned())
                    .map_err(|_| {
                        "expected a level (error, warn, info, debug, trace) or filter directives"
                            .to_owned()
                    })
            })
            .unwrap_or_else(|| "info".to_owned());

        let any_as = any_as::read(source, allow_http, has_introspection_url)
            .map_err(|problems| r.problems.extend(problems))
            .ok();

        let mut ignored = Vec::new();
        if janitor.is_some() {
            ignored.push(ENV_CACHE_JANITOR_SECONDS);
        }

        if !r.problems.is_empty() {
            return Err(ConfigError {
                problems: r.problems,
            });
        }
        // Every required value was reported above if missing, so these hold.
        let (
            Some(url),
            Some(client_id),
            Some(client_secret),
            Some(listen),
            Some(session),
            Some(any_as),
        ) = (url, client_id, client_secret, listen, session, any_as)
        else {
            return Err(ConfigError {
                problems: vec![
                    "internal: a required value was neither read nor reported".to_owned(),
                ],
            });
        };

        Ok(Config {
            listen,
            admin,
            introspection: IntrospectionConfig {
                url,
                client_id,
                client_secret,
                timeout,
                max_jwt_bytes,
                ca_file,
                client_identity,
                proxy,
                max_inflight,
                inflight_wait,
                breaker_failures,
                breaker_open,
                any_as,
            },
            cache: CacheConfig {
                max_bytes,
                max_entries,
                clock_skew: Duration::from_secs(clock_skew),
                max_ttl: max_ttl.map(Duration::from_secs),
                default_ttl: Duration::from_secs(default_ttl),
                negative_ttl: Duration::from_secs(negative_ttl),
                honor_no_store,
                revalidate_after: revalidate_after.map(Duration::from_secs),
            },
            max_token_bytes,
            challenge: ChallengeConfig {
                realm,
                retry_after_seconds,
            },
            session,
            identity,
            grpc_max_message_bytes,
            shutdown_grace: Duration::from_secs(shutdown_grace),
            log_format,
            log_level,
            ignored,
        })
    }
}

/// A value as shown in an error message: a URL's `user:password@` is masked,
/// since messages reach logs.
fn without_userinfo(raw: &str) -> String {
    if let Some(scheme_end) = raw.find("://") {
        let rest = &raw[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{}://***@{}", &raw[..scheme_end], &rest[at + 1..]);
        }
    }
    raw.to_owned()
}

fn in_range(n: u64, min: u64, max: u64) -> Result<u64, String> {
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(format!("expected a value from {min} to {max}"))
    }
}

struct Reader<'a> {
    source: &'a dyn Source,
    problems: Vec<String>,
}

impl Reader<'_> {
    /// The value of `name`, with empty values read as unset (compose writes
    /// `NAME=` for variables left blank in `.env`).
    fn raw(&self, name: &str) -> Option<String> {
        self.source.get(name).filter(|v| !v.trim().is_empty())
    }

    fn optional<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.raw(name)?;
        match parse(raw.trim()) {
            Ok(v) => Some(v),
            Err(why) => {
                self.problems
                    .push(format!("{name}={:?}: {why}", without_userinfo(&raw)));
                None
            }
        }
    }

    fn required<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        if self.raw(name).is_none() {
            self.problems.push(format!("{name} is required"));
            return None;
        }
        self.optional(name, parse)
    }

    /// `CLIENT_SECRET`, or the contents of `CLIENT_SECRET_FILE` (a container
    /// secret), but not both. Secret values never appear in messages.
    fn client_secret(&mut self) -> Option<Secret> {
        match (
            self.raw(ENV_CLIENT_SECRET),
            self.raw(ENV_CLIENT_SECRET_FILE),
        ) {
            (Some(_), Some(_)) => {
                self.problems.push(format!(
                    "{ENV_CLIENT_SECRET} and {ENV_CLIENT_SECRET_FILE} are both set; set only one"
                ));
                None
            }
            (Some(secret), None) => Some(Secret::new(secret)),
            (None, Some(path)) => match self.source.read_file(path.trim()) {
                Ok(contents) => {
                    let secret = contents.trim_end_matches(['\n', '\r']);
                    if secret.is_empty() {
                        self.problems.push(format!(
                            "{ENV_CLIENT_SECRET_FILE}={path:?}: the file is empty"
                        ));
                        None
                    } else {
                        Some(Secret::new(secret))
                    }
                }
                Err(e) => {
                    self.problems.push(format!(
                        "{ENV_CLIENT_SECRET_FILE}={path:?}: cannot read the file ({e})"
                    ));
                    None
                }
            },
            (None, None) => {
                self.problems.push(format!(
                    "{ENV_CLIENT_SECRET} (or {ENV_CLIENT_SECRET_FILE}) is required"
                ));
                None
            }
        }
    }

    /// `INTROSPECTION_CLIENT_CERT_FILE` and `INTROSPECTION_CLIENT_KEY_FILE`,
    /// both or neither.
    fn client_identity(&mut self) -> Option<(PathBuf, PathBuf)> {
        match (
            self.raw(ENV_INTROSPECTION_CLIENT_CERT_FILE),
            self.raw(ENV_INTROSPECTION_CLIENT_KEY_FILE),
        ) {
            (Some(cert), Some(key)) => Some((cert.trim().into(), key.trim().into())),
            (None, None) => None,
            _ => {
                self.problems.push(format!(
                    "{ENV_INTROSPECTION_CLIENT_CERT_FILE} and {ENV_INTROSPECTION_CLIENT_KEY_FILE} go together; set both or neither"
                ));
                None
            }
        }
    }

    /// `LISTEN_ADDR`, or all interfaces on `PORT` (Curity's variable).
    fn listen(&mut self) -> Option<ListenAddr> {
        let port = self.optional(ENV_PORT, parse::port);
        let addr = self.optional(ENV_LISTEN_ADDR, parse::listen_addr);
        match (
            self.raw(ENV_PORT).is_some(),
            self.raw(ENV_LISTEN_ADDR).is_some(),
        ) {
            (true, true) => {
                self.problems.push(format!(
                    "{ENV_PORT} and {ENV_LISTEN_ADDR} are both set; set only one"
                ));
                None
            }
            (false, true) => addr,
            (true, false) => port.map(all_interfaces).map(ListenAddr::Tcp),
            (false, false) => Some(ListenAddr::Tcp(all_interfaces(DEFAULT_PORT))),
        }
    }

    fn session(&mut self, client_secret: Option<Secret>) -> Option<SessionConfig> {
        let rate = self.optional(ENV_SESSION_RATE, parse::non_negative_number);
        let per = self.optional(ENV_SESSION_RATE_PER_SECONDS, parse::non_negative_number);
        let quota_max = self.optional(ENV_SESSION_QUOTA_MAX, |v| {
            parse::integer::<i64>(v, -1, i64::MAX)
        });
        let renewal = self.optional(ENV_SESSION_QUOTA_RENEWAL_SECONDS, |v| {
            parse::integer::<i64>(v, 1, i64::MAX)
        });
        let grace = self
            .optional(ENV_SESSION_LIFETIME_GRACE_SECONDS, parse::seconds)
            .unwrap_or(DEFAULT_SESSION_LIFETIME_GRACE_SECONDS);
        let own_key_secret = self.raw(ENV_SESSION_KEY_SECRET).map(Secret::new);
        let key_secret_is_client_secret = own_key_secret.is_none();
        let key_secret = own_key_secret.or(client_secret);

        if rate.is_some_and(|r| r > 0.0) && per.is_none_or(|p| p <= 0.0) {
            self.problems.push(format!(
                "{ENV_SESSION_RATE} needs {ENV_SESSION_RATE_PER_SECONDS} greater than 0"
            ));
        }
        if quota_max.is_some_and(|q| q > 0) && renewal.is_none() {
            self.problems.push(format!(
                "{ENV_SESSION_QUOTA_MAX} needs {ENV_SESSION_QUOTA_RENEWAL_SECONDS}"
            ));
        }
        Some(SessionConfig {
            rate: rate.unwrap_or(0.0),
            per: per.unwrap_or(0.0),
            quota_max: match quota_max {
                Some(q) if q > 0 => q,
                _ => -1,
            },
            quota_renewal_seconds: renewal.unwrap_or(0),
            lifetime_grace_seconds: grace,
            key_secret: key_secret?,
            key_secret_is_client_secret,
        })
    }
}

impl Reader<'_> {
    /// The global identity rules (see [`IdentityRules`]).
    fn identity(&mut self) -> IdentityRules {
        let claim = |v: &str| policy::optional_claim(v);
        let rules = IdentityRules {
            session_key_claim: self.optional(ENV_SESSION_KEY_CLAIM, claim).flatten(),
            policy_claim: self.optional(ENV_POLICY_CLAIM, claim).flatten(),
            policy_map: self.optional(ENV_POLICY_MAP, policy::env::policy_map),
            apply_policies: self
                .optional(ENV_APPLY_POLICIES, policy::env::policy_ids)
                .unwrap_or_default(),
            metadata_claims: self
                .optional(ENV_METADATA_CLAIMS, policy::env::metadata_claims)
                .unwrap_or_default(),
            jwt_in_metadata: self
                .optional(ENV_JWT_IN_METADATA, parse::boolean)
                .unwrap_or(false),
            comma_separated_claims: self
                .optional(ENV_COMMA_SEPARATED_CLAIMS, policy::env::claim_names)
                .unwrap_or_default(),
            analytics_alias_claim: self.optional(ENV_ANALYTICS_ALIAS_CLAIM, claim).flatten(),
            analytics_tag_claims: self
                .optional(ENV_ANALYTICS_TAG_CLAIMS, policy::env::claim_names)
                .unwrap_or_default(),
        };
        if rules.policy_map.is_some() && rules.policy_claim.is_none() {
            self.problems
                .push(format!("{ENV_POLICY_MAP} needs {ENV_POLICY_CLAIM}"));
        }
        rules
    }
}

/// All interfaces, IPv6 and IPv4 alike where the host allows (see `server::bind`).
fn all_interfaces(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))
}

#[cfg(test)]
mod tests;

/// Where the plugin listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    /// A Unix socket path (Tyk: `coprocess_grpc_server: unix:///path`).
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}
