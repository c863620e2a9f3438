//! DPoP proofs (RFC 9449) for the `dpop-hit` workload: one P-256 client
//! key, and a fresh ES256 proof per request, made before the measured phase
//! so that signing costs the load generator nothing while it measures.
//!
//! A proof: header `{"typ":"dpop+jwt","alg":"ES256","jwk":{…public key…}}`,
//! claims `jti` (unique), `htm` (the method), `htu` (`scheme://Host/path`,
//! without query), `iat` (when made) and `ath` (base64url SHA-256 of the
//! access token). The token's introspection answer carries `cnf.jkt`, the
//! RFC 7638 thumbprint of that `jwk` ([`DpopKey::jkt`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};
use tyk_phantom_token::pb::MiniRequestObject;

pub struct DpopKey {
    key: SigningKey,
    /// The protected header, base64url: the same for every proof.
    header: String,
    jkt: String,
    /// Makes `jti`s unique across runs; the counter, within one.
    run_id: u64,
    next: AtomicU64,
}

impl DpopKey {
    /// A new random key.
    pub fn generate() -> Result<Self, String> {
        let key = loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
            // Fails only for zero or values past the group order.
            if let Ok(key) = SigningKey::from_bytes(&bytes.into()) {
                break key;
            }
        };
        let point = key.verifying_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err("an uncompressed point without coordinates".into());
        };
        let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
        let header = serde_json::json!({
            "typ": "dpop+jwt",
            "alg": "ES256",
            "jwk": {"kty": "EC", "crv": "P-256", "x": x, "y": y},
        });
        // RFC 7638: the required members only, in lexicographic order, no
        // white space.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let mut run_id = [0u8; 8];
        getrandom::fill(&mut run_id).map_err(|e| format!("no randomness: {e}"))?;
        Ok(DpopKey {
            key,
            header: URL_SAFE_NO_PAD.encode(header.to_string()),
            jkt: URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())),
            run_id: u64::from_le_bytes(run_id),
            next: AtomicU64::new(0),
        })
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key, base64url: the
    /// `cnf.jkt` of tokens bound to it.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// One proof for a request with `method` to `htu`, carrying `token`.
    pub fn proof(&self, method: &str, htu: &str, token: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = serde_json::json!({
            "jti": format!("{:016x}-{n:012x}", self.run_id),
            "htm": method,
            "htu": htu,
            "iat": iat,
            "ath": URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes())),
        });
        let input = format!(
            "{}.{}",
            self.header,
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        // ES256: ECDSA P-256 over SHA-256, the signature as r ‖ s.
        let signature: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// `n` proofs, each with its own `jti`.
    pub fn proofs(&self, n: usize, method: &str, htu: &str, token: &str) -> Vec<String> {
        (0..n).map(|_| self.proof(method, htu, token)).collect()
    }
}

/// The URL a proof names for `request`: its scheme, its `Host` header and
/// its path without the query.
pub fn htu(request: &MiniRequestObject) -> String {
    let host = request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map_or("", |(_, v)| v.as_str());
    let path = request.url.split(['?', '#']).next().unwrap_or("");
    format!("{}://{host}{path}", request.scheme)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::ThumbprintHash;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};

    const TOKEN: &str = "_0XBPWQQ_dpop-000000000000-8b6f0d4c";

    /// Checked with another JOSE implementation: the signature verifies
    /// with the key in the header, the header and claims are as RFC 9449
    /// says, and the thumbprint is the one that library computes.
    #[test]
    fn a_proof_verifies_with_its_own_jwk_and_names_the_request() {
        let key = DpopKey::generate().unwrap();
        let request = crate::load::template(0).request.unwrap();
        let htu = htu(&request);
        assert_eq!(htu, "http://gateway.example.com/orders/v1/orders");
        let proof = key.proof("GET", &htu, TOKEN);

        let header = decode_header(&proof).unwrap();
        assert_eq!(header.typ.as_deref(), Some("dpop+jwt"));
        assert_eq!(header.alg, Algorithm::ES256);
        let jwk = header.jwk.expect("a jwk in the header");
        assert_eq!(jwk.thumbprint(ThumbprintHash::SHA256).unwrap(), key.jkt());

        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let decoding = DecodingKey::from_jwk(&jwk).unwrap();
        let claims = decode::<serde_json::Value>(&proof, &decoding, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], htu);
        let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(TOKEN.as_bytes()));
        assert_eq!(claims["ath"], ath);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(claims["iat"].as_u64().unwrap().abs_diff(now) <= 5);
        assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));

        // The public key only: no private member in the header.
        let raw_header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(proof.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        let mut members: Vec<&String> = raw_header["jwk"].as_object().unwrap().keys().collect();
        members.sort();
        assert_eq!(members, ["crv", "kty", "x", "y"]);

        // Another key's signature does not verify under this jwk.
        let other = DpopKey::generate().unwrap().proof("GET", &htu, TOKEN);
        let (head, _) = proof.rsplit_once('.').unwrap();
        let (_, foreign) = other.rsplit_once('.').unwrap();
        let forged = format!("{head}.{foreign}");
        assert!(decode::<serde_json::Value>(&forged, &decoding, &validation).is_err());
    }

    #[test]
    fn every_proof_has_its_own_jti() {
        let key = DpopKey::generate().unwrap();
        let proofs = key.proofs(500, "GET", "http://h/p", TOKEN);
        let jtis: std::collections::HashSet<String> = proofs
            .iter()
            .map(|p| {
                let claims = p.split('.').nth(1).unwrap();
                let claims: serde_json::Value =
                    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
                claims["jti"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(jtis.len(), 500);
    }
}
