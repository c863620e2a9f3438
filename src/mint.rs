//! Minting the JWT forwarded upstream when the AS gives none: an RFC 9068
//! access token built from the introspection answer, signed with the
//! plugin's own key (see [`crate::keys`]).
//!
//! What must hold:
//! - Header `typ: at+jwt`, `alg` fixed by the key, `kid` its thumbprint.
//! - `iss` is the configured issuer (the plugin, not the AS: APIs verify
//!   with our JWKS); `client_id` and `scope` come from the answer; `sub` is
//!   the token's subject by [`crate::jwt::subject`] (`sub`, else the resource
//!   owner, else the client of a token without one); `iat` now; a fresh
//!   random `jti`.
//! - `aud` is never empty (RFC 9068 requires it) and never names an
//!   audience the AS did not grant: the configured audience when the answer
//!   names none (the token is not restricted to resources), the configured
//!   audiences the answer also names when it names some, and otherwise the
//!   answer's own audiences (see [`minted_audiences`]).
//! - `exp` is never later than the token's own `exp`, and never more than
//!   the configured lifetime ahead; an already expired token mints nothing.
//! - Extra claims are copied only by name from the answer, and can never
//!   overwrite the registered ones above. The authentication claims of
//!   RFC 9068 §2.2.1 ([`AUTHENTICATION_CLAIMS`]) are always copied, so an
//!   API's step-up check (RFC 9470) sees them whatever the answer kind.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::answer::ActiveAnswer;
use crate::jwt::SubjectError;
use crate::keys::{KeyError, SigningKeys};

/// RFC 9068 §2.1.
pub const TYP: &str = "at+jwt";

/// Claims the minter sets itself; not allowed in the copy list.
pub const RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
];

/// Claims about the user's authentication (RFC 9068 §2.2.1), copied from
/// the answer whenever present.
pub const AUTHENTICATION_CLAIMS: &[&str] = &["acr", "amr", "auth_time"];

/// What every minted token must carry.
#[derive(Debug, Clone)]
pub struct MintRules {
    /// `iss` of minted tokens (the URL the APIs know the gateway by).
    pub issuer: String,
    /// `aud` of minted tokens (`MINTED_AUDIENCE`), narrowed to what the AS
    /// granted (see [`minted_audiences`]). Never empty.
    pub audience: Vec<String>,
    /// The claim naming the resource owner when an answer has no `sub`
    /// (`RESOURCE_OWNER_CLAIM`, RFC 7662's `username` by default).
    pub owner_claim: String,
    /// The longest a minted token lives, even when the opaque token lives
    /// longer.
    pub max_lifetime: Duration,
    /// Claims copied from the answer when present (e.g. `acr`, `auth_time`,
    /// `cnf`, `department`).
    pub copy_claims: Vec<String>,
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("the minted tokens' issuer is empty")]
    EmptyIssuer,
    #[error("the minted tokens' lifetime must be at least one second")]
    ZeroLifetime,
    #[error("claim \"{0}\" is set by the minter and cannot be copied from the answer")]
    ReservedClaim(String),
    #[error("the minted tokens' audience is empty")]
    EmptyAudience,
    /// The answer lacks what RFC 9068 requires (`client_id`): a fault of
    /// the AS or of the configuration, not of the token.
    #[error("the introspection answer has no \"{0}\" to mint a token with")]
    MissingClaim(&'static str),
    /// The answer names no subject (see [`crate::jwt::subject`]).
    #[error(transparent)]
    NoSubject(#[from] SubjectError),
    /// The answer's `exp` has passed: treat the token as inactive.
    #[error("the token has expired")]
    Expired,
    #[error("no randomness for jti: {0}")]
    Random(String),
    #[error(transparent)]
    Sign(#[from] KeyError),
}

/// A minted JWT. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Minted {
    pub jwt: String,
    pub exp: u64,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("jwt", &"[redacted]")
            .field("exp", &self.exp)
            .finish()
    }
}

/// Signs RFC 9068 access tokens from introspection answers.
#[derive(Debug, Clone)]
pub struct Minter {
    keys: Arc<SigningKeys>,
    rules: MintRules,
}

impl Minter {
    /// # Errors
    ///
    /// [`MintError::EmptyIssuer`], [`MintError::ZeroLifetime`] or
    /// [`MintError::ReservedClaim`] for rules that cannot work.
    pub fn new(keys: Arc<SigningKeys>, rules: MintRules) -> Result<Self, MintError> {
        if rules.issuer.trim().is_empty() {
            return Err(MintError::EmptyIssuer);
        }
        if rules.audience.iter().all(|a| a.trim().is_empty()) {
            return Err(MintError::EmptyAudience);
        }
        if rules.max_lifetime < Duration::from_secs(1) {
            return Err(MintError::ZeroLifetime);
        }
        if let Some(reserved) = rules
            .copy_claims
            .iter()
            .find(|c| RESERVED_CLAIMS.contains(&c.as_str()))
        {
            return Err(MintError::ReservedClaim(reserved.clone()));
        }
        Ok(Minter { keys, rules })
    }

    /// The keys, for publishing the JWKS.
    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    /// Mints a token for an active answer; `now` is unix seconds.
    ///
    /// # Errors
    ///
    /// [`MintError::Expired`] when the answer's `exp` has passed;
    /// [`MintError::MissingClaim`] when it lacks `client_id`;
    /// [`MintError::NoSubject`] when it names no subject;
    /// [`MintError::Sign`] if signing fails.
    pub fn mint(&self, answer: &ActiveAnswer, now: u64) -> Result<Minted, MintError> {
        let cap = now.saturating_add(self.rules.max_lifetime.as_secs());
        let exp = match answer.exp {
            Some(exp) if exp <= now => return Err(MintError::Expired),
            Some(exp) => exp.min(cap),
            None => cap,
        };
        let client_id = answer
            .client_id()
            .ok_or(MintError::MissingClaim("client_id"))?;
        // RFC 9068 §2.2: the resource owner, and the client only for a token
        // without one (client credentials).
        let sub = answer.subject(&self.rules.owner_claim)?;
        let aud = audience_claim(&minted_audiences(&self.rules.audience, &answer.audiences()));

        let mut claims = Map::new();
        let copied = AUTHENTICATION_CLAIMS
            .iter()
            .copied()
            .chain(self.rules.copy_claims.iter().map(String::as_str));
        for name in copied {
            if let Some(value) = answer.get(name).filter(|v| !v.is_null()) {
                claims.insert(name.to_owned(), value.clone());
            }
        }
        // The key binding always goes upstream (RFC 9449 §6.1), so the API
        // sees that the token was DPoP-bound.
        if let Some(cnf) = answer.get("cnf").filter(|v| v.is_object()) {
            claims.insert("cnf".into(), cnf.clone());
        }
        claims.insert("iss".into(), self.rules.issuer.clone().into());
        claims.insert("sub".into(), Value::from(sub.into_owned()));
        claims.insert("client_id".into(), client_id.into());
        claims.insert("aud".into(), aud);
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), exp.into());
        claims.insert("jti".into(), new_jti()?.into());
        if let Some(scope) = answer.scope() {
            claims.insert("scope".into(), scope.into());
        }
        let jwt = self.keys.current().sign(TYP, &claims)?;
        Ok(Minted { jwt, exp })
    }
}

impl Minter {
    /// The JWT `jwt`, which this minter signed, minted again for `audience`:
    /// the same claims with `aud` replaced, `iat` now and a fresh `jti`; its
    /// `exp` is kept, so the copy never outlives the original. `Ok(None)`
    /// when `jwt` is not signed by one of our keys (a ready JWT from the
    /// AS, which is forwarded as it is) or has expired.
    ///
    /// # Errors
    ///
    /// [`MintError::Random`] or [`MintError::Sign`].
    pub fn remint(&self, jwt: &str, audience: &str, now: u64) -> Result<Option<Minted>, MintError> {
        let Some(mut claims) = self.verify_own(jwt) else {
            return Ok(None);
        };
        let Some(exp) = claims.get("exp").and_then(Value::as_u64) else {
            return Ok(None);
        };
        if exp <= now {
            return Ok(None);
        }
        claims.insert("aud".into(), audience.into());
        claims.insert("iat".into(), now.into());
        claims.insert("jti".into(), new_jti()?.into());
        let jwt = self.keys.current().sign(TYP, &claims)?;
        Ok(Some(Minted { jwt, exp }))
    }

    /// The claims of `jwt` if its signature verifies with one of our keys
    /// (chosen by `kid`, algorithm fixed by the key) and its `iss` is ours.
    fn verify_own(&self, jwt: &str) -> Option<Map<String, Value>> {
        let header = jsonwebtoken::decode_header(jwt).ok()?;
        let kid = header.kid?;
        let key = self.keys.all().iter().find(|k| k.kid() == kid)?;
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(serde_json::to_value(key.public_jwk()).ok()?).ok()?;
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).ok()?;
        let mut validation = jsonwebtoken::Validation::new(key.alg());
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.set_issuer(&[&self.rules.issuer]);
        jsonwebtoken::decode::<Map<String, Value>>(jwt, &decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// The audiences a minted JWT names, given the `configured` ones and those
/// the AS `granted` (the answer's `aud`): RFC 8707 lets an AS restrict a
/// token to resources, and a JWT signed by the plugin must not widen that.
///
/// - The AS named none: the token is not restricted; `configured`.
/// - It named some of `configured`: those.
/// - It named only others: its own, so the JWT goes to the resources the
///   token is for and an API that expects a configured audience refuses it.
pub fn minted_audiences<'a>(configured: &'a [String], granted: &[&'a str]) -> Vec<&'a str> {
    if granted.is_empty() {
        return configured.iter().map(String::as_str).collect();
    }
    let both: Vec<&str> = configured
        .iter()
        .map(String::as_str)
        .filter(|c| granted.contains(c))
        .collect();
    if both.is_empty() {
        granted.to_vec()
    } else {
        both
    }
}

/// `aud` as RFC 7519 writes it: one string, or an array of several.
fn audience_claim(audiences: &[&str]) -> Value {
    match audiences {
        [one] => Value::from(*one),
        many => Value::from(many.to_vec()),
    }
}

/// 128 random bits, base64url.
pub(crate) fn new_jti() -> Result<String, MintError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| MintError::Random(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests;
