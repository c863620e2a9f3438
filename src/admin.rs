//! The admin endpoint, on its own address (`ADMIN_ADDR`), apart from the gRPC
//! port Tyk uses: `/livez`, `/readyz`, `/metrics` (Prometheus text format)
//! and, when the plugin mints JWTs, `/.well-known/jwks.json` (the public keys
//! APIs verify them with).

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
        .route("/.well-known/jwks.json", get(jwks))
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

/// The minting keys' public JWKS; 404 when the plugin does not mint.
async fn jwks(State(admin): State<Admin>) -> axum::response::Response {
    match admin.authz.minted_jwks() {
        Some(jwks) => (
            [
                (header::CONTENT_TYPE, "application/jwk-set+json"),
                (header::CACHE_CONTROL, "max-age=300"),
            ],
            jwks,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "this plugin does not mint JWTs\n").into_response(),
    }
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
