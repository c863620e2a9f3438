use super::*;
use jsonwebtoken::{DecodingKey, Validation};
use p256::pkcs8::LineEnding;

/// A fresh P-256 key as PKCS#8 PEM.
pub(crate) fn p256_pem() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem()
}

/// A fresh Ed25519 key as PKCS#8 PEM.
pub(crate) fn ed25519_pem() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .unwrap()
        .serialize_pem()
}

/// A fresh 2048-bit RSA key as PKCS#8 PEM.
pub(crate) fn rsa_pem() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .unwrap()
        .serialize_pem()
}

fn verify(keys: &SigningKeys, jwt: &str) -> serde_json::Map<String, serde_json::Value> {
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&keys.jwks_json()).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    jsonwebtoken::decode(jwt, &key, &validation).unwrap().claims
}

#[test]
fn each_key_type_signs_with_its_own_algorithm_and_verifies_with_the_published_jwk() {
    for (pem, alg, kty) in [
        (p256_pem(), Algorithm::ES256, "EC"),
        (ed25519_pem(), Algorithm::EdDSA, "OKP"),
        (rsa_pem(), Algorithm::RS256, "RSA"),
    ] {
        let keys = SigningKeys::from_pem(&pem).unwrap();
        let key = keys.current();
        assert_eq!(key.alg(), alg);
        assert_eq!(key.public_jwk().kty, kty);
        let jwt = key.sign("JWT", &serde_json::json!({"sub": "x"})).unwrap();
        assert_eq!(verify(&keys, &jwt)["sub"], "x");
    }
}

#[test]
fn kid_is_the_rfc7638_thumbprint_and_agrees_with_jsonwebtoken() {
    // RFC 7638 §3.1 example.
    let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    assert_eq!(
        thumbprint_rsa("AQAB", n),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    for pem in [p256_pem(), ed25519_pem(), rsa_pem()] {
        let keys = SigningKeys::from_pem(&pem).unwrap();
        let published: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(serde_json::to_value(keys.current().public_jwk()).unwrap())
                .unwrap();
        assert_eq!(
            published
                .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .unwrap(),
            keys.current().kid()
        );
    }
}

#[test]
fn a_file_may_hold_several_keys_the_first_signs_and_all_are_published() {
    let (first, second) = (ed25519_pem(), p256_pem());
    let keys =
        SigningKeys::from_pem(&format!("# rotation: new key first\n{first}\n{second}")).unwrap();
    assert_eq!(keys.all().len(), 2);
    assert_eq!(keys.current().alg(), Algorithm::EdDSA);
    let jwks: serde_json::Value = serde_json::from_str(&keys.jwks_json()).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [keys.all()[0].kid(), keys.all()[1].kid()]);
    for key in jwks["keys"].as_array().unwrap() {
        assert_eq!(key["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "{private} published");
        }
    }
    let dup = SigningKeys::from_pem(&format!("{first}{first}"));
    assert!(matches!(dup, Err(KeyError::Duplicate { .. })), "{dup:?}");
}

#[test]
fn pkcs8_v1_ed25519_keys_as_openssl_writes_them_load() {
    // RFC 8410 §10.3: a v1 PKCS#8 Ed25519 key (no public key inside).
    let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                   -----END PRIVATE KEY-----\n";
    let keys = SigningKeys::from_pem(pem).unwrap();
    let public =
        hex::decode("19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1").unwrap();
    assert_eq!(
        keys.current().public_jwk().x.as_deref(),
        Some(URL_SAFE_NO_PAD.encode(public).as_str())
    );
    let jwt = keys
        .current()
        .sign("JWT", &serde_json::json!({"a": 1}))
        .unwrap();
    assert_eq!(verify(&keys, &jwt)["a"], 1);
}

#[test]
fn sec1_and_pkcs1_pem_load_like_pkcs8() {
    let ec = p256::SecretKey::from_pkcs8_pem(&p256_pem()).unwrap();
    let sec1 = ec.to_sec1_pem(LineEnding::LF).unwrap();
    let from_sec1 = SigningKeys::from_pem(&format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
        &*sec1
    ))
    .unwrap();
    assert_eq!(from_sec1.current().alg(), Algorithm::ES256);
    let jwt = from_sec1
        .current()
        .sign("JWT", &serde_json::json!({}))
        .unwrap();
    verify(&from_sec1, &jwt);

    let rsa = rsa::RsaPrivateKey::from_pkcs8_pem(&rsa_pem()).unwrap();
    let pkcs1 = rsa.to_pkcs1_pem(LineEnding::LF).unwrap();
    let from_pkcs1 = SigningKeys::from_pem(&pkcs1).unwrap();
    assert_eq!(from_pkcs1.current().alg(), Algorithm::RS256);
    let jwt = from_pkcs1
        .current()
        .sign("JWT", &serde_json::json!({}))
        .unwrap();
    verify(&from_pkcs1, &jwt);
}

#[test]
fn unusable_files_get_a_specific_error() {
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .unwrap()
        .serialize_pem();
    let cert = rcgen::generate_simple_self_signed(vec!["x".to_owned()])
        .unwrap()
        .cert
        .pem();
    type Expect = fn(&KeyError) -> bool;
    let cases: Vec<(String, Expect)> = vec![
        (String::new(), |e| matches!(e, KeyError::NoKeys)),
        ("just text".to_owned(), |e| matches!(e, KeyError::NoKeys)),
        (
            p384,
            |e| matches!(e, KeyError::Unsupported { what, .. } if what.contains("1.3.132.0.34")),
        ),
        (
            cert,
            |e| matches!(e, KeyError::NotPrivateKey { label, .. } if label == "CERTIFICATE"),
        ),
        (
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
                .to_owned(),
            |e| matches!(e, KeyError::Encrypted { index: 1 }),
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n".to_owned(),
            |e| matches!(e, KeyError::Pem { index: 1, .. }),
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_owned(),
            |e| matches!(e, KeyError::Malformed { index: 1, .. }),
        ),
        (
            format!("{}-----BEGIN PRIVATE KEY-----\nMIIB\n", ed25519_pem()),
            |e| matches!(e, KeyError::Pem { index: 2, .. }),
        ),
    ];
    for (pem, expected) in cases {
        match SigningKeys::from_pem(&pem) {
            Err(e) => assert!(expected(&e), "{pem:?}: {e}"),
            Ok(keys) => panic!("{pem:?} loaded: {keys:?}"),
        }
    }
    let missing = SigningKeys::from_pem_file(Path::new("/nonexistent/key.pem"));
    assert!(matches!(&missing, Err(KeyError::Read { path, .. }) if path == "/nonexistent/key.pem"));
}

#[test]
fn small_rsa_keys_are_refused() {
    let mut rng = rsa::rand_core::OsRng;
    let small = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
    let pem = small.to_pkcs1_pem(LineEnding::LF).unwrap();
    let error = SigningKeys::from_pem(&pem).unwrap_err();
    assert!(error.to_string().contains("1024-bit RSA key"), "{error}");
}

#[test]
fn debug_output_holds_no_key_material() {
    let pem = p256_pem();
    let keys = SigningKeys::from_pem(&pem).unwrap();
    let debug = format!("{keys:?}");
    assert!(debug.contains(keys.current().kid()));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!debug.contains(&body[..16]));
    assert!(!debug.contains("EncodingKey"));
}
