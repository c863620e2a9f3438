//! Verifying a JWT the AS gave the plugin to forward (`VERIFY_JWT=true`):
//! Curity's `application/jwt` answer, or a ready JWT from a JSON member.
//!
//! What must hold:
//! - The signature verifies with the AS's JWKS ([`AsKeySet`]: the key fixes
//!   the algorithm, an unknown `kid` refetches at most once per interval),
//!   with an algorithm from the allow-list; `none` and `HS*` never verify.
//! - `iss` is the expected issuer; `aud` contains the expected audience when
//!   one is configured; `exp` is present and not past, `nbf` (if present)
//!   not in the future, both with the clock skew.
//! - Verification happens once, when the answer arrives, before it is
//!   cached; a JWT that fails is a fault of the AS ([`JwtRejected`] inside
//!   an [`AnswerError`](super::AnswerError)), never forwarded nor cached.
//!   Messages never carry the JWT.

use std::sync::Arc;

use crate::config::VerifyJwtConfig;
use crate::jwks::{AsKeySet, VerifyError};
use crate::jwt::{audiences, numeric_date};

/// Why a JWT from the AS was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtRejected {
    #[error("{0}")]
    Signature(VerifyError),
    #[error("the JWT is from another issuer")]
    WrongIssuer,
    #[error("the JWT is not addressed to the configured audience")]
    WrongAudience,
    #[error("the JWT has no numeric \"exp\"")]
    MissingExp,
    #[error("the JWT has expired")]
    Expired,
    #[error("the JWT is not valid yet (nbf)")]
    NotYetValid,
    #[error("the JWT's \"nbf\" is not a number")]
    BadNbf,
}

/// Verifies the AS's JWTs with its keys.
pub struct JwtVerifier {
    keys: Arc<AsKeySet>,
    rules: VerifyJwtConfig,
}

impl JwtVerifier {
    pub fn new(keys: Arc<AsKeySet>, rules: VerifyJwtConfig) -> Self {
        JwtVerifier { keys, rules }
    }

    /// Verifies `jwt` at `now` (unix seconds).
    ///
    /// # Errors
    ///
    /// [`JwtRejected`] naming the first thing that is wrong.
    pub async fn verify(&self, jwt: &str, now: u64) -> Result<(), JwtRejected> {
        let verified = self
            .keys
            .verify(jwt, &self.rules.algorithms)
            .await
            .map_err(JwtRejected::Signature)?;
        let claims = verified.claims;
        if claims.get("iss").and_then(serde_json::Value::as_str) != Some(&self.rules.issuer) {
            return Err(JwtRejected::WrongIssuer);
        }
        if let Some(audience) = &self.rules.audience
            && !audiences(claims.get("aud")).contains(&audience.as_str())
        {
            return Err(JwtRejected::WrongAudience);
        }
        let leeway = self.rules.leeway.as_secs();
        let exp = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or(JwtRejected::MissingExp)?;
        if exp.saturating_add(leeway) <= now {
            return Err(JwtRejected::Expired);
        }
        match claims.get("nbf") {
            None | Some(serde_json::Value::Null) => {}
            Some(nbf) => {
                let nbf = numeric_date(nbf).ok_or(JwtRejected::BadNbf)?;
                if nbf > now.saturating_add(leeway) {
                    return Err(JwtRejected::NotYetValid);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
