//! The admin endpoint, on its own address (`ADMIN_ADDR`), apart from the gRPC
//! port Tyk uses: `/livez`, `/readyz` and `/metrics` (Prometheus text format).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::authz::Authorizer;
use crate::server::Serving;

#[derive(Clone)]
struct Admin {
    serving: Serving,
    authz: Arc<Authorizer>,
}

/// The admin routes.
pub fn router(serving: Serving, authz: Arc<Authorizer>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Admin { serving, authz })
}

/// Ready while the gRPC server accepts calls; not ready before it starts and
/// from the moment shutdown begins, so a load balancer stops sending first.
async fn ready(State(admin): State<Admin>) -> impl IntoResponse {
    if admin.serving.is_serving() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    let cache = admin.authz.cache();
    // moka's counts lag until its pending work runs; scrapes are rare.
    cache.run_pending_tasks().await;
    let body = admin
        .authz
        .metrics()
        .render(cache.entry_count(), cache.weighted_size());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// Serves the admin endpoint until `shutdown`.
///
/// # Errors
///
/// When the listener fails.
pub async fn serve(
    listener: TcpListener,
    serving: Serving,
    authz: Arc<Authorizer>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(serving, authz))
        .with_graceful_shutdown(shutdown)
        .await
}
