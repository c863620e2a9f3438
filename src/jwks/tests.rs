use super::*;
use crate::keys::SigningKeys;
use crate::keys::tests::{ed25519_pem, p256_pem, rsa_pem};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A loopback JWKS endpoint that counts its fetches and serves whatever
/// set the test puts in it.
struct JwksServer {
    url: Url,
    fetches: Arc<AtomicUsize>,
    body: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn jwks_server(body: String) -> JwksServer {
    let fetches = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(Mutex::new(body));
    let (count, served) = (Arc::clone(&fetches), Arc::clone(&body));
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (count, served) = (Arc::clone(&count), Arc::clone(&served));
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                let body = served.lock().unwrap().clone();
                ([("content-type", "application/json")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    JwksServer {
        url: Url::parse(&format!("http://{addr}/jwks")).unwrap(),
        fetches,
        body,
        task,
    }
}

fn key_set(server: &JwksServer, refetch_interval: Duration) -> AsKeySet {
    AsKeySet::new(
        reqwest::Client::new(),
        server.url.clone(),
        JwksOptions {
            refetch_interval,
            ..JwksOptions::default()
        },
    )
}

fn sign(keys: &SigningKeys, claims: serde_json::Value) -> String {
    keys.current().sign("JWT", &claims).unwrap()
}

/// A JWS with an arbitrary header, signed with `keys` regardless of what
/// the header says.
fn forge(keys: &SigningKeys, header: serde_json::Value) -> String {
    let honest = sign(keys, serde_json::json!({"sub": "x"}));
    let mut parts = honest.split('.');
    let _ = parts.next();
    let payload = parts.next().unwrap();
    let signature = parts.next().unwrap();
    format!(
        "{}.{payload}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string())
    )
}

#[tokio::test]
async fn verifies_with_each_key_type_and_the_key_decides_the_algorithm() {
    for pem in [p256_pem(), ed25519_pem(), rsa_pem()] {
        let keys = SigningKeys::from_pem(&pem).unwrap();
        let server = jwks_server(keys.jwks_json()).await;
        let set = key_set(&server, Duration::from_secs(60));
        let jws = sign(&keys, serde_json::json!({"sub": "alice"}));
        let verified = set.verify(&jws, ASYMMETRIC).await.unwrap();
        assert_eq!(verified.claims["sub"], "alice");
        assert_eq!(verified.header.alg, keys.current().alg());

        // The same key may not be used with another algorithm of the
        // allow-list, even when the header asks for it.
        let other = if keys.current().alg() == Algorithm::ES256 {
            "EdDSA"
        } else {
            "ES256"
        };
        let kid = keys.current().kid();
        let swapped = forge(&keys, serde_json::json!({"alg": other, "kid": kid}));
        assert_eq!(
            set.verify(&swapped, ASYMMETRIC).await.unwrap_err(),
            VerifyError::KeyAlgorithmMismatch(other.to_owned())
        );
        // Not on the caller's allow-list.
        assert!(matches!(
            set.verify(&jws, &[Algorithm::PS512]).await,
            Err(VerifyError::AlgorithmNotAllowed(_))
        ));
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_as_secret_is_refused() {
    let keys = SigningKeys::from_pem(&rsa_pem()).unwrap();
    let server = jwks_server(keys.jwks_json()).await;
    let set = key_set(&server, Duration::from_secs(60));
    let kid = keys.current().kid().to_owned();
    // The classic confusion: the attacker knows the public key and uses
    // its bytes (JWK JSON, or n) as the HMAC secret.
    let public_bytes = keys.jwks_json();
    let n = keys.current().public_jwk().n.clone().unwrap();
    for secret in [public_bytes.as_bytes(), n.as_bytes()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        let forged = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "mallory"}),
            &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap();
        // Even an allow-list that names HS256 does not admit it.
        assert_eq!(
            set.verify(&forged, &[Algorithm::HS256, Algorithm::RS256])
                .await
                .unwrap_err(),
            VerifyError::AlgorithmNotAllowed("HS256".to_owned())
        );
    }
    // An "oct" key in the AS's set is never used either.
    let with_oct = format!(r#"{{"keys":[{{"kty":"oct","kid":"{kid}","k":"c2VjcmV0"}}]}}"#);
    assert_eq!(
        parse_jwks(with_oct.as_bytes()).err(),
        Some(JwksError::NoUsableKeys)
    );
}

#[tokio::test]
async fn alg_none_is_refused() {
    let keys = SigningKeys::from_pem(&p256_pem()).unwrap();
    let server = jwks_server(keys.jwks_json()).await;
    let set = key_set(&server, Duration::from_secs(60));
    let kid = keys.current().kid();
    let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"mallory"}"#);
    for header in [
        serde_json::json!({"alg": "none", "kid": kid}),
        serde_json::json!({"alg": "None"}),
    ] {
        let header = URL_SAFE_NO_PAD.encode(header.to_string());
        for jws in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2ln"),
        ] {
            assert!(
                matches!(
                    set.verify(&jws, ASYMMETRIC).await,
                    Err(VerifyError::AlgorithmNotAllowed(_))
                ),
                "{jws}"
            );
        }
    }
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        0,
        "no key was needed"
    );
}

#[tokio::test]
async fn tampering_with_payload_or_signature_fails_verification() {
    let keys = SigningKeys::from_pem(&p256_pem()).unwrap();
    let server = jwks_server(keys.jwks_json()).await;
    let set = key_set(&server, Duration::from_secs(60));
    let jws = sign(&keys, serde_json::json!({"sub": "alice", "active": true}));
    let (head, signature) = jws.rsplit_once('.').unwrap();
    let (header, payload) = head.split_once('.').unwrap();
    let other_payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"admin","active":true}"#);
    let mut flipped = signature.as_bytes().to_vec();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for tampered in [
        format!("{header}.{other_payload}.{signature}"),
        format!("{header}.{payload}.{flipped}"),
    ] {
        assert_eq!(
            set.verify(&tampered, ASYMMETRIC).await.unwrap_err(),
            VerifyError::BadSignature
        );
    }
}

#[tokio::test]
async fn forged_kids_refetch_at_most_once_per_interval() {
    let keys = SigningKeys::from_pem(&p256_pem()).unwrap();
    let server = jwks_server(keys.jwks_json()).await;
    let interval = Duration::from_millis(700);
    let set = Arc::new(key_set(&server, interval));
    assert_eq!(set.refresh().await, Ok(1));
    let started = Instant::now();

    // 100 forged kids, half at once, half one after another.
    let concurrent: Vec<_> = (0..50)
        .map(|i| {
            let set = Arc::clone(&set);
            let jws = forge(
                &keys,
                serde_json::json!({"alg": "ES256", "kid": format!("forged-{i}")}),
            );
            tokio::spawn(async move { set.verify(&jws, ASYMMETRIC).await })
        })
        .collect();
    for task in concurrent {
        assert_eq!(task.await.unwrap().unwrap_err(), VerifyError::UnknownKey);
    }
    for i in 50..100 {
        let jws = forge(
            &keys,
            serde_json::json!({"alg": "ES256", "kid": format!("forged-{i}")}),
        );
        assert_eq!(
            set.verify(&jws, ASYMMETRIC).await.unwrap_err(),
            VerifyError::UnknownKey
        );
    }
    assert!(
        started.elapsed() < interval,
        "the test ran too slowly to judge"
    );
    let fetches = server.fetches.load(Ordering::SeqCst);
    assert!(fetches <= 2, "{fetches} fetches for one interval");

    // A genuine key still verifies without a fetch.
    let good = sign(&keys, serde_json::json!({"sub": "a"}));
    set.verify(&good, ASYMMETRIC).await.unwrap();
    assert_eq!(server.fetches.load(Ordering::SeqCst), fetches);

    // After the interval, one more miss may fetch once more.
    tokio::time::sleep(interval).await;
    for i in 0..20 {
        let jws = forge(
            &keys,
            serde_json::json!({"alg": "ES256", "kid": format!("later-{i}")}),
        );
        let _ = set.verify(&jws, ASYMMETRIC).await;
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), fetches + 1);
}

#[tokio::test]
async fn a_rotated_key_is_found_by_refetching() {
    let old = SigningKeys::from_pem(&p256_pem()).unwrap();
    let new = SigningKeys::from_pem(&ed25519_pem()).unwrap();
    let server = jwks_server(old.jwks_json()).await;
    let set = key_set(&server, Duration::ZERO);
    set.verify(&sign(&old, serde_json::json!({})), ASYMMETRIC)
        .await
        .unwrap();
    *server.body.lock().unwrap() = new.jwks_json();
    let verified = set
        .verify(&sign(&new, serde_json::json!({"sub": "b"})), ASYMMETRIC)
        .await
        .unwrap();
    assert_eq!(verified.claims["sub"], "b");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_unreachable_jwks_is_a_typed_error() {
    let keys = SigningKeys::from_pem(&p256_pem()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = Url::parse(&format!("http://{}/jwks", listener.local_addr().unwrap())).unwrap();
    drop(listener);
    let set = AsKeySet::new(reqwest::Client::new(), url, JwksOptions::default());
    let jws = sign(&keys, serde_json::json!({}));
    assert!(matches!(
        set.verify(&jws, ASYMMETRIC).await,
        Err(VerifyError::Keys(JwksError::Unreachable(_)))
    ));
}

#[test]
fn the_jwk_fixes_which_algorithms_a_key_verifies() {
    let p256 = SigningKeys::from_pem(&p256_pem()).unwrap();
    let rsa = SigningKeys::from_pem(&rsa_pem()).unwrap();
    let mut rsa_no_alg = serde_json::to_value(rsa.current().public_jwk()).unwrap();
    rsa_no_alg.as_object_mut().unwrap().remove("alg");
    let mut ec_wrong_alg = serde_json::to_value(p256.current().public_jwk()).unwrap();
    ec_wrong_alg["alg"] = "ES384".into();
    let mut enc = serde_json::to_value(p256.current().public_jwk()).unwrap();
    enc["use"] = "enc".into();
    let set = serde_json::json!({"keys": [
        p256.current().public_jwk(), rsa.current().public_jwk(), rsa_no_alg, ec_wrong_alg, enc,
        {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
        {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc3; 128]), "e": "AQAB"},
        "not an object",
    ]});
    let keys = parse_jwks(set.to_string().as_bytes()).unwrap();
    let algs: Vec<Vec<Algorithm>> = keys.iter().map(|k| k.algs.clone()).collect();
    assert_eq!(
        algs,
        vec![
            vec![Algorithm::ES256],
            vec![Algorithm::RS256],
            RSA_ALGS.to_vec()
        ]
    );
    assert!(matches!(parse_jwks(b"[]"), Err(JwksError::Malformed(_))));
    assert!(matches!(
        parse_jwks(b"{\"keys\":{}}"),
        Err(JwksError::Malformed(_))
    ));
}
