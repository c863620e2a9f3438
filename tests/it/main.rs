//! End-to-end tests: the plugin in-process, called by a fake Tyk gateway,
//! introspecting at a fake Curity server. Loopback only.

#[path = "../support/dpop_client.rs"]
mod dpop_client;
#[path = "../support/redis.rs"]
mod redis_support;
#[path = "../support/mod.rs"]
mod support;

mod access_rights;
mod admin;
mod any_as;
mod api_config;
mod as_faults;
mod auth_check;
mod cache;
mod dpop;
mod fleet;
mod hooks;
mod hostile;
mod id_extractor;
mod observability;
mod resilience;
mod step_up;
mod tls;
mod transport;
mod verify_jwt;
