//! The bundle checksum and signature, and reading the RSA keys behind them.
//!
//! Both cover `data`: the listed files' bytes concatenated in `file_list` order
//! with nothing between them. The checksum is lowercase hex MD5 of `data`; the
//! signature is standard base64 (with padding) of an RSA PKCS#1 v1.5 signature
//! over SHA-256 of `data`. MD5 is what the gateway compares, so it stays even
//! though it proves nothing against a deliberate change; only the signature
//! does that, and only for the listed files.

use std::fs;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use md5::Md5;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

use super::BundleError;

/// Both hashes of `data`, fed one file at a time.
#[derive(Default)]
pub(super) struct Digests {
    md5: Md5,
    sha256: Sha256,
}

/// The finished hashes.
pub(super) struct Sums {
    /// Lowercase hex MD5, as in `manifest.json`.
    pub checksum: String,
    sha256: [u8; 32],
}

impl Digests {
    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.sha256.update(data);
    }

    pub fn finish(self) -> Sums {
        Sums {
            checksum: hex::encode(self.md5.finalize()),
            sha256: self.sha256.finalize().into(),
        }
    }
}

impl Sums {
    /// The manifest's `signature` value. PKCS#1 v1.5 signing is deterministic,
    /// which keeps signed builds reproducible too.
    ///
    /// The `rsa` crate's private-key operations are not constant-time
    /// (RUSTSEC-2023-0071); that matters where an attacker can time many
    /// signatures, not for a build run on an operator's machine.
    pub fn sign(&self, key: &RsaPrivateKey, path: &Path) -> Result<String, BundleError> {
        let signature = key
            .sign(Pkcs1v15Sign::new::<Sha256>(), &self.sha256)
            .map_err(|source| BundleError::Sign {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(STANDARD.encode(signature))
    }

    /// Checks the manifest's `signature` value against these files.
    pub fn verify(
        &self,
        key: &RsaPublicKey,
        path: &Path,
        signature: &str,
    ) -> Result<(), BundleError> {
        let signature = STANDARD
            .decode(signature)
            .map_err(|source| BundleError::SignatureEncoding { source })?;
        key.verify(Pkcs1v15Sign::new::<Sha256>(), &self.sha256, &signature)
            .map_err(|_| BundleError::BadSignature {
                path: path.to_path_buf(),
            })
    }
}

/// Reads an RSA private key PEM: PKCS#1 (`RSA PRIVATE KEY`) or unencrypted
/// PKCS#8 (`PRIVATE KEY`).
pub(super) fn read_private_key(path: &Path) -> Result<RsaPrivateKey, BundleError> {
    let text = read_key(path)?;
    let (label, block) = pem_block(&text).ok_or_else(|| not_pem(path, "private"))?;
    let parsed = match label {
        "RSA PRIVATE KEY" => RsaPrivateKey::from_pkcs1_pem(block).map_err(|e| e.to_string()),
        "PRIVATE KEY" => RsaPrivateKey::from_pkcs8_pem(block).map_err(|e| e.to_string()),
        "ENCRYPTED PRIVATE KEY" => {
            return Err(key_format(
                path,
                "holds an encrypted key; decrypt it first (openssl pkey -in <key> -out <plain>)",
            ));
        }
        other => {
            return Err(key_format(
                path,
                &format!(
                    "holds a \"{other}\" PEM block; expected an RSA private key \
                     (\"RSA PRIVATE KEY\" or \"PRIVATE KEY\")"
                ),
            ));
        }
    };
    parsed.map_err(|detail| {
        key_format(
            path,
            &format!("is not a usable RSA private key ({label}): {detail}"),
        )
    })
}

/// Reads an RSA public key PEM: PKIX (`PUBLIC KEY`) or PKCS#1
/// (`RSA PUBLIC KEY`).
pub(super) fn read_public_key(path: &Path) -> Result<RsaPublicKey, BundleError> {
    let text = read_key(path)?;
    let (label, block) = pem_block(&text).ok_or_else(|| not_pem(path, "public"))?;
    let parsed = match label {
        "PUBLIC KEY" => RsaPublicKey::from_public_key_pem(block).map_err(|e| e.to_string()),
        "RSA PUBLIC KEY" => RsaPublicKey::from_pkcs1_pem(block).map_err(|e| e.to_string()),
        other => {
            return Err(key_format(
                path,
                &format!(
                    "holds a \"{other}\" PEM block; expected an RSA public key \
                     (\"PUBLIC KEY\" or \"RSA PUBLIC KEY\")"
                ),
            ));
        }
    };
    parsed.map_err(|detail| {
        key_format(
            path,
            &format!("is not a usable RSA public key ({label}): {detail}"),
        )
    })
}

fn read_key(path: &Path) -> Result<String, BundleError> {
    fs::read_to_string(path).map_err(|source| BundleError::ReadKey {
        path: path.to_path_buf(),
        source,
    })
}

fn key_format(path: &Path, problem: &str) -> BundleError {
    BundleError::KeyFormat {
        path: path.to_path_buf(),
        problem: problem.to_owned(),
    }
}

fn not_pem(path: &Path, kind: &str) -> BundleError {
    key_format(
        path,
        &format!("holds no PEM block; expected an RSA {kind} key PEM"),
    )
}

/// The first PEM block in `text`: its label and the block itself from the
/// `BEGIN` line through the matching `END` line. Text around the block (as
/// `openssl` writes with `-text`) is ignored, as the gateway's PEM decoder
/// ignores it.
fn pem_block(text: &str) -> Option<(&str, &str)> {
    const BEGIN: &str = "-----BEGIN ";
    let start = text.find(BEGIN)?;
    let after = &text[start + BEGIN.len()..];
    let label = &after[..after.find("-----")?];
    let end_line = format!("-----END {label}-----");
    let end = start + text[start..].find(&end_line)? + end_line.len();
    Some((label, &text[start..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum(files: &[&[u8]]) -> String {
        let mut digests = Digests::default();
        for data in files {
            digests.update(data);
        }
        digests.finish().checksum
    }

    #[test]
    fn checksum_of_no_files_is_md5_of_nothing() {
        assert_eq!(checksum(&[]), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn checksum_matches_the_gateway_test_vector() {
        // Tyk's TestBundle_Verify: two files, concatenated without separators.
        assert_eq!(
            checksum(&[b"file1 content", b"file2 content"]),
            "1510d0e71b31de1c78fd9e823a7c6de9"
        );
        assert_eq!(
            checksum(&[b"file1 contentfile2 content"]),
            "1510d0e71b31de1c78fd9e823a7c6de9"
        );
    }

    #[test]
    fn sha256_covers_the_concatenation() {
        let mut digests = Digests::default();
        digests.update(b"ab");
        digests.update(b"c");
        let expected: [u8; 32] = Sha256::digest(b"abc").into();
        assert_eq!(digests.finish().sha256, expected);
    }

    #[test]
    fn pem_block_finds_label_and_skips_surrounding_text() {
        let text = "Private-Key: (2048 bit)\n-----BEGIN RSA PRIVATE KEY-----\nAAAA\n\
                    -----END RSA PRIVATE KEY-----\ntrailer\n";
        let (label, block) = pem_block(text).unwrap();
        assert_eq!(label, "RSA PRIVATE KEY");
        assert!(block.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert!(block.ends_with("-----END RSA PRIVATE KEY-----"));
        assert_eq!(pem_block("no pem here"), None);
        assert_eq!(pem_block("-----BEGIN X-----\nAAAA\n-----END Y-----"), None);
    }

    #[test]
    fn key_files_that_are_not_rsa_pem_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("none.pem", "just text", "no PEM block"),
            (
                "cert.pem",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "\"CERTIFICATE\"",
            ),
            (
                "enc.pem",
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                "encrypted",
            ),
            (
                "junk.pem",
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                "not a usable RSA private key",
            ),
        ];
        for (file, text, reason) in cases {
            let path = dir.path().join(file);
            fs::write(&path, text).unwrap();
            match read_private_key(&path) {
                Err(error @ BundleError::KeyFormat { .. }) => {
                    assert!(error.to_string().contains(reason), "{file}: {error}");
                }
                other => panic!("{file}: {other:?}"),
            }
        }
        let path = dir.path().join("private-as-public.pem");
        fs::write(&path, cases[3].1).unwrap();
        assert!(matches!(
            read_public_key(&path),
            Err(BundleError::KeyFormat { .. })
        ));
        assert!(matches!(
            read_public_key(&dir.path().join("missing.pem")),
            Err(BundleError::ReadKey { .. })
        ));
    }
}
