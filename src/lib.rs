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
//! One line per module, roughly from the entry point down to the decision.
//!
//! - [`cli`]: the command line: `serve`, and the tools `health`, `check`, `check-api`,
//!   `bundle`, `jwks`, `keygen`.
//! - [`app`]: the composition root: configuration in, bound service out.
//! - [`config`]: environment variables, validated all at once.
//! - [`server`]: binding, serving, health, graceful drain.
//! - [`admin`]: the admin endpoint (liveness, readiness, metrics, revocation
//!   behind `ADMIN_TOKEN`) and the JWKS listener.
//! - [`dispatch`]: the gRPC service: routes each hook, applies the decision.
//! - [`tyk`]: the generated schema; writing allow and deny into Tyk's object.
//! - [`reply`]: every denial as Tyk's reply (status, message, headers).
//! - [`session`]: the Tyk session of an allowed request, as plain data.
//! - [`authz`]: the decision, free of gRPC and Tyk types: grant or denial.
//! - [`dpop`]: DPoP proofs (RFC 9449) checked before the lookup; the token's key binding after.
//! - [`api_rules`]: an API's own rules from `config_data`: checks and identity.
//! - [`cache`]: the expiring, bounded, coalescing token cache and its TTL rule.
//! - [`introspect`]: the HTTP client for the introspection endpoint.
//! - [`breaker`]: the circuit breaker in front of the authorization server.
//! - [`token`]: bearer-token extraction and the digests that stand in for it.
//! - [`jwt`]: checking the AS's answer is a compact JWS; reading claims.
//! - [`discovery`]: the AS's endpoints from its issuer (RFC 8414, then OpenID Discovery).
//! - [`client_auth`]: `client_secret_post` and `private_key_jwt` (RFC 7523) form fields.
//! - [`answer`]: reading RFC 7662 JSON and RFC 9701 signed answers, by media type.
//! - [`jwks`]: the AS's public keys (fetched, cached, refetch rate-limited); JWS verification.
//! - [`keys`]: our signing keys from PEM; their public JWKS and thumbprint `kid`s.
//! - [`keygen`]: a new P-256 signing key written to a file (`keygen`).
//! - [`probe`]: which format the AS answers in, and whether the set-up can allow a token.
//! - [`mint`]: RFC 9068 access tokens minted from an answer when the AS gives no JWT.
//! - [`shared`]: the fleet's second-level cache in Redis, sealed per token.
//! - [`fleet`]: the shared cache wired behind the in-process one: lookup, single-flight, purge.
//! - [`trace`]: W3C trace context, from Tyk's call to the AS request.
//! - [`metrics`]: Prometheus metrics, every label from a fixed set.
//! - [`telemetry`]: log output, text or JSON.
//! - [`signal`]: the shutdown signal (SIGTERM, SIGINT).
//! - [`bundle`]: Tyk plugin bundles: building and verifying them.
//! - [`apidef`]: Tyk API definitions checked against what the plugin needs (`check-api`).
#![forbid(unsafe_code)]
// The Dispatch future nests the decision, the two cache levels and the
// Redis client's connection types: proving it `Send + Sync` takes more than
// the default 128 steps of trait evaluation.
#![recursion_limit = "256"]

pub mod admin;
pub mod answer;
pub mod api_rules;
pub mod apidef;
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
pub mod dpop;
pub mod fleet;
pub mod introspect;
pub mod jwks;
pub mod jwt;
pub mod keygen;
pub mod keys;
pub mod metrics;
pub mod mint;
pub mod probe;
pub mod reply;
pub mod server;
pub mod session;
pub mod shared;
pub mod signal;
pub mod telemetry;
pub mod token;
pub mod trace;
pub mod tyk;

pub use tyk::pb;
