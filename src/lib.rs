//! Phantom-token authentication for Tyk Gateway, as a gRPC rich plugin.
//!
//! Tyk calls [`dispatch::DispatchService`] on its custom-auth hook with each
//! request. The opaque access token from `Authorization` is introspected at the
//! authorization server with `Accept: application/jwt`; the JWT it returns is
//! cached by the token's digest until it expires and forwarded upstream as
//! `Authorization: Bearer <JWT>`. Denials carry the right status for Tyk to
//! send.
//!
//! # Layout
//!
//! - [`app`]: the composition root: configuration in, bound service out.
//! - [`config`]: environment variables, validated all at once.
//! - [`token`]: bearer-token extraction and the digests that stand in for it.
//! - [`jwt`]: checking the AS's answer is a compact JWS; reading claims.
//! - [`introspect`]: the HTTP client for the introspection endpoint.
//! - [`cache`]: the expiring, bounded, coalescing token cache and its TTL rule.
//! - [`api_rules`]: an API's own rules from `config_data`: checks and identity.
//! - [`authz`]: the decision, free of gRPC and Tyk types.
//! - [`tyk`]: the generated schema; writing allow and deny into Tyk's object.
//! - [`dispatch`]: the gRPC service; hook routing; denial → Tyk answer.
//! - [`server`]: binding, serving, health, graceful drain.
//! - [`telemetry`], [`signal`]: logs and shutdown.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api_rules;
pub mod app;
pub mod authz;
pub mod breaker;
pub mod bundle;
pub mod cache;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod introspect;
pub mod jwt;
pub mod metrics;
pub mod reply;
pub mod server;
pub mod session;
pub mod signal;
pub mod telemetry;
pub mod token;
pub mod trace;
pub mod tyk;

pub use tyk::pb;
