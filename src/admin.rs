//! The admin endpoint, on its own address (`ADMIN_ADDR`), apart from the gRPC
//! port Tyk uses: `/livez`, `/readyz`, `/metrics` (Prometheus text format),
//! `POST /tokens/revoke` and, when the plugin mints JWTs,
//! `/.well-known/jwks.json` (the public keys APIs verify them with). And the
//! JWKS listener (`JWKS_ADDR`), which serves that JWKS and `/livez` only, so
//! APIs can fetch the keys without reaching anything else.
//!
//! The read routes have no authentication: the admin address is for the
//! operator's network only (loopback or an internal address, never public).
//! The write routes (`/tokens/revoke`) are guarded by [`WriteAccess`]:
//! `Authorization: Bearer <ADMIN_TOKEN>`, or, without `ADMIN_TOKEN`, open on
//! a loopback address only. `/tokens/revoke` takes the token as RFC 7009
//! does (`application/x-www-form-urlencoded`, `token=…`; `token_type_hint`
//! is ignored) or as JSON (`{"token":"…"}`), drops it from this replica's
//! cache and, with the shared cache on, from Redis and every replica.

mod access;

pub use access::{AdminToken, WriteAccess};

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Router, middleware};
use bytes::Bytes;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::authz::Authorizer;
use crate::fleet::FleetPurge;
use crate::server::Serving;

#[derive(Clone)]
struct Admin {
    serving: Serving,
    authz: Arc<Authorizer>,
}

/// The admin routes; the write routes behind `access`.
pub fn router(serving: Serving, authz: Arc<Authorizer>, access: WriteAccess) -> Router {
    let writes = Router::new()
        .route("/tokens/revoke", post(revoke))
        .route_layer(middleware::from_fn_with_state(access, access::guard));
    Router::new()
        .route("/livez", get(live))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(jwks))
        .merge(writes)
        .with_state(Admin { serving, authz })
}

/// The JWKS listener's routes: the minted JWTs' public keys and liveness,
/// nothing else (no metrics, no write routes).
pub fn jwks_router(serving: Serving, authz: Arc<Authorizer>) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/livez", get(live))
        .with_state(Admin { serving, authz })
}

async fn live() -> &'static str {
    "ok\n"
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

#[derive(Deserialize)]
struct RevokeJson {
    token: String,
}

/// The token in a revocation request's body, by its media type.
fn token_in(
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<String, (StatusCode, &'static str)> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let token = match media.as_str() {
        "application/x-www-form-urlencoded" => form_urlencoded::parse(body)
            .find(|(name, _)| name == "token")
            .map(|(_, value)| value.into_owned()),
        "application/json" => serde_json::from_slice::<RevokeJson>(body)
            .ok()
            .map(|json| json.token),
        _ => {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send application/x-www-form-urlencoded (token=...) or application/json ({\"token\":\"...\"})\n",
            ));
        }
    };
    token
        .filter(|t| !t.is_empty())
        .ok_or((StatusCode::BAD_REQUEST, "no token in the body\n"))
}

/// Ends a token here and, with the shared cache on, fleet-wide. 200 when
/// done (whether or not it was cached anywhere: RFC 7009 answers the same);
/// 503 when Redis did not take the fleet-wide purge (it is dropped here
/// only; retry). Never echoes the token.
async fn revoke(
    State(admin): State<Admin>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let token = match token_in(&headers, &body) {
        Ok(token) => token,
        Err(refused) => return refused,
    };
    match admin.authz.revoke(&token).await {
        None => (StatusCode::BAD_REQUEST, "not a bearer token\n"),
        Some(FleetPurge::Off) => (
            StatusCode::OK,
            "dropped on this replica (no shared cache)\n",
        ),
        Some(FleetPurge::Sent) => (StatusCode::OK, "dropped on every replica and in Redis\n"),
        Some(FleetPurge::Failed) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "dropped on this replica only: Redis did not take the fleet-wide purge; retry\n",
        ),
    }
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

/// Serves `router` (the admin routes, or the JWKS listener's) on `listener`
/// until `shutdown`.
///
/// # Errors
///
/// When the listener fails.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
