//! What the shared cache needs to know, as a plain struct, and the one URL
//! that says where Redis is.
//!
//! # URL forms
//!
//! | form | meaning |
//! |---|---|
//! | `redis://[user[:password]@]host[:port][/db]` | one Redis server (port 6379) |
//! | `rediss://…` | the same over TLS |
//! | `redis+sentinel://[user[:password]@]host[:port][,host[:port]…]/master[/db]` | the master `master` as told by these Sentinels (port 26379) |
//! | `rediss+sentinel://…` | the same, TLS to the Sentinels and to the master |
//! | `redis+cluster://[user[:password]@]host[:port][,host[:port]…]` | a Redis Cluster, from these seed nodes (port 6379) |
//! | `rediss+cluster://…` | the same over TLS |
//!
//! User name and password are percent-encoded, as in any URL. They are the
//! data nodes' credentials; Sentinels that require their own take
//! [`SharedCacheOptions::sentinel_password`] (and `sentinel_username`).
//! URL fragments are refused: `#insecure` would turn off certificate checks.
//!
//! For TLS, [`TlsFiles`] names a CA bundle (PEM; when set, only it is trusted
//! instead of the system's roots) and, for mutual TLS, a client certificate
//! chain and key (PEM, both or neither).
//!
//! The integrator is expected to fill these from `REDIS_URL` (the cache is
//! off without it), `REDIS_KEY_PREFIX`, `REDIS_TLS_CA_FILE`,
//! `REDIS_TLS_CERT_FILE`, `REDIS_TLS_KEY_FILE`, `REDIS_SENTINEL_USERNAME`,
//! `REDIS_SENTINEL_PASSWORD` and `REDIS_TIMEOUT`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

/// Default prefix of every key and channel the shared cache uses.
pub const DEFAULT_KEY_PREFIX: &str = "phantom-token:fleet:";
/// Default bound on each Redis call: well under an introspection, so a slow
/// Redis costs a request little before it introspects on its own.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(75);
/// Default bound on establishing a connection (done in the background; no
/// request waits for it longer than the call timeout).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Default life of the fleet-wide lock: longer than an introspection may
/// take, so it outlives its holder's work, and short, so a crashed holder
/// blocks nobody for long.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(5);
/// Default pause between looks while waiting for another replica's entry.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Default consecutive failures that open the breaker.
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 3;
/// Default time the breaker stays open before one probe.
pub const DEFAULT_BREAKER_OPEN_FOR: Duration = Duration::from_secs(2);

/// A secret kept out of `Debug`.
#[derive(Clone, Default)]
pub struct Redacted(pub String);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// PEM files for TLS to Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }
}

/// Everything [`super::SharedCache::connect`] needs.
#[derive(Debug, Clone)]
pub struct SharedCacheOptions {
    /// Where Redis is (see the module docs for the forms). Redacted in
    /// `Debug`: it may carry a password.
    pub url: Redacted,
    /// The server secret keying the token digests that name entries, and
    /// taking part in every sealing key: with the token, needed to open or
    /// write an entry (neither suffices alone).
    pub secret: Redacted,
    /// Prefix of every key and of the purge channel; lets deployments share
    /// one Redis. May not contain `{` or `}` (the hash tag must be ours).
    pub key_prefix: String,
    pub tls: TlsFiles,
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<Redacted>,
    /// Bound on every Redis call, connection included.
    pub op_timeout: Duration,
    /// Bound on each background connection attempt.
    pub connect_timeout: Duration,
    pub lock_ttl: Duration,
    pub poll_interval: Duration,
    pub breaker_threshold: u32,
    pub breaker_open_for: Duration,
}

impl SharedCacheOptions {
    /// Options for `url` and `secret`, with every other value at its default.
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        SharedCacheOptions {
            url: Redacted(url.into()),
            secret: Redacted(secret.into()),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            tls: TlsFiles::default(),
            sentinel_username: None,
            sentinel_password: None,
            op_timeout: DEFAULT_OP_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            lock_ttl: DEFAULT_LOCK_TTL,
            poll_interval: DEFAULT_POLL_INTERVAL,
            breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
            breaker_open_for: DEFAULT_BREAKER_OPEN_FOR,
        }
    }

    /// Checks everything that can be checked without touching the network
    /// or the files, so configuration errors are reported at start-up.
    ///
    /// # Errors
    ///
    /// [`OptionsError`] names the first problem; never the URL itself.
    pub fn validate(&self) -> Result<RedisTarget, OptionsError> {
        if self.key_prefix.contains(['{', '}']) {
            return Err(OptionsError::PrefixWithBraces);
        }
        if self.secret.0.is_empty() {
            return Err(OptionsError::EmptySecret);
        }
        if self.op_timeout.is_zero() {
            return Err(OptionsError::ZeroTimeout);
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(OptionsError::HalfClientCert);
        }
        let target = RedisTarget::parse(&self.url.0)?;
        if !self.tls.is_empty() && !target.tls() {
            return Err(OptionsError::TlsFilesWithoutTls);
        }
        Ok(target)
    }
}

/// Why the options cannot work. Never shows the URL (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error(
        "unknown Redis URL scheme {0:?} (expected redis, rediss, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster)"
    )]
    UnknownScheme(String),
    #[error("the Redis URL is malformed: {0}")]
    Malformed(&'static str),
    #[error("the Redis URL may not have a fragment (#insecure would disable certificate checks)")]
    Fragment,
    #[error(
        "a Sentinel URL must name the master after the hosts: redis+sentinel://host:26379/mymaster"
    )]
    MissingMaster,
    #[error("a Cluster URL takes no database or path")]
    ClusterPath,
    #[error("the Redis key prefix may not contain {{ or }}")]
    PrefixWithBraces,
    #[error("the shared cache needs a non-empty secret")]
    EmptySecret,
    #[error("the Redis call timeout must be above zero")]
    ZeroTimeout,
    #[error("a Redis client certificate needs its key, and a key its certificate")]
    HalfClientCert,
    #[error("Redis TLS files are set but the URL is not rediss://")]
    TlsFilesWithoutTls,
}

/// Where Redis is: parsed from the URL, credentials decoded.
#[derive(Clone)]
pub enum RedisTarget {
    Single(ConnectionInfo),
    Sentinel {
        sentinels: Vec<ConnectionAddr>,
        master: String,
        /// Credentials and database for the master.
        redis: RedisConnectionInfo,
        tls: bool,
    },
    Cluster {
        nodes: Vec<ConnectionInfo>,
        tls: bool,
    },
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisTarget::Single(info) => write!(f, "Single({})", info.addr()),
            RedisTarget::Sentinel {
                sentinels, master, ..
            } => {
                let hosts: Vec<String> = sentinels.iter().map(ToString::to_string).collect();
                write!(f, "Sentinel({} via {})", master, hosts.join(","))
            }
            RedisTarget::Cluster { nodes, .. } => {
                let hosts: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
                write!(f, "Cluster({})", hosts.join(","))
            }
        }
    }
}

const SENTINEL_PORT: u16 = 26379;

impl RedisTarget {
    /// Parses one of the URL forms in the module docs.
    ///
    /// # Errors
    ///
    /// [`OptionsError`] for an unknown scheme or a malformed URL.
    pub fn parse(url: &str) -> Result<Self, OptionsError> {
        if url.contains('#') {
            return Err(OptionsError::Fragment);
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or(OptionsError::Malformed("no scheme"))?;
        let (base, kind) = match scheme.split_once('+') {
            None => (scheme, None),
            Some((base, kind)) => (base, Some(kind)),
        };
        let tls = match base {
            "redis" => false,
            "rediss" => true,
            _ => return Err(OptionsError::UnknownScheme(scheme.to_owned())),
        };
        match kind {
            None => Ok(RedisTarget::Single(node_info(base, None, rest)?)),
            Some("sentinel") => parse_sentinel(base, rest, tls),
            Some("cluster") => parse_cluster(base, rest, tls),
            Some(_) => Err(OptionsError::UnknownScheme(scheme.to_owned())),
        }
    }

    /// Whether connections use TLS.
    pub fn tls(&self) -> bool {
        match self {
            RedisTarget::Single(info) => matches!(info.addr(), ConnectionAddr::TcpTls { .. }),
            RedisTarget::Sentinel { tls, .. } | RedisTarget::Cluster { tls, .. } => *tls,
        }
    }
}

/// Splits `[userinfo@]host[,host…][/path]`.
fn split_hosts(rest: &str) -> Result<(Option<&str>, Vec<&str>, &str), OptionsError> {
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if path.starts_with('?') || path.contains('?') {
        return Err(OptionsError::Malformed(
            "query parameters are not supported",
        ));
    }
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (Some(user), hosts),
        None => (None, authority),
    };
    let hosts: Vec<&str> = hosts.split(',').collect();
    if hosts.iter().any(|h| h.is_empty()) {
        return Err(OptionsError::Malformed("empty host in the host list"));
    }
    Ok((userinfo, hosts, path.trim_start_matches('/')))
}

/// Whether `host` carries a port (`host:port`, `[v6]:port`).
fn has_port(host: &str) -> bool {
    match host.rfind(']') {
        Some(end) => host[end..].contains(':'),
        None => host.contains(':'),
    }
}

/// Lets the redis crate parse one node's URL (it percent-decodes the
/// credentials and checks host, port and database).
fn node_info(
    base: &str,
    userinfo: Option<&str>,
    rest: &str,
) -> Result<ConnectionInfo, OptionsError> {
    let url = match userinfo {
        Some(user) => format!("{base}://{user}@{rest}"),
        None => format!("{base}://{rest}"),
    };
    url.as_str()
        .into_connection_info()
        .map_err(|_| OptionsError::Malformed("host, port, credentials or database not understood"))
}

fn parse_sentinel(base: &str, rest: &str, tls: bool) -> Result<RedisTarget, OptionsError> {
    let (userinfo, hosts, path) = split_hosts(rest)?;
    let (master, db) = match path.split_once('/') {
        Some((master, db)) => (master, db),
        None => (path, ""),
    };
    if master.is_empty() {
        return Err(OptionsError::MissingMaster);
    }
    let mut sentinels = Vec::with_capacity(hosts.len());
    for host in &hosts {
        let host = if has_port(host) {
            (*host).to_owned()
        } else {
            format!("{host}:{SENTINEL_PORT}")
        };
        sentinels.push(node_info(base, None, &host)?.addr().clone());
    }
    // The credentials and database, checked and decoded the same way.
    let first = hosts.first().ok_or(OptionsError::Malformed("no host"))?;
    let redis = node_info(base, userinfo, &format!("{first}/{db}"))?
        .redis_settings()
        .clone();
    Ok(RedisTarget::Sentinel {
        sentinels,
        master: master.to_owned(),
        redis,
        tls,
    })
}

fn parse_cluster(base: &str, rest: &str, tls: bool) -> Result<RedisTarget, OptionsError> {
    let (userinfo, hosts, path) = split_hosts(rest)?;
    if !path.is_empty() {
        return Err(OptionsError::ClusterPath);
    }
    let nodes = hosts
        .iter()
        .map(|host| node_info(base, userinfo, host))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RedisTarget::Cluster { nodes, tls })
}

#[cfg(test)]
mod tests;
