//! The challenge section: what a denial tells the client (the
//! `WWW-Authenticate` realm, `Retry-After`).

use super::parse;
use super::reader::Reader;
use super::vars::*;

pub const DEFAULT_REALM: &str = "api";
pub const DEFAULT_RETRY_AFTER_SECONDS: u64 = 5;

#[derive(Debug, Clone)]
pub struct ChallengeConfig {
    pub realm: String,
    pub retry_after_seconds: u64,
}

/// The section (every value has a default).
pub(super) fn read(r: &mut Reader<'_>) -> ChallengeConfig {
    ChallengeConfig {
        realm: r.or(ENV_REALM, parse::realm, DEFAULT_REALM.to_owned()),
        retry_after_seconds: r.or(
            ENV_RETRY_AFTER_SECONDS,
            |v| parse::integer::<u64>(v, 1, 3600),
            DEFAULT_RETRY_AFTER_SECONDS,
        ),
    }
}
