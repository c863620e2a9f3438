//! Reading and verifying one DPoP proof (RFC 9449 §4.2–4.3): a compact JWS
//! whose header carries the client's public key, and whose claims bind it to
//! one request.
//!
//! [`verify_signature`] needs nothing but the proof and the allow-list: it
//! checks the shape, `typ`, `alg`, the key and the signature, and returns the
//! claims with the key's RFC 7638 thumbprint. [`Proof::check`] then compares
//! the claims with the request. Nothing here panics on any input, and every
//! failure is a [`ProofError`] naming what was wrong.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use reqwest::Url;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::jwks::{PublicJwk, verifying_key};
use crate::keys::{thumbprint_ec, thumbprint_okp, thumbprint_rsa};

/// The `typ` of a DPoP proof (RFC 9449 §4.2).
pub const DPOP_TYP: &str = "dpop+jwt";
/// A proof longer than this is refused before it is decoded (an RSA-4096 key
/// in the header makes a proof of about 1.5 KiB).
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// The longest `jti` accepted (RFC 9449 asks for 96 bits of randomness; a
/// UUID is 36 characters).
pub const MAX_JTI_BYTES: usize = 256;
/// JWK members that only a private (or symmetric) key has.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a proof is refused. Each is answered 401 `invalid_dpop_proof` (a
/// missing or stale nonce is a [`super::DpopDenial::UseNonce`] instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("DPoP proof missing")]
    Missing,
    #[error("more than one DPoP proof")]
    Multiple,
    #[error("DPoP proof too long")]
    TooLong,
    #[error("DPoP proof is not a compact JWS")]
    NotCompact,
    #[error("DPoP proof header is not a JSON object with the required members")]
    BadHeader,
    #[error("DPoP proof typ is not dpop+jwt")]
    WrongType,
    #[error("DPoP proof alg is not allowed")]
    AlgorithmNotAllowed,
    #[error("DPoP proof jwk is missing or not a usable public key")]
    BadKey,
    #[error("DPoP proof jwk holds private key material")]
    PrivateKey,
    #[error("DPoP proof jwk does not fit alg")]
    KeyAlgorithmMismatch,
    #[error("DPoP proof signature does not verify")]
    BadSignature,
    #[error("DPoP proof claims are not a JSON object with the required members")]
    BadClaims,
    #[error("DPoP proof htm does not match the request method")]
    WrongMethod,
    #[error("DPoP proof htu does not match the request URL")]
    WrongUrl,
    #[error("DPoP proof iat is outside the accepted window")]
    Stale,
    #[error("DPoP proof ath does not match the access token")]
    WrongAth,
    #[error("DPoP proof jti was already used")]
    Replayed,
}

/// A proof whose signature verified with the key in its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 SHA-256 thumbprint of the header's `jwk`.
    pub jkt: String,
    pub jti: String,
    pub htm: String,
    pub htu: String,
    /// Unix seconds (fractions dropped).
    pub iat: u64,
    pub ath: Option<String>,
    pub nonce: Option<String>,
}

/// What the request says the proof must match.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub method: &'a str,
    /// The request URL the client used (query and fragment ignored).
    pub htu: &'a Url,
    /// The access token of the `Authorization: DPoP` header.
    pub access_token: &'a str,
    /// Unix seconds.
    pub now: u64,
    /// How far in the past `iat` may be.
    pub window: u64,
    /// How far in the future `iat` may be (clock skew).
    pub skew: u64,
}

/// `base64url(SHA-256(token))`, the `ath` of a proof for `token`.
pub fn ath_of(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// Checks the proof's shape, header, key and signature.
///
/// # Errors
///
/// The first [`ProofError`] found, in the order of RFC 9449 §4.3.
pub fn verify_signature(proof: &str, allowed: &[Algorithm]) -> Result<Proof, ProofError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(ProofError::TooLong);
    }
    // Tyk passes the first value of the header only; two proofs in one
    // value (a list) are refused here.
    if proof.contains(',') {
        return Err(ProofError::Multiple);
    }
    let (header, payload, signature) = crate::jwt::split_compact(proof)
        .filter(|(_, _, signature)| !signature.is_empty())
        .ok_or(ProofError::NotCompact)?;
    let header: Map<String, Value> =
        crate::jwt::decode_json(header).ok_or(ProofError::BadHeader)?;
    match header.get("typ").and_then(Value::as_str) {
        Some(typ) if typ.eq_ignore_ascii_case(DPOP_TYP) => {}
        Some(_) => return Err(ProofError::WrongType),
        None => return Err(ProofError::BadHeader),
    }
    // No extension is understood, so none may be critical (RFC 7515 §4.1.11).
    if header.contains_key("crit") {
        return Err(ProofError::BadHeader);
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(ProofError::BadHeader)?;
    let alg = alg
        .parse::<Algorithm>()
        .ok()
        .filter(|a| allowed.contains(a))
        .ok_or(ProofError::AlgorithmNotAllowed)?;
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err(ProofError::BadKey);
    };
    let (key, jkt) = public_key(jwk, alg)?;
    let signed_len = proof.len() - signature.len() - 1;
    let message = proof.as_bytes().get(..signed_len).unwrap_or_default();
    match jsonwebtoken::crypto::verify(signature, message, &key, alg) {
        Ok(true) => {}
        Ok(false) | Err(_) => return Err(ProofError::BadSignature),
    }
    let claims: Map<String, Value> =
        crate::jwt::decode_json(payload).ok_or(ProofError::BadClaims)?;
    read_claims(&claims, jkt)
}

fn read_claims(claims: &Map<String, Value>, jkt: String) -> Result<Proof, ProofError> {
    let string = |name: &str| claims.get(name).and_then(Value::as_str);
    let optional = |name: &str| match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ProofError::BadClaims),
    };
    let jti = string("jti")
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_BYTES)
        .ok_or(ProofError::BadClaims)?;
    let htm = string("htm")
        .filter(|m| !m.is_empty())
        .ok_or(ProofError::BadClaims)?;
    let htu = string("htu")
        .filter(|u| !u.is_empty())
        .ok_or(ProofError::BadClaims)?;
    let iat = claims
        .get("iat")
        .and_then(|v| {
            v.as_u64().or_else(|| {
                v.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15)
                    .map(|f| f as u64)
            })
        })
        .ok_or(ProofError::BadClaims)?;
    Ok(Proof {
        jkt,
        jti: jti.to_owned(),
        htm: htm.to_owned(),
        htu: htu.to_owned(),
        iat,
        ath: optional("ath")?,
        nonce: optional("nonce")?,
    })
}

impl Proof {
    /// Compares the claims with the request (RFC 9449 §4.3 steps 8–12;
    /// the nonce and the replay cache are checked by the caller).
    ///
    /// # Errors
    ///
    /// The first claim that does not match.
    pub fn check(&self, expected: &Expected<'_>) -> Result<(), ProofError> {
        if self.htm != expected.method {
            return Err(ProofError::WrongMethod);
        }
        if !same_target(&self.htu, expected.htu) {
            return Err(ProofError::WrongUrl);
        }
        if self.iat.saturating_add(expected.window) < expected.now
            || self.iat > expected.now.saturating_add(expected.skew)
        {
            return Err(ProofError::Stale);
        }
        match &self.ath {
            Some(ath) if *ath == ath_of(expected.access_token) => Ok(()),
            _ => Err(ProofError::WrongAth),
        }
    }
}

/// RFC 9449 §4.3 with RFC 3986 §6.2.2–6.2.3 normalisation: scheme and host
/// compared without case, a default port the same as none, query and
/// fragment ignored, paths compared after dot-segment removal.
pub fn same_target(htu: &str, expected: &Url) -> bool {
    let Ok(htu) = Url::parse(htu) else {
        return false;
    };
    htu.scheme() == expected.scheme()
        && htu.host_str().is_some()
        && htu.host_str() == expected.host_str()
        && htu.port_or_known_default() == expected.port_or_known_default()
        && htu.path() == expected.path()
        && htu.username().is_empty()
        && htu.password().is_none()
}

/// The verifying key for `alg` and its thumbprint, from a header `jwk`.
fn public_key(
    jwk: &Map<String, Value>,
    alg: Algorithm,
) -> Result<(DecodingKey, String), ProofError> {
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(ProofError::PrivateKey);
    }
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let public = PublicJwk {
        kty: text("kty").ok_or(ProofError::BadKey)?,
        crv: text("crv"),
        x: text("x"),
        y: text("y"),
        n: text("n"),
        e: text("e"),
    };
    let (family, key) = verifying_key(&public).ok_or(ProofError::BadKey)?;
    if !family.contains(&alg) {
        return Err(ProofError::KeyAlgorithmMismatch);
    }
    // The members are the texts the key was built from (strict base64url).
    let thumbprint = match (
        public.kty, public.crv, public.x, public.y, public.n, public.e,
    ) {
        ("EC", Some(crv), Some(x), Some(y), _, _) => thumbprint_ec(crv, x, y),
        ("OKP", Some(crv), Some(x), _, _, _) => thumbprint_okp(crv, x),
        ("RSA", _, _, _, Some(n), Some(e)) => thumbprint_rsa(e, n),
        _ => return Err(ProofError::BadKey),
    };
    Ok((key, thumbprint))
}
