//! A DPoP client for the tests: a fresh P-256 key of its own, and real
//! proofs (RFC 9449 §4.2) signed with it, plus the forgeries a hostile
//! client would try.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub struct DpopClient {
    encoding: EncodingKey,
    pub jwk: Value,
    /// RFC 7638 thumbprint of `jwk`, computed here from its members.
    pub jkt: String,
    serial: std::sync::atomic::AtomicUsize,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `ath` for `token`.
pub fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

impl DpopClient {
    pub fn new() -> Self {
        let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem();
        let secret = p256::SecretKey::from_pkcs8_pem(&pem).unwrap();
        let point = secret.public_key().to_encoded_point(false);
        let x = URL_SAFE_NO_PAD.encode(point.x().unwrap());
        let y = URL_SAFE_NO_PAD.encode(point.y().unwrap());
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        DpopClient {
            encoding: EncodingKey::from_ec_der(secret.to_pkcs8_der().unwrap().as_bytes()),
            jwk: json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            jkt: URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())),
            serial: Default::default(),
        }
    }

    pub fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk})
    }

    /// Fresh claims for `method` `htu` with `token`: a new `jti`, `iat` now.
    pub fn claims(&self, method: &str, htu: &str, token: &str) -> Value {
        let n = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        json!({
            "jti": format!("{}-{n}-{}", &self.jkt[..8], now()),
            "htm": method,
            "htu": htu,
            "iat": now(),
            "ath": ath(token),
        })
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, Algorithm::ES256)
                .unwrap();
        format!("{message}.{signature}")
    }

    /// A valid proof.
    pub fn proof(&self, method: &str, htu: &str, token: &str) -> String {
        self.sign(&self.header(), &self.claims(method, htu, token))
    }

    /// `alg: none`, with a placeholder signature.
    pub fn unsigned(&self, claims: &Value) -> String {
        let mut header = self.header();
        header["alg"] = json!("none");
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    /// HS256 keyed with the public key's JWK text: the classic confusion.
    pub fn hs256_with_public_key(&self, claims: &Value) -> String {
        let mut header = self.header();
        header["alg"] = json!("HS256");
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let key = EncodingKey::from_secret(self.jwk.to_string().as_bytes()).unwrap();
        let mac = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
        format!("{message}.{mac}")
    }
}
