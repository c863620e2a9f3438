//! Connections to Redis in its three forms, all built without touching the
//! network: connections are made in the background and on first use, so a
//! Redis that is down at start-up delays nothing.
//!
//! - One server: redis-rs's `ConnectionManager`, a multiplexed connection
//!   that reconnects on its own after an I/O error, replaced after any other
//!   error (see [`Backend::failed`]).
//! - Sentinel: the master is asked of the Sentinels on first use and again
//!   after any failure (the master may have moved), then used through a
//!   `ConnectionManager`.
//! - Cluster: redis-rs's async cluster connection, which follows the slot
//!   map and reconnects to nodes itself.

use std::sync::Mutex;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    Client, ClientTlsConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult,
    TlsCertificates, TlsMode, Value,
};

use super::SharedCacheError;
use super::options::{RedisTarget, SharedCacheOptions, TlsFiles};

/// One connection to whichever form Redis takes; cheap to clone.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where a server-mode connection's client comes from.
enum Source {
    Fixed(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// One server, directly or as the master the Sentinels name.
struct Server {
    source: Source,
    /// The client and connection in use, until a failure replaces them.
    current: Mutex<Option<(Client, ConnectionManager)>>,
    config: ConnectionManagerConfig,
}

enum Kind {
    /// Boxed: far larger than the other variant.
    Server(Box<Server>),
    Cluster {
        conn: ClusterConnection,
        /// One client per seed node, for the purge subscription (a PUBLISH
        /// in a cluster reaches every node's subscribers).
        nodes: Vec<Client>,
    },
}

pub(crate) struct Backend {
    kind: Kind,
}

fn client_error(e: RedisError) -> SharedCacheError {
    SharedCacheError::Client(e.to_string())
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, SharedCacheError> {
    std::fs::read(path).map_err(|e| SharedCacheError::TlsFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads the PEM files named in `files`; `None` when none is set.
fn load_tls(files: &TlsFiles) -> Result<Option<TlsCertificates>, SharedCacheError> {
    let root_cert = files.ca_file.as_deref().map(read).transpose()?;
    let client_tls = match (&files.cert_file, &files.key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        _ => None,
    };
    if root_cert.is_none() && client_tls.is_none() {
        return Ok(None);
    }
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

impl Backend {
    /// Builds the clients; no connection is made yet. Must be called within
    /// a Tokio runtime (redis-rs spawns its connection tasks on it).
    pub(crate) fn new(
        target: RedisTarget,
        options: &SharedCacheOptions,
    ) -> Result<Self, SharedCacheError> {
        let certs = load_tls(&options.tls)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.op_timeout))
            // Reconnection is retried by the next call (and the breaker
            // spaces those out), so one quick retry is enough here.
            .set_number_of_retries(1)
            .set_min_delay(std::time::Duration::from_millis(20))
            .set_max_delay(std::time::Duration::from_millis(500));
        let kind = match target {
            RedisTarget::Single(info) => {
                let client = match certs {
                    Some(certs) => Client::build_with_tls(info, certs),
                    None => Client::open(info),
                }
                .map_err(client_error)?;
                Kind::Server(Box::new(Server {
                    source: Source::Fixed(client),
                    current: Mutex::new(None),
                    config,
                }))
            }
            RedisTarget::Sentinel {
                sentinels,
                master,
                redis,
                tls,
            } => {
                let mut builder =
                    SentinelClientBuilder::new(sentinels, master, SentinelServerType::Master)
                        .map_err(client_error)?
                        .set_client_to_redis_db(redis.db());
                if let Some(user) = redis.username() {
                    builder = builder.set_client_to_redis_username(user);
                }
                if let Some(password) = redis.password() {
                    builder = builder.set_client_to_redis_password(password);
                }
                if let Some(user) = &options.sentinel_username {
                    builder = builder.set_client_to_sentinel_username(user);
                }
                if let Some(password) = &options.sentinel_password {
                    builder = builder.set_client_to_sentinel_password(&password.0);
                }
                if tls {
                    builder = builder
                        .set_client_to_redis_tls_mode(TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(TlsMode::Secure);
                    if let Some(certs) = certs {
                        builder = builder
                            .set_client_to_redis_certificates(certs.clone())
                            .set_client_to_sentinel_certificates(certs);
                    }
                }
                Kind::Server(Box::new(Server {
                    source: Source::Sentinel(tokio::sync::Mutex::new(
                        builder.build().map_err(client_error)?,
                    )),
                    current: Mutex::new(None),
                    config,
                }))
            }
            RedisTarget::Cluster { nodes, .. } => {
                let mut builder = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(options.connect_timeout)
                    .response_timeout(options.op_timeout)
                    .retries(1)
                    .min_retry_wait(10)
                    .max_retry_wait(100);
                if let Some(certs) = &certs {
                    builder = builder.certs(certs.clone());
                }
                let client = builder.build().map_err(client_error)?;
                let conn = client.get_pending_async_connection_with_config(
                    ClusterConfig::new()
                        .set_connection_timeout(options.connect_timeout)
                        .set_response_timeout(options.op_timeout),
                );
                let nodes = nodes
                    .into_iter()
                    .map(|info| match &certs {
                        Some(certs) => Client::build_with_tls(info, certs.clone()),
                        None => Client::open(info),
                    })
                    .collect::<RedisResult<Vec<_>>>()
                    .map_err(client_error)?;
                Kind::Cluster { conn, nodes }
            }
        };
        Ok(Backend { kind })
    }

    /// A connection for one call.
    pub(crate) async fn conn(&self) -> RedisResult<Conn> {
        match &self.kind {
            Kind::Cluster { conn, .. } => Ok(Conn::Cluster(conn.clone())),
            Kind::Server(server) => {
                let Server {
                    source,
                    current,
                    config,
                } = &**server;
                if let Some((_, manager)) = lock(current).as_ref() {
                    return Ok(Conn::Single(manager.clone()));
                }
                let client = match source {
                    Source::Fixed(client) => client.clone(),
                    Source::Sentinel(sentinel) => {
                        let mut sentinel = sentinel.lock().await;
                        // Another call may have resolved the master meanwhile.
                        if let Some((_, manager)) = lock(current).as_ref() {
                            return Ok(Conn::Single(manager.clone()));
                        }
                        sentinel.async_get_client().await?
                    }
                };
                let manager =
                    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
                let mut current = lock(current);
                let (_, manager) = current.get_or_insert((client, manager));
                Ok(Conn::Single(manager.clone()))
            }
        }
    }

    /// Notes a failed call: `None` for a timeout.
    ///
    /// After an error the connection is replaced (the next call makes a new
    /// one): redis-rs's manager reconnects by itself only after I/O errors,
    /// and keeps returning any other failure of its connection set-up (an
    /// `AUTH` refused while a restarted server is being configured,
    /// `LOADING`) for good. With Sentinel a timeout replaces it too: the
    /// master may have moved.
    pub(crate) fn failed(&self, error: Option<&RedisError>) {
        if let Kind::Server(server) = &self.kind
            && (error.is_some() || matches!(server.source, Source::Sentinel(_)))
        {
            *lock(&server.current) = None;
        }
    }

    /// A client for a dedicated pub/sub connection; `attempt` rotates over
    /// the cluster's seed nodes.
    pub(crate) async fn pubsub_client(&self, attempt: usize) -> RedisResult<Client> {
        match &self.kind {
            Kind::Cluster { nodes, .. } => nodes
                .get(attempt % nodes.len().max(1))
                .cloned()
                .ok_or_else(|| {
                    RedisError::from((ErrorKind::InvalidClientConfig, "no cluster node"))
                }),
            Kind::Server(server) => match &server.source {
                Source::Fixed(client) => Ok(client.clone()),
                Source::Sentinel(sentinel) => {
                    if let Some((client, _)) = lock(&server.current).as_ref() {
                        return Ok(client.clone());
                    }
                    sentinel.lock().await.async_get_client().await
                }
            },
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain values: a panic elsewhere cannot leave them torn.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
