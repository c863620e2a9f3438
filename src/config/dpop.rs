//! The DPoP section: how proofs (RFC 9449) are checked at the gateway.
//!
//! `DPOP_NONCE=true` requires `SESSION_KEY_SECRET`, which keys the nonces;
//! `DPOP_BASE_URL` is checked as an API's `dpop_base_url` is.

use jsonwebtoken::Algorithm;
use reqwest::Url;

use super::parse;
use super::reader::Reader;
use super::vars::*;

/// Proof algorithms accepted by default.
pub const DEFAULT_DPOP_ALGS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::PS256,
];
pub const DEFAULT_DPOP_IAT_WINDOW_SECONDS: u64 = 60;
/// Proofs each replica remembers for the replay check (each about 150
/// bytes, measured: some 75 MB when full).
pub const DEFAULT_DPOP_REPLAY_CAPACITY: usize = 500_000;

#[derive(Debug, Clone)]
pub struct DpopConfig {
    /// Never empty, never `none` or `HS*`.
    pub algs: Vec<Algorithm>,
    pub iat_window_seconds: u64,
    /// Live proofs remembered at most; never evicted to make room.
    pub replay_capacity: usize,
    /// Requires `SESSION_KEY_SECRET` (the nonces' key).
    pub nonce: bool,
    pub forward_proof: bool,
    /// `DPOP_BASE_URL`: the external origin (and path prefix) proofs' `htu`
    /// names for APIs whose `config_data` has no `dpop_base_url`. Without
    /// either, `htu` is checked against the client's own `Host` header.
    pub base_url: Option<Url>,
}

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig {
            algs: DEFAULT_DPOP_ALGS.to_vec(),
            iat_window_seconds: DEFAULT_DPOP_IAT_WINDOW_SECONDS,
            replay_capacity: DEFAULT_DPOP_REPLAY_CAPACITY,
            nonce: false,
            forward_proof: false,
            base_url: None,
        }
    }
}

/// The section (every value has a default).
pub(super) fn read(r: &mut Reader<'_>) -> DpopConfig {
    let default = DpopConfig::default();
    let nonce = r.or(ENV_DPOP_NONCE, parse::boolean, false);
    // Nonces are keyed with the session-key secret. Its fallback, the client
    // secret, is known to the AS and to anything that sees its
    // client_secret_post requests: they could mint nonces.
    if nonce && r.raw(ENV_SESSION_KEY_SECRET).is_none() {
        r.problem(format!(
            "{ENV_DPOP_NONCE}=true needs {ENV_SESSION_KEY_SECRET}: the nonces' key would \
             otherwise derive from the client secret, which the authorization server knows"
        ));
    }
    DpopConfig {
        algs: r.or(
            ENV_DPOP_SIGNING_ALGS,
            parse::asymmetric_algorithms,
            default.algs,
        ),
        iat_window_seconds: r.or(
            ENV_DPOP_IAT_WINDOW_SECONDS,
            |v| parse::integer::<u64>(v, 1, 3600),
            default.iat_window_seconds,
        ),
        replay_capacity: r.or(
            ENV_DPOP_REPLAY_CAPACITY,
            |v| parse::integer::<usize>(v, 1, 100_000_000),
            default.replay_capacity,
        ),
        nonce,
        forward_proof: r.or(ENV_DPOP_FORWARD_PROOF, parse::boolean, false),
        base_url: r.optional(ENV_DPOP_BASE_URL, crate::dpop::parse_base_url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_asymmetric_algorithms_are_accepted() {
        assert_eq!(
            parse::asymmetric_algorithms("ES256, EdDSA").unwrap(),
            [Algorithm::ES256, Algorithm::EdDSA]
        );
        for bad in ["HS256", "none", "ES256 HS512", "", " , "] {
            assert!(
                parse::asymmetric_algorithms(bad).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
