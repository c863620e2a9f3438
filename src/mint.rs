//! Minting the JWT forwarded upstream when the AS gives none: an RFC 9068
//! access token built from the introspection answer, signed with the
//! plugin's own key (see [`crate::keys`]).
//!
//! What must hold:
//! - Header `typ: at+jwt`, `alg` fixed by the key, `kid` its thumbprint.
//! - `iss` is the configured issuer (the plugin, not the AS: APIs verify
//!   with our JWKS); `sub`, `client_id`, `scope` come from the answer; `aud`
//!   is the configured audience or else the answer's; `iat` now; a fresh
//!   random `jti`.
//! - `exp` is never later than the token's own `exp`, and never more than
//!   the configured lifetime ahead; an already expired token mints nothing.
//! - Extra claims are copied only by name from the answer, and can never
//!   overwrite the registered ones above.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::answer::ActiveAnswer;
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

/// What every minted token must carry.
#[derive(Debug, Clone)]
pub struct MintRules {
    /// `iss` of minted tokens (the URL the APIs know the gateway by).
    pub issuer: String,
    /// `aud` of minted tokens; when empty, the answer's `aud` is used.
    pub audience: Vec<String>,
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
    /// The answer lacks what RFC 9068 requires (`sub` or `client_id`, `aud`):
    /// a fault of the AS or of the configuration, not of the token.
    #[error("the introspection answer has no \"{0}\" to mint a token with")]
    MissingClaim(&'static str),
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
    /// [`MintError::MissingClaim`] when it lacks `sub`/`client_id` or there is
    /// no audience; [`MintError::Sign`] if signing fails.
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
        // RFC 9068 §2.2: without a resource owner (client credentials) the
        // subject is the client.
        let sub = answer.sub().unwrap_or(client_id);
        let audience: Vec<&str> = if self.rules.audience.is_empty() {
            answer.audiences()
        } else {
            self.rules.audience.iter().map(String::as_str).collect()
        };
        let aud = match audience.as_slice() {
            [] => return Err(MintError::MissingClaim("aud")),
            [one] => Value::from(*one),
            many => Value::from(many.to_vec()),
        };

        let mut claims = Map::new();
        for name in &self.rules.copy_claims {
            if let Some(value) = answer.get(name).filter(|v| !v.is_null()) {
                claims.insert(name.clone(), value.clone());
            }
        }
        claims.insert("iss".into(), self.rules.issuer.clone().into());
        claims.insert("sub".into(), sub.into());
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

/// 128 random bits, base64url.
pub(crate) fn new_jti() -> Result<String, MintError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| MintError::Random(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::{Verdict, read_json};
    use crate::keys::tests::{ed25519_pem, p256_pem, rsa_pem};
    use jsonwebtoken::{DecodingKey, Validation};

    const NOW: u64 = 1_900_000_000;

    fn answer(json: serde_json::Value) -> ActiveAnswer {
        match read_json(json.to_string().as_bytes(), None).unwrap() {
            Verdict::Active(a) => *a,
            Verdict::Inactive => panic!("inactive"),
        }
    }

    fn rules() -> MintRules {
        MintRules {
            issuer: "https://gateway.example".into(),
            audience: vec!["orders-api".into()],
            max_lifetime: Duration::from_secs(300),
            copy_claims: vec!["acr".into(), "department".into(), "cnf".into()],
        }
    }

    fn minter(pem: &str, rules: MintRules) -> Minter {
        Minter::new(Arc::new(SigningKeys::from_pem(pem).unwrap()), rules).unwrap()
    }

    /// Verifies with the published JWKS only, the way an API would.
    fn verify(jwks_json: &str, jwt: &str) -> (jsonwebtoken::Header, Map<String, Value>) {
        let header = jsonwebtoken::decode_header(jwt).unwrap();
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(jwks_json).unwrap();
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .expect("kid published");
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false; // NOW is in the future of the test run
        validation.set_audience(&["orders-api"]);
        validation.set_issuer(&["https://gateway.example"]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode(jwt, &key, &validation).unwrap();
        (data.header, data.claims)
    }

    #[test]
    fn a_minted_token_is_reminted_for_another_audience_and_a_foreign_one_is_not() {
        let minter = minter(&p256_pem(), rules());
        let original = minter
            .mint(
                &answer(serde_json::json!({
                    "active": true, "sub": "alice", "client_id": "web", "scope": "orders:read",
                    "exp": NOW + 120, "department": "ops",
                })),
                NOW,
            )
            .unwrap();
        let again = minter
            .remint(&original.jwt, "billing-api", NOW + 10)
            .unwrap()
            .expect("ours");
        assert_eq!(again.exp, original.exp, "never outlives the original");
        let jwks = minter.keys().jwks_json();
        let header = jsonwebtoken::decode_header(&again.jwt).unwrap();
        assert_eq!(header.typ.as_deref(), Some(TYP));
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&jwks).unwrap();
        let key =
            DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.set_audience(&["billing-api"]);
        let claims: Map<String, Value> = jsonwebtoken::decode(&again.jwt, &key, &validation)
            .unwrap()
            .claims;
        let (_, first) = verify(&minter.keys().jwks_json(), &original.jwt);
        assert_eq!(claims["aud"], "billing-api");
        assert_eq!(claims["iat"], NOW + 10);
        assert_ne!(claims["jti"], first["jti"]);
        for same in ["sub", "client_id", "scope", "department", "iss", "exp"] {
            assert_eq!(claims[same], first[same], "{same}");
        }

        // Signed by another key (a ready JWT from the AS): never re-signed.
        let other = super::Minter::new(
            Arc::new(SigningKeys::from_pem(&p256_pem()).unwrap()),
            rules(),
        )
        .unwrap();
        assert!(
            other
                .remint(&original.jwt, "billing-api", NOW)
                .unwrap()
                .is_none()
        );
        // Expired: nothing.
        assert!(
            minter
                .remint(&original.jwt, "billing-api", NOW + 120)
                .unwrap()
                .is_none()
        );
        assert!(
            minter
                .remint("not.a.jwt", "billing-api", NOW)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn minted_tokens_follow_rfc9068_and_verify_with_the_published_jwks_for_every_key_type() {
        for (pem, alg) in [
            (p256_pem(), jsonwebtoken::Algorithm::ES256),
            (ed25519_pem(), jsonwebtoken::Algorithm::EdDSA),
            (rsa_pem(), jsonwebtoken::Algorithm::RS256),
        ] {
            let minter = minter(&pem, rules());
            let minted = minter
                .mint(
                    &answer(serde_json::json!({
                        "active": true, "sub": "alice", "client_id": "web", "scope": "orders:read",
                        "exp": NOW + 120, "aud": "something-else", "acr": "2", "department": "ops",
                        "email": "alice@example.com", "iss": "https://as.example",
                    })),
                    NOW,
                )
                .unwrap();
            let (header, claims) = verify(&minter.keys().jwks_json(), &minted.jwt);
            assert_eq!(header.alg, alg);
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(header.kid.as_deref(), Some(minter.keys().current().kid()));
            assert_eq!(claims["iss"], "https://gateway.example");
            assert_eq!(claims["sub"], "alice");
            assert_eq!(claims["client_id"], "web");
            assert_eq!(claims["scope"], "orders:read");
            assert_eq!(claims["aud"], "orders-api");
            assert_eq!(claims["iat"], NOW);
            assert_eq!(claims["exp"], NOW + 120);
            assert_eq!(minted.exp, NOW + 120);
            assert_eq!(claims["acr"], "2");
            assert_eq!(claims["department"], "ops");
            assert!(
                claims.get("email").is_none(),
                "only chosen claims are copied"
            );
            assert!(claims.get("cnf").is_none(), "absent claims stay absent");
            assert!(claims["jti"].as_str().unwrap().len() >= 22);
            assert!(!format!("{minted:?}").contains(&minted.jwt));
        }
    }

    #[test]
    fn exp_is_capped_by_the_lifetime_and_never_later_than_the_token() {
        let minter = minter(&p256_pem(), rules());
        let base = serde_json::json!({"active": true, "sub": "a", "client_id": "c"});
        let with_exp = |exp: Option<u64>| {
            let mut json = base.clone();
            if let Some(exp) = exp {
                json["exp"] = exp.into();
            }
            answer(json)
        };
        assert_eq!(
            minter.mint(&with_exp(Some(NOW + 10)), NOW).unwrap().exp,
            NOW + 10
        );
        assert_eq!(
            minter.mint(&with_exp(Some(NOW + 86_400)), NOW).unwrap().exp,
            NOW + 300
        );
        assert_eq!(minter.mint(&with_exp(None), NOW).unwrap().exp, NOW + 300);
        for past in [NOW, NOW - 1] {
            assert!(matches!(
                minter.mint(&with_exp(Some(past)), NOW),
                Err(MintError::Expired)
            ));
        }
    }

    #[test]
    fn subject_audience_and_jti_rules() {
        let minter = minter(&p256_pem(), rules());
        // Client credentials: no sub, the client is the subject.
        let cc = answer(serde_json::json!({"active": true, "client_id": "batch", "exp": NOW + 60}));
        let (_, claims) = verify(
            &minter.keys().jwks_json(),
            &minter.mint(&cc, NOW).unwrap().jwt,
        );
        assert_eq!(claims["sub"], "batch");
        assert!(claims.get("scope").is_none());
        // A new jti each time.
        let (_, again) = verify(
            &minter.keys().jwks_json(),
            &minter.mint(&cc, NOW).unwrap().jwt,
        );
        assert_ne!(claims["jti"], again["jti"]);

        let no_client = answer(serde_json::json!({"active": true, "sub": "a"}));
        assert!(matches!(
            minter.mint(&no_client, NOW),
            Err(MintError::MissingClaim("client_id"))
        ));

        // No configured audience: the answer's, as it was (string or list).
        let mut open = rules();
        open.audience.clear();
        let open = super::Minter::new(Arc::clone(&minter.keys), open).unwrap();
        let listed =
            answer(serde_json::json!({"active": true, "client_id": "c", "aud": ["a1", "a2"]}));
        let jwt = open.mint(&listed, NOW).unwrap().jwt;
        let claims: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode(&jwt)
            .unwrap()
            .claims;
        assert_eq!(claims["aud"], serde_json::json!(["a1", "a2"]));
        let no_aud = answer(serde_json::json!({"active": true, "client_id": "c"}));
        assert!(matches!(
            open.mint(&no_aud, NOW),
            Err(MintError::MissingClaim("aud"))
        ));
    }

    #[test]
    fn rules_that_cannot_work_are_refused() {
        let keys = Arc::new(SigningKeys::from_pem(&p256_pem()).unwrap());
        let mut reserved = rules();
        reserved.copy_claims.push("exp".into());
        assert!(matches!(
            Minter::new(Arc::clone(&keys), reserved),
            Err(MintError::ReservedClaim(c)) if c == "exp"
        ));
        let mut empty = rules();
        empty.issuer = " ".into();
        assert!(matches!(
            Minter::new(Arc::clone(&keys), empty),
            Err(MintError::EmptyIssuer)
        ));
        let mut zero = rules();
        zero.max_lifetime = Duration::from_millis(500);
        assert!(matches!(
            Minter::new(keys, zero),
            Err(MintError::ZeroLifetime)
        ));
    }
}
