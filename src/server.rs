//! Binding the listener and serving `coprocess.Dispatcher` and the gRPC health
//! service over plaintext HTTP/2, as Tyk dials it, until shutdown.
//!
//! Tyk reaches the plugin over TCP (`tcp://host:port`) or a Unix socket
//! (`unix:///path`); the socket keeps the plugin off the network entirely.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tracing::{info, warn};

pub use crate::config::ListenAddr;
use crate::tyk::pb::dispatcher_server::{Dispatcher, DispatcherServer};

/// Name under which the health service reports the dispatcher.
pub const DISPATCHER_SERVICE: &str = "coprocess.Dispatcher";

/// A bound listener.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            Listener::Unix(_, path) => Ok(ListenAddr::Unix(path.clone())),
        }
    }
}

/// Binds `addr`.
///
/// An unspecified IPv6 address (`[::]`, the default) also accepts IPv4 where
/// the host allows it, like Go's `:port`; on hosts without IPv6 it falls back
/// to `0.0.0.0`. A Unix socket left behind by a process that is gone is
/// replaced; one that still answers is not, and anything at the path that is
/// not a socket is never removed.
///
/// # Errors
///
/// When the address cannot be bound.
pub fn bind(addr: &ListenAddr) -> io::Result<Listener> {
    match addr {
        ListenAddr::Tcp(addr) if addr.ip().is_unspecified() && addr.is_ipv6() => {
            match bind_tcp(*addr, true) {
                Ok(listener) => Ok(Listener::Tcp(listener)),
                Err(e) => {
                    warn!(error = %e, "IPv6 unavailable; listening on IPv4 only");
                    bind_tcp(SocketAddr::from(([0, 0, 0, 0], addr.port())), false)
                        .map(Listener::Tcp)
                }
            }
        }
        ListenAddr::Tcp(addr) => bind_tcp(*addr, false).map(Listener::Tcp),
        ListenAddr::Unix(path) => bind_unix(path).map(|l| Listener::Unix(l, path.clone())),
    }
}

fn bind_tcp(addr: SocketAddr, dual_stack: bool) -> io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            // Only a socket is ours to replace: a file, folder or link at
            // that path is somebody's data, and a typo in LISTEN_ADDR must
            // not delete it.
            if !is_socket(path)? {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a socket; it is left as it is \
                         (remove it, or choose another path)",
                        path.display()
                    ),
                ));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running process", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
            UnixListener::bind(path)
        }
        other => other,
    }
}

/// Whether `path` itself (not what a link points to) is a socket.
fn is_socket(path: &Path) -> io::Result<bool> {
    Ok(std::fs::symlink_metadata(path)?.file_type().is_socket())
}

/// A gRPC channel to a plugin at `addr` (TCP or Unix socket), for the health
/// check and the tools that talk to a running plugin.
///
/// # Errors
///
/// When the connection cannot be made.
pub async fn connect(
    addr: &ListenAddr,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    match addr {
        ListenAddr::Tcp(addr) => {
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                .connect()
                .await
        }
        ListenAddr::Unix(path) => {
            let path = path.clone();
            // The URI is required but unused: the connector dials the socket.
            tonic::transport::Endpoint::from_static("http://localhost")
                .connect_with_connector(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }))
                .await
        }
    }
}

/// Whether the plugin is serving: true once the server runs, false as soon as
/// shutdown begins. Read by the admin endpoint's `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct Serving(Arc<AtomicBool>);

impl Serving {
    pub fn is_serving(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, serving: bool) {
        self.0.store(serving, Ordering::Release);
    }
}

/// Transport settings.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Largest gRPC message accepted or sent. Tyk sends the body twice.
    pub max_message_bytes: usize,
    /// How long in-flight calls may finish after shutdown begins.
    pub shutdown_grace: Duration,
    pub serving: Serving,
}

/// A dispatcher that can answer its calls still running when the grace period
/// is over (instead of having them cut off).
pub trait Drain: Dispatcher + Clone {
    fn stop_in_flight(&self);
}

/// Serves until `shutdown` completes, then drains: health turns NOT_SERVING,
/// no new connections are accepted, and in-flight calls get at most the grace
/// period to finish.
///
/// # Errors
///
/// When the transport fails.
pub async fn serve<D: Drain>(
    listener: Listener,
    service: D,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let socket = match &listener {
        Listener::Unix(_, path) => Some(path.clone()),
        Listener::Tcp(_) => None,
    };
    let result = match listener {
        Listener::Tcp(l) => {
            let incoming = TcpIncoming::from(l).with_nodelay(Some(true));
            serve_incoming(incoming, service, options, shutdown).await
        }
        Listener::Unix(l, _) => {
            serve_incoming(UnixListenerStream::new(l), service, options, shutdown).await
        }
    };
    // Only if it is still a socket: never a file put there in the meantime.
    if let Some(path) = socket
        && is_socket(&path).unwrap_or(false)
    {
        let _ = std::fs::remove_file(path);
    }
    result
}

async fn serve_incoming<D, I, IO, IE>(
    incoming: I,
    service: D,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error>
where
    D: Drain,
    I: tokio_stream::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(DISPATCHER_SERVICE, ServingStatus::Serving)
        .await;

    let dispatcher = DispatcherServer::new(service.clone())
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = Server::builder()
        .add_service(health)
        .add_service(dispatcher)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stopped.await;
        });
    tokio::pin!(server);
    options.serving.set(true);

    tokio::select! {
        result = &mut server => {
            options.serving.set(false);
            return result;
        }
        () = shutdown => {}
    }
    options.serving.set(false);
    info!(
        grace_seconds = options.shutdown_grace.as_secs_f64(),
        "Shutting down"
    );
    for name in ["", DISPATCHER_SERVICE] {
        reporter
            .set_service_status(name, ServingStatus::NotServing)
            .await;
    }
    let _ = stop.send(());
    if let Ok(result) = tokio::time::timeout(options.shutdown_grace, &mut server).await {
        return result;
    }
    warn!("Grace period over; answering remaining calls with 503");
    service.stop_in_flight();
    // Those answers take moments to flush; do not wait on a stuck peer.
    tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .unwrap_or(Ok(()))
}
