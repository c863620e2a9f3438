//! The plugin's own signing keys: read from a PEM file, used to sign the JWTs
//! it mints (and its client assertions), and published as a JWKS so that APIs
//! can verify those JWTs.
//!
//! A file may hold several private keys, for rotation: the **first** signs,
//! **all** are published, so a key can be announced before it signs and kept
//! published after it stops. The algorithm is fixed by the key: P-256 →
//! `ES256`, Ed25519 → `EdDSA`, RSA (2048 bits or more) → `RS256`. Each key's
//! `kid` is its RFC 7638 SHA-256 thumbprint, so it never needs configuring and
//! stays stable across restarts.
//!
//! PEM and DER are parsed with the RustCrypto crates (`pkcs8`, `p256`,
//! `ed25519-dalek`, `rsa`); signing is `jsonwebtoken` over aws-lc.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use pkcs8::ObjectIdentifier;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::traits::PublicKeyParts;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// `id-ecPublicKey` (RFC 5480).
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `secp256r1` / P-256 (RFC 5480).
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `id-Ed25519` (RFC 8410).
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// `rsaEncryption` (RFC 8017).
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// RSA keys shorter than this are refused (NIST SP 800-131A; aws-lc will not
/// verify shorter ones either).
pub const MIN_RSA_BITS: usize = 2048;

/// Why a key file cannot be used. Messages name the file and the block, never
/// key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key file {path:?}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the key file holds no PEM private key")]
    NoKeys,
    #[error("PEM block {index} is not valid PEM: {reason}")]
    Pem { index: usize, reason: String },
    #[error(
        "PEM block {index} is an encrypted private key; decrypt it first (openssl pkcs8 -nocrypt)"
    )]
    Encrypted { index: usize },
    #[error(
        "PEM block {index} (\"{label}\") is not a private key; expected PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY"
    )]
    NotPrivateKey { index: usize, label: String },
    #[error("PEM block {index} is not a well-formed {format} key: {reason}")]
    Malformed {
        index: usize,
        format: &'static str,
        reason: String,
    },
    #[error(
        "PEM block {index} holds an unsupported key ({what}); use P-256, Ed25519 or RSA of 2048 bits or more"
    )]
    Unsupported { index: usize, what: String },
    #[error("the key file holds the same key twice (kid {kid})")]
    Duplicate { kid: String },
    #[error("signing failed: {0}")]
    Sign(String),
}

/// One private key, ready to sign, with its public JWK.
#[derive(Clone)]
pub struct SigningKey {
    alg: Algorithm,
    kid: String,
    encoding: EncodingKey,
    public: PublicJwk,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The public half of a key, as published (RFC 7517 members).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicJwk {
    pub kty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    pub kid: String,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
}

impl SigningKey {
    /// The JWS algorithm this key signs with (fixed by the key).
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The RFC 7638 SHA-256 thumbprint, used as `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_jwk(&self) -> &PublicJwk {
        &self.public
    }

    #[cfg(test)]
    pub(crate) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    /// Signs `claims` as a compact JWS with header `{alg, typ, kid}`.
    ///
    /// # Errors
    ///
    /// [`KeyError::Sign`] when the crypto backend refuses (not expected for a
    /// key that loaded).
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, KeyError> {
        let mut header = Header::new(self.alg);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }
}

/// The keys of one PEM file: the first signs, all are published.
#[derive(Debug, Clone)]
pub struct SigningKeys {
    keys: Vec<SigningKey>,
}

/// A JWK Set as published at `/.well-known/jwks.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Jwks<'a> {
    pub keys: Vec<&'a PublicJwk>,
}

impl SigningKeys {
    /// Reads every private key in a PEM file.
    ///
    /// # Errors
    ///
    /// [`KeyError`] for an unreadable file, a file without private keys, or
    /// any block that is not a supported, well-formed private key.
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_pem(&text)
    }

    /// Reads every private key in PEM text. `EC PARAMETERS` blocks (written
    /// by `openssl ecparam -genkey`) are skipped; any other non-key block is
    /// refused rather than ignored, so a wrong file is noticed.
    ///
    /// # Errors
    ///
    /// As [`SigningKeys::from_pem_file`].
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let mut keys: Vec<SigningKey> = Vec::new();
        for (index, block) in pem_blocks(text).enumerate() {
            let index = index + 1;
            let (label, der) =
                pkcs8::der::pem::decode_vec(block.as_bytes()).map_err(|e| KeyError::Pem {
                    index,
                    reason: e.to_string(),
                })?;
            let key = match label {
                "PRIVATE KEY" => from_pkcs8(index, &der)?,
                "EC PRIVATE KEY" => {
                    let secret = p256::SecretKey::from_sec1_der(&der).map_err(|_| {
                        KeyError::Unsupported {
                            index,
                            what: "an EC key that is not a well-formed P-256 key".to_owned(),
                        }
                    })?;
                    p256_key(index, &secret)?
                }
                "RSA PRIVATE KEY" => {
                    let key = rsa::RsaPrivateKey::from_pkcs1_der(&der).map_err(|e| {
                        KeyError::Malformed {
                            index,
                            format: "PKCS#1 RSA",
                            reason: e.to_string(),
                        }
                    })?;
                    rsa_key(index, &key)?
                }
                "EC PARAMETERS" => continue,
                "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted { index }),
                other => {
                    return Err(KeyError::NotPrivateKey {
                        index,
                        label: other.to_owned(),
                    });
                }
            };
            if keys.iter().any(|k| k.kid == key.kid) {
                return Err(KeyError::Duplicate { kid: key.kid });
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        Ok(SigningKeys { keys })
    }

    /// The key that signs (the first in the file).
    pub fn current(&self) -> &SigningKey {
        // `from_pem` never builds an empty set.
        &self.keys[0]
    }

    /// Every key, in file order.
    pub fn all(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The public JWK Set.
    pub fn jwks(&self) -> Jwks<'_> {
        Jwks {
            keys: self.keys.iter().map(|k| &k.public).collect(),
        }
    }

    /// The public JWK Set as JSON, as served at `/.well-known/jwks.json`.
    pub fn jwks_json(&self) -> String {
        // Serialising plain strings into a Vec cannot fail.
        serde_json::to_string(&self.jwks()).unwrap_or_else(|_| String::from("{\"keys\":[]}"))
    }
}

/// The `-----BEGIN …-----` … `-----END …-----` blocks of a PEM file, in order.
/// Text outside blocks (comments, `openssl` headers) is ignored.
fn pem_blocks(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.find("-----BEGIN ")?;
        let after = &rest[start..];
        // The END line's own closing dashes end the block.
        let end = after
            .find("-----END ")
            .and_then(|e| after[e + 9..].find("-----").map(|close| e + 9 + close + 5));
        match end {
            Some(end) => {
                let block = &after[..end];
                rest = &after[end..];
                Some(block)
            }
            None => {
                // An unterminated block: hand it over so the decoder names it.
                rest = "";
                Some(after)
            }
        }
    })
}

fn from_pkcs8(index: usize, der: &[u8]) -> Result<SigningKey, KeyError> {
    let info = pkcs8::PrivateKeyInfo::try_from(der).map_err(|e| KeyError::Malformed {
        index,
        format: "PKCS#8",
        reason: e.to_string(),
    })?;
    let oid = info.algorithm.oid;
    if oid == OID_EC {
        let curve = info.algorithm.parameters_oid().ok();
        if curve != Some(OID_P256) {
            return Err(KeyError::Unsupported {
                index,
                what: format!(
                    "EC curve {}",
                    curve.map_or_else(|| "unnamed".to_owned(), |c| c.to_string())
                ),
            });
        }
        let secret = p256::SecretKey::from_pkcs8_der(der).map_err(|e| KeyError::Malformed {
            index,
            format: "P-256",
            reason: e.to_string(),
        })?;
        p256_key(index, &secret)
    } else if oid == OID_ED25519 {
        let secret =
            ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|e| KeyError::Malformed {
                index,
                format: "Ed25519",
                reason: e.to_string(),
            })?;
        ed25519_key(index, &secret)
    } else if oid == OID_RSA {
        let key = rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(|e| KeyError::Malformed {
            index,
            format: "PKCS#8 RSA",
            reason: e.to_string(),
        })?;
        rsa_key(index, &key)
    } else {
        Err(KeyError::Unsupported {
            index,
            what: format!("algorithm {oid}"),
        })
    }
}

fn p256_key(index: usize, secret: &p256::SecretKey) -> Result<SigningKey, KeyError> {
    let point = secret.public_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(KeyError::Unsupported {
            index,
            what: "a P-256 key at the identity point".to_owned(),
        });
    };
    // aws-lc wants PKCS#8; re-encoding also normalises SEC1 input.
    let der =
        p256::pkcs8::EncodePrivateKey::to_pkcs8_der(secret).map_err(|e| KeyError::Malformed {
            index,
            format: "P-256",
            reason: e.to_string(),
        })?;
    let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
    let kid = thumbprint_ec("P-256", &x, &y);
    Ok(SigningKey {
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(der.as_bytes()),
        public: PublicJwk {
            kty: "EC",
            crv: Some("P-256"),
            x: Some(x),
            y: Some(y),
            n: None,
            e: None,
            kid: kid.clone(),
            alg: "ES256",
            use_: "sig",
        },
        kid,
    })
}

fn ed25519_key(index: usize, secret: &ed25519_dalek::SigningKey) -> Result<SigningKey, KeyError> {
    let x = URL_SAFE_NO_PAD.encode(secret.verifying_key().as_bytes());
    // Re-encoded as PKCS#8 v2 (with the public key), which every backend
    // accepts; OpenSSL and Node write v1.
    let der = secret.to_pkcs8_der().map_err(|e| KeyError::Malformed {
        index,
        format: "Ed25519",
        reason: e.to_string(),
    })?;
    let kid = thumbprint_okp("Ed25519", &x);
    Ok(SigningKey {
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        public: PublicJwk {
            kty: "OKP",
            crv: Some("Ed25519"),
            x: Some(x),
            y: None,
            n: None,
            e: None,
            kid: kid.clone(),
            alg: "EdDSA",
            use_: "sig",
        },
        kid,
    })
}

fn rsa_key(index: usize, key: &rsa::RsaPrivateKey) -> Result<SigningKey, KeyError> {
    let bits = key.size() * 8;
    if bits < MIN_RSA_BITS {
        return Err(KeyError::Unsupported {
            index,
            what: format!("a {bits}-bit RSA key"),
        });
    }
    key.validate().map_err(|e| KeyError::Malformed {
        index,
        format: "RSA",
        reason: e.to_string(),
    })?;
    let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
    // aws-lc's RSA signer reads PKCS#1 RSAPrivateKey.
    let der = key.to_pkcs1_der().map_err(|err| KeyError::Malformed {
        index,
        format: "RSA",
        reason: err.to_string(),
    })?;
    let kid = thumbprint_rsa(&e, &n);
    Ok(SigningKey {
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        public: PublicJwk {
            kty: "RSA",
            crv: None,
            x: None,
            y: None,
            n: Some(n),
            e: Some(e),
            kid: kid.clone(),
            alg: "RS256",
            use_: "sig",
        },
        kid,
    })
}

// RFC 7638 §3: the required members only, in lexicographic order, no
// whitespace. The values are base64url and curve names, which need no JSON
// escaping.

mod thumbprint;
pub use thumbprint::{thumbprint_ec, thumbprint_okp, thumbprint_rsa};

#[cfg(test)]
pub(crate) mod tests;
