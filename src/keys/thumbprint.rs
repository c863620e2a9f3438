//! RFC 7638 JWK thumbprints: the SHA-256 of the required members in
//! lexicographic order, base64url-encoded.

use super::*;

/// RFC 7638 thumbprint of an EC public key.
pub fn thumbprint_ec(crv: &str, x: &str, y: &str) -> String {
    thumbprint(&format!(
        r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#
    ))
}

/// RFC 7638 thumbprint of an OKP (Ed25519) public key.
pub fn thumbprint_okp(crv: &str, x: &str) -> String {
    thumbprint(&format!(r#"{{"crv":"{crv}","kty":"OKP","x":"{x}"}}"#))
}

/// RFC 7638 thumbprint of an RSA public key.
pub fn thumbprint_rsa(e: &str, n: &str) -> String {
    thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#))
}

pub(super) fn thumbprint(canonical: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}
