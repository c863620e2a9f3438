//! Phantom-token authentication for Tyk Gateway, as a gRPC rich plugin.
//!
//! Tyk calls [`dispatch::DispatchService`] on its custom-auth hook with each
//! request. The opaque access token from `Authorization` is introspected at the
//! authorization server; the JWT it returns (Curity's `application/jwt`, or a
//! ready JWT inside an RFC 7662 answer), or one the plugin mints from an RFC
//! 7662 or verified RFC 9701 answer, is cached by the token's digest until it
//! expires and forwarded upstream as `Authorization: Bearer <JWT>`. Denials
//! carry the right status for Tyk to send.
//!
//! # Layout
//!
//! - [`app`]: the composition root: configuration in, bound service out.
//! - [`config`]: environment variables, validated all at once.
//! - [`token`]: bearer-token extraction and the digests that stand in for it.
//! - [`jwt`]: checking the AS's answer is a compact JWS; reading claims.
//! - [`introspect`]: the HTTP client for the introspection endpoint.
//! - [`discovery`]: the AS's endpoints from its issuer (RFC 8414, then OpenID Discovery).
//! - [`client_auth`]: `client_secret_post` and `private_key_jwt` (RFC 7523) form fields.
//! - [`answer`]: reading RFC 7662 JSON and RFC 9701 signed answers, by media type.
//! - [`jwks`]: the AS's public keys (fetched, cached, refetch rate-limited); JWS verification.
//! - [`keys`]: our signing keys from PEM; their public JWKS and thumbprint `kid`s.
//! - [`mint`]: RFC 9068 access tokens minted from an answer when the AS gives no JWT.
//! - [`cache`]: the expiring, bounded, coalescing token cache and its TTL rule.
//! - [`shared`]: the fleet's second-level cache in Redis, sealed per token.
//! - [`authz`]: the decision, free of gRPC and Tyk types.
//! - [`tyk`]: the generated schema; writing allow and deny into Tyk's object.
//! - [`dispatch`]: the gRPC service; hook routing; denial → Tyk answer.
//! - [`server`]: binding, serving, health, graceful drain.
//! - [`telemetry`], [`signal`]: logs and shutdown.
#![forbid(unsafe_code)]

pub mod admin;
pub mod answer;
pub mod app;
pub mod authz;
pub mod breaker;
pub mod bundle;
pub mod cache;
pub mod cli;
pub mod client_auth;
pub mod config;
pub mod discovery;
pub mod dispatch;
pub mod introspect;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod metrics;
pub mod mint;
pub mod policy;
pub mod server;
pub mod shared;
pub mod signal;
pub mod telemetry;
pub mod token;
pub mod trace;
pub mod tyk;

pub use tyk::pb;
