//! Verifying a JWT the AS gave the plugin to forward (`VERIFY_JWT=true`):
//! Curity's `application/jwt` answer, or a ready JWT from a JSON member.
//!
//! What must hold:
//! - The signature verifies with the AS's JWKS ([`AsKeySet`]: the key fixes
//!   the algorithm, an unknown `kid` refetches at most once per interval),
//!   with an algorithm from the allow-list; `none` and `HS*` never verify.
//! - The JOSE `typ` is one of those configured (`at+jwt` by default, RFC
//!   9068 §4), so an ID token or another kind of JWT signed by the same AS
//!   is not taken for an access token.
//! - `iss` is the expected issuer; `aud` contains the configured audience
//!   (required; only an explicit `JWT_AUDIENCE=*` waives it); `exp` is
//!   present and not past, `nbf` (if present) not in the future, both with
//!   the clock skew.
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
    #[error("the JWT's \"typ\" is not one of those accepted")]
    WrongType,
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
        if let Some(types) = &self.rules.types
            && !verified
                .header
                .typ
                .as_deref()
                .is_some_and(|typ| types.iter().any(|t| same_media_type(t, typ)))
        {
            return Err(JwtRejected::WrongType);
        }
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

/// Two JOSE `typ` values name the same media type: compared without case,
/// with the `application/` prefix optional (RFC 7515 §4.1.9).
fn same_media_type(a: &str, b: &str) -> bool {
    fn essence(t: &str) -> &str {
        let t = t.trim();
        match t.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &t[12..],
            _ => t,
        }
    }
    essence(a).eq_ignore_ascii_case(essence(b))
}

#[cfg(test)]
mod tests;
