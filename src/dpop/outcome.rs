//! The DPoP outcome counter's labels (`phantom_dpop_checks_total`).

use super::ProofError;
use crate::metrics::label_values;
use prometheus_client::encoding::EncodeLabelValue;
use prometheus_client::encoding::LabelValueEncoder;
use std::fmt::Write as _;

label_values! {
    /// What the DPoP checks made of a request (label `result`).
    pub enum DpopOutcome {
        /// Proof valid and the token bound to its key.
        Accepted => "accepted",
        Missing => "missing",
        Multiple => "multiple",
        TooLong => "too_long",
        NotCompact => "not_compact",
        BadHeader => "bad_header",
        WrongType => "wrong_typ",
        AlgorithmNotAllowed => "alg_not_allowed",
        BadKey => "bad_key",
        PrivateKey => "private_key",
        KeyAlgorithmMismatch => "key_alg_mismatch",
        BadSignature => "bad_signature",
        BadClaims => "bad_claims",
        WrongMethod => "wrong_htm",
        WrongUrl => "wrong_htu",
        Stale => "stale_iat",
        WrongAth => "wrong_ath",
        Replayed => "replayed_jti",
        Nonce => "nonce",
        /// `DPoP` scheme, token bound to no key.
        Unbound => "unbound",
        /// Token bound to another key.
        KeyMismatch => "key_mismatch",
        /// A bound token presented as `Bearer`.
        BoundAsBearer => "bound_as_bearer",
        /// The API requires DPoP and the request was not.
        Required => "required",
        /// A valid proof found the replay store full (503).
        ReplayStoreFull => "replay_store_full",
    }
}

impl From<ProofError> for DpopOutcome {
    fn from(e: ProofError) -> Self {
        match e {
            ProofError::Missing => DpopOutcome::Missing,
            ProofError::Multiple => DpopOutcome::Multiple,
            ProofError::TooLong => DpopOutcome::TooLong,
            ProofError::NotCompact => DpopOutcome::NotCompact,
            ProofError::BadHeader => DpopOutcome::BadHeader,
            ProofError::WrongType => DpopOutcome::WrongType,
            ProofError::AlgorithmNotAllowed => DpopOutcome::AlgorithmNotAllowed,
            ProofError::BadKey => DpopOutcome::BadKey,
            ProofError::PrivateKey => DpopOutcome::PrivateKey,
            ProofError::KeyAlgorithmMismatch => DpopOutcome::KeyAlgorithmMismatch,
            ProofError::BadSignature => DpopOutcome::BadSignature,
            ProofError::BadClaims => DpopOutcome::BadClaims,
            ProofError::WrongMethod => DpopOutcome::WrongMethod,
            ProofError::WrongUrl => DpopOutcome::WrongUrl,
            ProofError::Stale => DpopOutcome::Stale,
            ProofError::WrongAth => DpopOutcome::WrongAth,
            ProofError::Replayed => DpopOutcome::Replayed,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct DpopLabel {
    result: DpopOutcome,
}

/// Registers `phantom_dpop_checks_total` and resolves one counter per
/// outcome, in [`DpopOutcome::ALL`] order.
pub fn register_outcomes(
    registry: &mut prometheus_client::registry::Registry,
) -> Vec<prometheus_client::metrics::counter::Counter> {
    let family = prometheus_client::metrics::family::Family::<
        DpopLabel,
        prometheus_client::metrics::counter::Counter,
    >::default();
    registry.register("dpop_checks", "DPoP checks by result", family.clone());
    DpopOutcome::ALL
        .iter()
        .map(|&result| family.get_or_create(&DpopLabel { result }).clone())
        .collect()
}
