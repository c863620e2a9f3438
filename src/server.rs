//! Binding the listener and serving `coprocess.Dispatcher` and the gRPC health
//! service over plaintext HTTP/2, as Tyk dials it, until shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tracing::{info, warn};

use crate::dispatch::DispatchService;
use crate::tyk::pb::dispatcher_server::DispatcherServer;

/// Name under which the health service reports the dispatcher.
pub const DISPATCHER_SERVICE: &str = "coprocess.Dispatcher";

/// Binds `addr`. An unspecified IPv6 address (`[::]`, the default) also accepts
/// IPv4 where the host allows it, like Go's `:port`; on hosts without IPv6 it
/// falls back to `0.0.0.0`.
///
/// # Errors
///
/// When the address cannot be bound.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    if addr.ip().is_unspecified() && addr.is_ipv6() {
        match bind_socket(addr, true) {
            Ok(listener) => return Ok(listener),
            Err(e) => warn!(error = %e, "IPv6 unavailable; listening on IPv4 only"),
        }
        return bind_socket(SocketAddr::from(([0, 0, 0, 0], addr.port())), false);
    }
    bind_socket(addr, false)
}

fn bind_socket(addr: SocketAddr, dual_stack: bool) -> io::Result<TcpListener> {
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

/// Transport settings.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Largest gRPC message accepted or sent. Tyk sends the body twice.
    pub max_message_bytes: usize,
    /// How long in-flight calls may finish after shutdown begins.
    pub shutdown_grace: Duration,
}

/// Serves until `shutdown` completes, then drains: health turns NOT_SERVING,
/// no new connections are accepted, and in-flight calls get at most the grace
/// period to finish.
///
/// # Errors
///
/// When the transport fails.
pub async fn serve(
    listener: TcpListener,
    service: DispatchService,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(DISPATCHER_SERVICE, ServingStatus::Serving)
        .await;

    let dispatcher = DispatcherServer::new(service.clone())
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = Server::builder()
        .add_service(health)
        .add_service(dispatcher)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stopped.await;
        });
    tokio::pin!(server);

    tokio::select! {
        result = &mut server => return result,
        () = shutdown => {}
    }
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
