use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use jsonwebtoken::Algorithm;

use super::*;
use crate::jwks::JwksOptions;
use crate::keys::SigningKeys;
use crate::keys::tests::p256_pem;

const ISSUER: &str = "https://idsvr.example/oauth/v2/oauth-anonymous";
const NOW: u64 = 1_900_000_000;

/// A JWKS endpoint whose keys can be swapped, counting fetches.
struct Jwks {
    served: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    url: reqwest::Url,
    _server: tokio::task::JoinHandle<()>,
}

async fn jwks_server(initial: String) -> Jwks {
    let served = Arc::new(Mutex::new(initial));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (s, f) = (served.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            f.fetch_add(1, Ordering::SeqCst);
            let body = s.lock().unwrap().clone();
            async move { body }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url =
        reqwest::Url::parse(&format!("http://{}/jwks", listener.local_addr().unwrap())).unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Jwks {
        served,
        fetches,
        url,
        _server: server,
    }
}

fn rules(audience: Option<&str>) -> VerifyJwtConfig {
    VerifyJwtConfig {
        issuer: ISSUER.into(),
        audience: audience.map(str::to_owned),
        types: Some(vec!["at+jwt".to_owned()]),
        algorithms: vec![Algorithm::ES256, Algorithm::RS256],
        leeway: std::time::Duration::from_secs(30),
    }
}

fn verifier(jwks: &Jwks, rules: VerifyJwtConfig) -> JwtVerifier {
    let options = JwksOptions {
        refetch_interval: std::time::Duration::from_secs(1),
        ..JwksOptions::default()
    };
    JwtVerifier::new(
        Arc::new(AsKeySet::new(
            reqwest::Client::new(),
            jwks.url.clone(),
            options,
        )),
        rules,
    )
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut claims =
        serde_json::json!({"iss": ISSUER, "sub": "alice", "exp": NOW + 300, "aud": "orders"});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

/// `jwt` with its header replaced by `header` (signature kept).
fn with_header(jwt: &str, header: &str) -> String {
    let rest = jwt.split_once('.').unwrap().1;
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header))
}

#[tokio::test]
async fn a_jwt_signed_by_the_as_with_the_right_claims_verifies() {
    let keys = SigningKeys::from_pem(&p256_pem()).unwrap();
    let jwks = jwks_server(keys.jwks_json()).await;
    let sign = |c: serde_json::Value| keys.current().sign("at+jwt", &c).unwrap();
    let v = verifier(&jwks, rules(None));
    assert_eq!(
        v.verify(&sign(claims(serde_json::json!({}))), NOW).await,
        Ok(())
    );
    // Within the skew: just expired, or valid from a little later.
    let edge = claims(serde_json::json!({"exp": NOW - 29, "nbf": NOW + 29}));
    assert_eq!(v.verify(&sign(edge), NOW).await, Ok(()));
    // An audience, when configured, may be one of several.
    let v = verifier(&jwks, rules(Some("orders")));
    let many = claims(serde_json::json!({"aud": ["web", "orders"]}));
    assert_eq!(v.verify(&sign(many), NOW).await, Ok(()));
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        2,
        "one fetch per key set"
    );
}

#[tokio::test]
async fn only_the_accepted_typ_passes_unless_waived() {
    let keys = SigningKeys::from_pem(&p256_pem()).unwrap();
    let jwks = jwks_server(keys.jwks_json()).await;
    let signed = |typ: &str| {
        keys.current()
            .sign(typ, &claims(serde_json::json!({})))
            .unwrap()
    };
    let v = verifier(&jwks, rules(Some("orders")));
    for accepted in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        assert_eq!(v.verify(&signed(accepted), NOW).await, Ok(()), "{accepted}");
    }
    // An ID token or any other JWT the same AS signs is not an access token.
    for refused in ["JWT", "id_token+jwt", "application/jwt"] {
        assert_eq!(
            v.verify(&signed(refused), NOW).await,
            Err(JwtRejected::WrongType),
            "{refused}"
        );
    }
    let any = verifier(
        &jwks,
        VerifyJwtConfig {
            types: None,
            ..rules(Some("orders"))
        },
    );
    assert_eq!(any.verify(&signed("JWT"), NOW).await, Ok(()));
}

#[tokio::test]
async fn each_check_refuses_what_it_must() {
    let keys = SigningKeys::from_pem(&p256_pem()).unwrap();
    let jwks = jwks_server(keys.jwks_json()).await;
    let sign = |c: serde_json::Value| keys.current().sign("at+jwt", &c).unwrap();
    let v = verifier(&jwks, rules(Some("orders")));
    let cases = [
        (
            claims(serde_json::json!({"iss": "https://other.example"})),
            JwtRejected::WrongIssuer,
        ),
        (
            claims(serde_json::json!({"iss": null})),
            JwtRejected::WrongIssuer,
        ),
        (
            claims(serde_json::json!({"aud": "billing"})),
            JwtRejected::WrongAudience,
        ),
        (
            claims(serde_json::json!({"aud": null})),
            JwtRejected::WrongAudience,
        ),
        (
            claims(serde_json::json!({"exp": NOW - 30})),
            JwtRejected::Expired,
        ),
        (
            claims(serde_json::json!({"exp": null})),
            JwtRejected::MissingExp,
        ),
        (
            claims(serde_json::json!({"exp": "soon"})),
            JwtRejected::MissingExp,
        ),
        (
            claims(serde_json::json!({"nbf": NOW + 31})),
            JwtRejected::NotYetValid,
        ),
        (
            claims(serde_json::json!({"nbf": "later"})),
            JwtRejected::BadNbf,
        ),
    ];
    for (claims, expected) in cases {
        assert_eq!(
            v.verify(&sign(claims.clone()), NOW).await,
            Err(expected),
            "{claims}"
        );
    }
}

#[tokio::test]
async fn forged_signatures_and_algorithms_are_refused() {
    let keys = SigningKeys::from_pem(&p256_pem()).unwrap();
    let jwks = jwks_server(keys.jwks_json()).await;
    let good = keys
        .current()
        .sign("at+jwt", &claims(serde_json::json!({})))
        .unwrap();
    let v = verifier(&jwks, rules(None));

    // One character of the signature changed.
    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(
        v.verify(&tampered, NOW).await,
        Err(JwtRejected::Signature(VerifyError::BadSignature))
    );
    // Claims changed under the AS's signature.
    let (head, rest) = good.split_once('.').unwrap();
    let sig = rest.split_once('.').unwrap().1;
    let forged_claims = claims(serde_json::json!({"sub": "mallory"})).to_string();
    let forged = format!("{head}.{}.{sig}", URL_SAFE_NO_PAD.encode(forged_claims));
    assert_eq!(
        v.verify(&forged, NOW).await,
        Err(JwtRejected::Signature(VerifyError::BadSignature))
    );
    // alg none, with or without a signature; HS256 (the public key as an
    // HMAC secret); an asymmetric algorithm not on the list.
    let kid = keys.current().kid();
    let unsigned = format!(
        "{}.",
        with_header(&good, r#"{"alg":"none"}"#)
            .rsplit_once('.')
            .unwrap()
            .0
    );
    for (jwt, alg) in [
        (unsigned, "none"),
        (with_header(&good, r#"{"alg":"none"}"#), "none"),
        (
            with_header(&good, &format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#)),
            "HS256",
        ),
        (
            with_header(&good, &format!(r#"{{"alg":"PS256","kid":"{kid}"}}"#)),
            "PS256",
        ),
    ] {
        assert_eq!(
            v.verify(&jwt, NOW).await,
            Err(JwtRejected::Signature(VerifyError::AlgorithmNotAllowed(
                alg.into()
            ))),
            "{alg}"
        );
    }
    // Not on this verifier's list, though the key could verify it.
    let rs_only = verifier(
        &jwks,
        VerifyJwtConfig {
            algorithms: vec![Algorithm::RS256],
            ..rules(None)
        },
    );
    assert_eq!(
        rs_only.verify(&good, NOW).await,
        Err(JwtRejected::Signature(VerifyError::AlgorithmNotAllowed(
            "ES256".into()
        )))
    );
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_once_so_rotated_keys_verify() {
    let old = SigningKeys::from_pem(&p256_pem()).unwrap();
    let new = SigningKeys::from_pem(&p256_pem()).unwrap();
    let jwks = jwks_server(old.jwks_json()).await;
    let v = verifier(&jwks, rules(None));
    let by_old = old
        .current()
        .sign("at+jwt", &claims(serde_json::json!({})))
        .unwrap();
    assert_eq!(v.verify(&by_old, NOW).await, Ok(()));
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1);

    // The AS rotates: once the refetch interval has passed since the last
    // fetch, a JWT with the new kid triggers one refetch.
    *jwks.served.lock().unwrap() = new.jwks_json();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let by_new = new
        .current()
        .sign("at+jwt", &claims(serde_json::json!({})))
        .unwrap();
    assert_eq!(v.verify(&by_new, NOW).await, Ok(()));
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);

    // A forged kid right after: no further fetch within the interval.
    let stranger = SigningKeys::from_pem(&p256_pem()).unwrap();
    let by_stranger = stranger
        .current()
        .sign("at+jwt", &claims(serde_json::json!({})))
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            v.verify(&by_stranger, NOW).await,
            Err(JwtRejected::Signature(VerifyError::UnknownKey))
        );
    }
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2, "rate-limited");
}
