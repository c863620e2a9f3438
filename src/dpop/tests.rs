use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use super::*;
use crate::config::DEFAULT_DPOP_ALGS;
use crate::keys::SigningKeys;

const TOKEN: &str = "opaque-token-123";
const NOW: u64 = 1_800_000_000;
const URL: &str = "https://api.example.com/orders/1";

/// A client key: signs proofs, and shows its public JWK and thumbprint.
pub(super) struct ClientKey {
    encoding: EncodingKey,
    alg: Algorithm,
    jwk: Value,
    jkt: String,
}

impl ClientKey {
    fn new(pem: &str) -> Self {
        let keys = SigningKeys::from_pem(pem).unwrap();
        let key = keys.current();
        let mut jwk = serde_json::to_value(key.public_jwk()).unwrap();
        for extra in ["kid", "alg", "use"] {
            jwk.as_object_mut().unwrap().remove(extra);
        }
        ClientKey {
            encoding: key.encoding().clone(),
            alg: key.alg(),
            jwk,
            jkt: key.kid().to_owned(),
        }
    }

    fn es256() -> Self {
        Self::new(&crate::keys::tests::p256_pem())
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": format!("{:?}", self.alg), "jwk": self.jwk})
    }

    fn sign_with(&self, header: &Value, claims: &Value, alg: Algorithm) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, alg).unwrap();
        format!("{message}.{signature}")
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        self.sign_with(header, claims, self.alg)
    }

    fn proof(&self, claims: &Value) -> String {
        self.sign(&self.header(), claims)
    }
}

fn claims() -> Value {
    json!({
        "jti": "e1j3V_bKic8-LAEB",
        "htm": "GET",
        "htu": URL,
        "iat": NOW,
        "ath": ath_of(TOKEN),
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(name);
    } else {
        claims[name] = value;
    }
    claims
}

fn check(proof: &str) -> Result<Proof, ProofError> {
    let url = Url::parse(URL).unwrap();
    let proof = verify_signature(proof, DEFAULT_DPOP_ALGS)?;
    proof.check(&Expected {
        method: "GET",
        htu: &url,
        access_token: TOKEN,
        now: NOW,
        window: 60,
        skew: 5,
    })?;
    Ok(proof)
}

#[test]
fn a_valid_proof_of_each_key_type_verifies_and_names_its_key() {
    for pem in [
        crate::keys::tests::p256_pem(),
        crate::keys::tests::ed25519_pem(),
        crate::keys::tests::rsa_pem(),
    ] {
        let key = ClientKey::new(&pem);
        let proof = check(&key.proof(&claims())).unwrap();
        assert_eq!(proof.jkt, key.jkt, "{:?}", key.alg);
        assert_eq!(proof.jti, "e1j3V_bKic8-LAEB");
    }
    // PS256 with an RSA key.
    let key = ClientKey::new(&crate::keys::tests::rsa_pem());
    let mut header = key.header();
    header["alg"] = json!("PS256");
    let proof = key.sign_with(&header, &claims(), Algorithm::PS256);
    assert_eq!(check(&proof).unwrap().jkt, key.jkt);
}

#[test]
fn the_shape_of_the_proof_is_checked() {
    let key = ClientKey::es256();
    let good = key.proof(&claims());
    let (head, sig) = good.rsplit_once('.').unwrap();
    for (proof, why) in [
        (format!("{good},{good}"), ProofError::Multiple),
        ("a".repeat(MAX_PROOF_BYTES + 1), ProofError::TooLong),
        (head.to_owned(), ProofError::NotCompact),
        (format!("{head}."), ProofError::NotCompact),
        (format!("{good}.x"), ProofError::NotCompact),
        (
            format!("bm90IGpzb24.{}", &good[good.find('.').unwrap() + 1..]),
            ProofError::BadHeader,
        ),
        (format!("{head}.{}", &sig[1..]), ProofError::BadSignature),
    ] {
        assert_eq!(check(&proof).map(|_| ()), Err(why), "{why:?}");
    }
}

#[test]
fn the_header_must_be_a_dpop_proof_with_an_allowed_asymmetric_algorithm() {
    let key = ClientKey::es256();
    let header = key.header();
    let sign = |h: Value| key.sign(&h, &claims());
    assert_eq!(
        check(&sign(with(header.clone(), "typ", json!("JWT")))).map(|_| ()),
        Err(ProofError::WrongType)
    );
    assert_eq!(
        check(&sign(with(header.clone(), "typ", Value::Null))).map(|_| ()),
        Err(ProofError::BadHeader)
    );
    assert_eq!(
        check(&sign(with(header.clone(), "crit", json!(["exp"])))).map(|_| ()),
        Err(ProofError::BadHeader)
    );
    assert_eq!(
        check(&sign(with(header.clone(), "alg", Value::Null))).map(|_| ()),
        Err(ProofError::BadHeader)
    );
    assert_eq!(
        check(&sign(with(header.clone(), "alg", json!("ES512")))).map(|_| ()),
        Err(ProofError::AlgorithmNotAllowed)
    );
    // alg none, empty signature.
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(with(header.clone(), "alg", json!("none")).to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    assert_eq!(check(&unsigned).map(|_| ()), Err(ProofError::NotCompact));
    let unsigned = format!("{unsigned}c2ln");
    assert_eq!(
        check(&unsigned).map(|_| ()),
        Err(ProofError::AlgorithmNotAllowed)
    );
    // HS256 keyed with the public JWK's text: a real HMAC, still refused.
    let secret = EncodingKey::from_secret(key.jwk.to_string().as_bytes()).unwrap();
    let hs_header = with(header.clone(), "alg", json!("HS256"));
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(hs_header.to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    let mac = jsonwebtoken::crypto::sign(message.as_bytes(), &secret, Algorithm::HS256).unwrap();
    assert_eq!(
        check(&format!("{message}.{mac}")).map(|_| ()),
        Err(ProofError::AlgorithmNotAllowed)
    );
    // An allowed algorithm that the operator left off the list.
    let proof = key.proof(&claims());
    assert_eq!(
        verify_signature(&proof, &[Algorithm::EdDSA]).map(|_| ()),
        Err(ProofError::AlgorithmNotAllowed)
    );
}

#[test]
fn the_key_must_be_public_fit_the_algorithm_and_sign_the_proof() {
    let key = ClientKey::es256();
    let other = ClientKey::es256();
    let header = key.header();
    let sign = |h: Value| key.sign(&h, &claims());
    let jwk_with = |name: &str, value: Value| {
        let mut h = header.clone();
        h["jwk"] = with(h["jwk"].clone(), name, value);
        h
    };
    for (h, why) in [
        (with(header.clone(), "jwk", Value::Null), ProofError::BadKey),
        (
            with(header.clone(), "jwk", json!("not an object")),
            ProofError::BadKey,
        ),
        (jwk_with("d", json!("c2VjcmV0")), ProofError::PrivateKey),
        (jwk_with("kty", json!("oct")), ProofError::BadKey),
        (jwk_with("crv", json!("P-521")), ProofError::BadKey),
        (jwk_with("x", json!("AQAB")), ProofError::BadKey),
        (jwk_with("y", json!("not+base64url")), ProofError::BadKey),
        (jwk_with("y", Value::Null), ProofError::BadKey),
    ] {
        assert_eq!(check(&sign(h)).map(|_| ()), Err(why), "{why:?}");
    }
    let mut secret_jwk = header.clone();
    secret_jwk["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"});
    assert_eq!(
        check(&sign(secret_jwk)).map(|_| ()),
        Err(ProofError::PrivateKey)
    );
    // An EC key under an RSA algorithm.
    let mismatched = with(header.clone(), "alg", json!("RS256"));
    assert_eq!(
        check(&sign(mismatched)).map(|_| ()),
        Err(ProofError::KeyAlgorithmMismatch)
    );
    // Signed by another key than the one in the header.
    let forged = other.sign(&header, &claims());
    assert_eq!(check(&forged).map(|_| ()), Err(ProofError::BadSignature));
}

#[test]
fn the_claims_must_be_present_and_match_the_request() {
    let key = ClientKey::es256();
    let refused = |c: Value| check(&key.proof(&c)).map(|_| ());
    for (name, value) in [
        ("jti", Value::Null),
        ("jti", json!("")),
        ("jti", json!("j".repeat(MAX_JTI_BYTES + 1))),
        ("jti", json!(7)),
        ("htm", Value::Null),
        ("htu", Value::Null),
        ("iat", Value::Null),
        ("iat", json!("1800000000")),
        ("iat", json!(-5)),
        ("ath", json!(12)),
        ("nonce", json!(false)),
    ] {
        assert_eq!(
            refused(with(claims(), name, value.clone())),
            Err(ProofError::BadClaims),
            "{name}={value}"
        );
    }
    assert_eq!(
        refused(with(claims(), "htm", json!("POST"))),
        Err(ProofError::WrongMethod)
    );
    assert_eq!(
        refused(with(claims(), "htm", json!("get"))),
        Err(ProofError::WrongMethod)
    );
    for htu in [
        "https://api.example.com/orders/2",
        "http://api.example.com/orders/1",
        "https://evil.example.com/orders/1",
        "https://api.example.com:8443/orders/1",
        "https://user@api.example.com/orders/1",
        "/orders/1",
    ] {
        assert_eq!(
            refused(with(claims(), "htu", json!(htu))),
            Err(ProofError::WrongUrl),
            "{htu}"
        );
    }
    assert_eq!(
        refused(with(claims(), "iat", json!(NOW - 61))),
        Err(ProofError::Stale)
    );
    assert_eq!(
        refused(with(claims(), "iat", json!(NOW + 6))),
        Err(ProofError::Stale)
    );
    assert_eq!(
        refused(with(claims(), "ath", json!(ath_of("other")))),
        Err(ProofError::WrongAth)
    );
    assert_eq!(
        refused(with(claims(), "ath", Value::Null)),
        Err(ProofError::WrongAth)
    );
    // The edges of the window are inside.
    assert_eq!(refused(with(claims(), "iat", json!(NOW - 60))), Ok(()));
    assert_eq!(refused(with(claims(), "iat", json!(NOW + 5))), Ok(()));
    assert_eq!(
        refused(with(claims(), "iat", json!(NOW as f64 + 0.5))),
        Ok(())
    );
}

#[test]
fn htu_is_compared_after_normalisation_without_query_or_fragment() {
    let url = Url::parse(URL).unwrap();
    for same in [
        "https://API.Example.COM/orders/1",
        "HTTPS://api.example.com:443/orders/1",
        "https://api.example.com/orders/1?page=2",
        "https://api.example.com/orders/1#top",
        "https://api.example.com/orders/./1",
    ] {
        assert!(same_target(same, &url), "{same}");
    }
    for other in [
        "https://api.example.com/Orders/1",
        "https://api.example.com/orders/1/",
        "junk",
    ] {
        assert!(!same_target(other, &url), "{other}");
    }
}

mod replay;
mod screen;
