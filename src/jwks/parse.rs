//! Reading a JWKS document into the keys the verifier may use.

use super::*;

/// One JWK as found in the set; members we do not use are ignored.
#[derive(Deserialize)]
pub(super) struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// Parses a JWK Set, keeping the keys that can verify signatures. Keys of
/// other types, for encryption, or malformed, are skipped one by one.
pub(super) fn parse_jwks(body: &[u8]) -> Result<Vec<AsKey>, JwksError> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| JwksError::Malformed(e.to_string()))?;
    let keys: Vec<AsKey> = set
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<RawJwk>(value).ok())
        .filter_map(usable_key)
        .collect();
    if keys.is_empty() {
        return Err(JwksError::NoUsableKeys);
    }
    Ok(keys)
}

pub(super) fn usable_key(jwk: RawJwk) -> Option<AsKey> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return None;
    }
    let (family, key) = verifying_key(&PublicJwk {
        kty: &jwk.kty,
        crv: jwk.crv.as_deref(),
        x: jwk.x.as_deref(),
        y: jwk.y.as_deref(),
        n: jwk.n.as_deref(),
        e: jwk.e.as_deref(),
    })?;
    let algs: Vec<Algorithm> = match jwk.alg.as_deref() {
        None => family.to_vec(),
        // RFC 8037 allows "Ed25519" as a fully specified name.
        Some("Ed25519") if family == [Algorithm::EdDSA] => family.to_vec(),
        Some(name) => {
            let alg = name.parse::<Algorithm>().ok()?;
            family.contains(&alg).then(|| vec![alg])?
        }
    };
    Some(AsKey {
        kid: jwk.kid,
        algs,
        key,
    })
}

/// The public members of a JWK, as the texts it gives them.
pub(crate) struct PublicJwk<'a> {
    pub kty: &'a str,
    pub crv: Option<&'a str>,
    pub x: Option<&'a str>,
    pub y: Option<&'a str>,
    pub n: Option<&'a str>,
    pub e: Option<&'a str>,
}

/// The algorithms a public key can verify (by its type and curve) and the
/// key itself, or `None` for a symmetric, unknown, malformed or too small
/// key: one rule for the AS's keys and for the keys of DPoP proofs.
/// Coordinates must decode (base64url, no padding) to their curve's size;
/// an RSA modulus needs [`MIN_RSA_MODULUS_BYTES`] significant bytes.
pub(crate) fn verifying_key(jwk: &PublicJwk<'_>) -> Option<(&'static [Algorithm], DecodingKey)> {
    let decoded_len = |v: Option<&str>| {
        v.and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .map(|b| b.len())
    };
    match (jwk.kty, jwk.crv) {
        ("RSA", _) => {
            let n = jwk.n?;
            let modulus = URL_SAFE_NO_PAD.decode(n).ok()?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return None;
            }
            Some((RSA_ALGS, DecodingKey::from_rsa_components(n, jwk.e?).ok()?))
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (size, alg): (usize, &'static [Algorithm]) = if crv == "P-256" {
                (32, &[Algorithm::ES256])
            } else {
                (48, &[Algorithm::ES384])
            };
            if decoded_len(jwk.x) != Some(size) || decoded_len(jwk.y) != Some(size) {
                return None;
            }
            Some((alg, DecodingKey::from_ec_components(jwk.x?, jwk.y?).ok()?))
        }
        ("OKP", Some("Ed25519")) => {
            if decoded_len(jwk.x) != Some(32) {
                return None;
            }
            Some((
                &[Algorithm::EdDSA],
                DecodingKey::from_ed_components(jwk.x?).ok()?,
            ))
        }
        // "oct" (symmetric) and anything else: never a verification key here.
        _ => None,
    }
}
