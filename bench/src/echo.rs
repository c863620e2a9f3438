//! The physical-limit baseline: a `coprocess.Dispatcher` that returns the
//! object it received, served by the library's own server with the plugin's
//! default message limits, so only the auth work differs from the plugin.

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use tonic::{Request, Response, Status};
use tyk_phantom_token::config::DEFAULT_GRPC_MAX_MESSAGE_BYTES;
use tyk_phantom_token::pb::dispatcher_server::Dispatcher;
use tyk_phantom_token::pb::{Event, EventReply, Object};
use tyk_phantom_token::server::{self, Drain, ListenAddr, ServeOptions, Serving};

#[derive(Clone)]
pub struct Echo;

#[tonic::async_trait]
impl Dispatcher for Echo {
    async fn dispatch(&self, request: Request<Object>) -> Result<Response<Object>, Status> {
        Ok(Response::new(request.into_inner()))
    }

    async fn dispatch_event(&self, _: Request<Event>) -> Result<Response<EventReply>, Status> {
        Ok(Response::new(EventReply {}))
    }
}

impl Drain for Echo {
    fn stop_in_flight(&self) {}
}

/// `phantom-bench echo-server`: prints the bound address, then serves until
/// SIGTERM or SIGINT, or (with `watch_stdin`) until standard input closes, so
/// it never outlives the benchmark that started it.
pub async fn serve(listen: SocketAddr, watch_stdin: bool) -> Result<(), String> {
    let listener = server::bind(&ListenAddr::Tcp(listen))
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("{local}");
    let options = ServeOptions {
        max_message_bytes: usize::try_from(DEFAULT_GRPC_MAX_MESSAGE_BYTES).unwrap_or(usize::MAX),
        shutdown_grace: Duration::from_secs(1),
        serving: Serving::default(),
    };
    let shutdown = async move {
        if watch_stdin {
            let (closed, eof) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                let mut stdin = std::io::stdin();
                while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
                let _ = closed.send(());
            });
            tokio::select! {
                _ = eof => {}
                () = tyk_phantom_token::signal::shutdown() => {}
            }
        } else {
            tyk_phantom_token::signal::shutdown().await;
        }
    };
    server::serve(listener, Echo, options, shutdown)
        .await
        .map_err(|e| e.to_string())
}
