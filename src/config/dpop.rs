//! The DPoP section: how proofs (RFC 9449) are checked at the gateway.

use jsonwebtoken::Algorithm;

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
/// Proofs each replica remembers for the replay check (each about 100
/// bytes: some 50 MB when full).
pub const DEFAULT_DPOP_REPLAY_CAPACITY: usize = 500_000;

#[derive(Debug, Clone)]
pub struct DpopConfig {
    /// Never empty, never `none` or `HS*`.
    pub algs: Vec<Algorithm>,
    pub iat_window_seconds: u64,
    /// Live proofs remembered at most; never evicted to make room.
    pub replay_capacity: usize,
    pub nonce: bool,
    pub forward_proof: bool,
}

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig {
            algs: DEFAULT_DPOP_ALGS.to_vec(),
            iat_window_seconds: DEFAULT_DPOP_IAT_WINDOW_SECONDS,
            replay_capacity: DEFAULT_DPOP_REPLAY_CAPACITY,
            nonce: false,
            forward_proof: false,
        }
    }
}

/// The section (every value has a default).
pub(super) fn read(r: &mut Reader<'_>) -> DpopConfig {
    let default = DpopConfig::default();
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
        nonce: r.or(ENV_DPOP_NONCE, parse::boolean, false),
        forward_proof: r.or(ENV_DPOP_FORWARD_PROOF, parse::boolean, false),
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
