//! RFC 9701: the JWT response for token introspection
//! (`application/token-introspection+jwt`).
//!
//! The answer is a JWS by the AS about a token: verified against the AS's
//! JWKS with an algorithm allow-list, then `typ`, `iss` (the AS), `aud` (our
//! client id) and `iat` (fresh) are checked, and only then is the RFC 7662
//! object in `token_introspection` read. It is a statement addressed to the
//! gateway, never a token to forward upstream. Any failure is an
//! [`AnswerError`], a fault of the AS; a token is never let in because a
//! check could not be made.

use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::{AnswerError, Verdict, numeric_date, read_members};
use crate::jwks::AsKeySet;
use crate::jwt::audiences;

/// The JOSE `typ` RFC 9701 requires (the `application/` prefix may be left
/// out, RFC 7515 §4.1.9).
pub const TYP: &str = "token-introspection+jwt";

/// How old an answer's `iat` may be.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);
/// Clock difference tolerated between us and the AS.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// What a signed answer must match.
#[derive(Debug, Clone)]
pub struct SignedAnswerRules {
    /// The AS's issuer identifier, exactly as in its metadata.
    pub issuer: String,
    /// Our client id: the answer's `aud`.
    pub client_id: String,
    /// Accepted algorithms (the client's registered
    /// `introspection_signed_response_alg`); symmetric ones never apply.
    pub algorithms: Vec<Algorithm>,
    pub max_age: Duration,
    pub leeway: Duration,
}

impl SignedAnswerRules {
    /// Rules with the default freshness window.
    pub fn new(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        algorithms: Vec<Algorithm>,
    ) -> Self {
        SignedAnswerRules {
            issuer: issuer.into(),
            client_id: client_id.into(),
            algorithms,
            max_age: DEFAULT_MAX_AGE,
            leeway: DEFAULT_LEEWAY,
        }
    }
}

/// Verifies and reads an RFC 9701 answer. `now` is unix seconds.
///
/// # Errors
///
/// [`AnswerError`] for a body that is not a verifiable, fresh JWS from the
/// AS addressed to us, or whose `token_introspection` is malformed.
pub async fn read_signed(
    body: &[u8],
    keys: &AsKeySet,
    rules: &SignedAnswerRules,
    jwt_member: Option<&str>,
    now: u64,
) -> Result<Verdict, AnswerError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| AnswerError::NotJson)?
        .trim_matches(|c: char| c.is_ascii_whitespace());
    if text.split('.').count() == 5 {
        return Err(AnswerError::Encrypted);
    }
    let verified = keys
        .verify(text, &rules.algorithms)
        .await
        .map_err(AnswerError::Signature)?;

    let typ = verified.header.typ.as_deref().unwrap_or("");
    let typ = strip_prefix_ignore_case(typ, "application/").unwrap_or(typ);
    if !typ.eq_ignore_ascii_case(TYP) {
        return Err(AnswerError::WrongType);
    }
    let claims = verified.claims;
    if claims.get("iss").and_then(serde_json::Value::as_str) != Some(rules.issuer.as_str()) {
        return Err(AnswerError::WrongIssuer);
    }
    if !audiences(claims.get("aud")).contains(&rules.client_id.as_str()) {
        return Err(AnswerError::WrongAudience);
    }
    let iat = claims
        .get("iat")
        .and_then(numeric_date)
        .ok_or(AnswerError::MissingIat)?;
    if iat > now.saturating_add(rules.leeway.as_secs()) {
        return Err(AnswerError::IssuedInFuture);
    }
    if iat.saturating_add(rules.max_age.as_secs() + rules.leeway.as_secs()) < now {
        return Err(AnswerError::Stale);
    }
    match claims.get("token_introspection") {
        Some(serde_json::Value::Object(members)) => read_members(members.clone(), jwt_member),
        _ => Err(AnswerError::BadMember("token_introspection".to_owned())),
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    value
        .get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .map(|_| &value[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::{JwksOptions, VerifyError};
    use crate::keys::SigningKeys;
    use crate::keys::tests::p256_pem;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const ISSUER: &str = "https://as.example";
    const CLIENT: &str = "gateway";
    const NOW: u64 = 1_900_000_000;

    struct Fixture {
        keys: SigningKeys,
        set: AsKeySet,
        rules: SignedAnswerRules,
        _server: tokio::task::JoinHandle<()>,
    }

    async fn fixture() -> Fixture {
        let keys = SigningKeys::from_pem(&p256_pem()).unwrap();
        let jwks = keys.jwks_json();
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { jwks }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let set = AsKeySet::new(
            reqwest::Client::new(),
            reqwest::Url::parse(&format!("http://{addr}/jwks")).unwrap(),
            JwksOptions::default(),
        );
        Fixture {
            keys,
            set,
            rules: SignedAnswerRules::new(ISSUER, CLIENT, vec![Algorithm::ES256]),
            _server: server,
        }
    }

    fn claims(token_introspection: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "iss": ISSUER, "aud": CLIENT, "iat": NOW,
            "token_introspection": token_introspection,
        })
    }

    async fn read(
        f: &Fixture,
        typ: &str,
        claims: &serde_json::Value,
    ) -> Result<Verdict, AnswerError> {
        let jws = f.keys.current().sign(typ, claims).unwrap();
        read_signed(jws.as_bytes(), &f.set, &f.rules, None, NOW).await
    }

    #[tokio::test]
    async fn a_verified_answer_yields_the_inner_verdict() {
        let f = fixture().await;
        let active = claims(serde_json::json!({"active": true, "sub": "alice", "exp": NOW + 60}));
        match read(&f, TYP, &active).await.unwrap() {
            Verdict::Active(answer) => {
                assert_eq!(answer.sub(), Some("alice"));
                assert_eq!(answer.exp, Some(NOW + 60));
            }
            Verdict::Inactive => panic!("expected active"),
        }
        let inactive = claims(serde_json::json!({"active": false}));
        assert_eq!(read(&f, TYP, &inactive).await, Ok(Verdict::Inactive));
        // typ with the media-type prefix, any case; aud as an array.
        let mut listed = active.clone();
        listed["aud"] = serde_json::json!(["other", CLIENT]);
        assert!(
            read(&f, "application/Token-Introspection+JWT", &listed)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn every_failed_check_is_a_fault_not_a_verdict() {
        let f = fixture().await;
        let good = claims(serde_json::json!({"active": true, "sub": "alice"}));
        let with = |name: &str, value: serde_json::Value| {
            let mut c = good.clone();
            c[name] = value;
            c
        };
        let without = |name: &str| {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove(name);
            c
        };
        let cases = [
            ("JWT", good.clone(), AnswerError::WrongType),
            ("at+jwt", good.clone(), AnswerError::WrongType),
            (
                TYP,
                with("iss", "https://evil.example".into()),
                AnswerError::WrongIssuer,
            ),
            (TYP, without("iss"), AnswerError::WrongIssuer),
            (
                TYP,
                with("aud", "someone-else".into()),
                AnswerError::WrongAudience,
            ),
            (TYP, without("aud"), AnswerError::WrongAudience),
            (TYP, without("iat"), AnswerError::MissingIat),
            (TYP, with("iat", "now".into()), AnswerError::MissingIat),
            (
                TYP,
                with("iat", (NOW + 31).into()),
                AnswerError::IssuedInFuture,
            ),
            (TYP, with("iat", (NOW - 91).into()), AnswerError::Stale),
            (
                TYP,
                without("token_introspection"),
                AnswerError::BadMember("token_introspection".to_owned()),
            ),
            (
                TYP,
                with("token_introspection", "active".into()),
                AnswerError::BadMember("token_introspection".to_owned()),
            ),
        ];
        for (typ, claims, expected) in cases {
            assert_eq!(
                read(&f, typ, &claims).await,
                Err(expected),
                "{typ} {claims}"
            );
        }
        // Within the leeway and the age limit.
        assert!(read(&f, TYP, &with("iat", (NOW + 30).into())).await.is_ok());
        assert!(read(&f, TYP, &with("iat", (NOW - 90).into())).await.is_ok());
    }

    #[tokio::test]
    async fn a_tampered_or_foreign_answer_fails_signature_verification() {
        let f = fixture().await;
        let jws = f
            .keys
            .current()
            .sign(TYP, &claims(serde_json::json!({"active": false})))
            .unwrap();
        let (head, signature) = jws.rsplit_once('.').unwrap();
        let (header, _) = head.split_once('.').unwrap();
        let flipped_payload = URL_SAFE_NO_PAD
            .encode(claims(serde_json::json!({"active": true, "sub": "admin"})).to_string());
        let tampered = format!("{header}.{flipped_payload}.{signature}");
        assert_eq!(
            read_signed(tampered.as_bytes(), &f.set, &f.rules, None, NOW).await,
            Err(AnswerError::Signature(VerifyError::BadSignature))
        );
        // Signed by a key the AS does not publish, under the AS's kid.
        let stranger = SigningKeys::from_pem(&p256_pem()).unwrap();
        let foreign = stranger
            .current()
            .sign(TYP, &claims(serde_json::json!({"active": true})))
            .unwrap();
        let (_, rest) = foreign.split_once('.').unwrap();
        let own_header = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"alg": "ES256", "typ": TYP, "kid": f.keys.current().kid()})
                .to_string(),
        );
        let foreign = format!("{own_header}.{rest}");
        assert_eq!(
            read_signed(foreign.as_bytes(), &f.set, &f.rules, None, NOW).await,
            Err(AnswerError::Signature(VerifyError::BadSignature))
        );
        // Not on the allow-list.
        let mut rules = f.rules.clone();
        rules.algorithms = vec![Algorithm::RS256];
        assert!(matches!(
            read_signed(jws.as_bytes(), &f.set, &rules, None, NOW).await,
            Err(AnswerError::Signature(VerifyError::AlgorithmNotAllowed(_)))
        ));
        // JSON where a JWS was announced; an encrypted response.
        assert!(matches!(
            read_signed(br#"{"active":true}"#, &f.set, &f.rules, None, NOW).await,
            Err(AnswerError::Signature(VerifyError::Malformed(_)))
        ));
        assert_eq!(
            read_signed(b"a.b.c.d.e", &f.set, &f.rules, None, NOW).await,
            Err(AnswerError::Encrypted)
        );
    }
}
