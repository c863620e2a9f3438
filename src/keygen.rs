//! `keygen`: a new key for `SIGNING_KEY_FILE`, so minting needs no OpenSSL
//! recipe.
//!
//! What must hold: the key is a fresh P-256 private key (`ES256`) from the
//! operating system's random source, written as unencrypted PKCS#8 PEM that
//! [`SigningKeys`] loads (the `kid` reported is the one the plugin will put
//! in minted JWTs, read back through that same loader). The file is created
//! readable by its owner only (0600). An existing file is never overwritten
//! unless asked, and then it is replaced by a rename, so a symbolic link at
//! the path is replaced itself rather than followed to somebody else's file.
//!
//! Key generation and encoding are `p256`'s and `pkcs8`'s; nothing here
//! touches key material beyond handing it over.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use p256::elliptic_curve::rand_core::OsRng;
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::{EncodePrivateKey, LineEnding};

use crate::keys::{KeyError, SigningKeys};

/// Why no key was written. Messages name the file, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("{} already exists; pass --force to replace it", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot encode the key as PKCS#8: {0}")]
    Encode(String),
    #[error("the new key does not load: {0}")]
    Load(#[from] KeyError),
}

/// A new P-256 private key as PKCS#8 PEM (wiped from memory when dropped),
/// and the `kid` the plugin gives it.
///
/// # Errors
///
/// When encoding fails or the result does not load (neither is expected).
pub fn new_p256_pem() -> Result<(Zeroizing<String>, String), KeygenError> {
    let secret = p256::SecretKey::random(&mut OsRng);
    let pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeygenError::Encode(e.to_string()))?;
    let kid = SigningKeys::from_pem(&pem)?.current().kid().to_owned();
    Ok((pem, kid))
}

/// Writes a new P-256 key to `path` (mode 0600) and returns its `kid`.
/// With `force`, an existing file (or link) at `path` is replaced.
///
/// # Errors
///
/// [`KeygenError::Exists`] when `path` exists and `force` is off;
/// [`KeygenError::Write`] when the file cannot be written.
pub fn write_p256_key(path: &Path, force: bool) -> Result<String, KeygenError> {
    let (pem, kid) = new_p256_pem()?;
    let written = if force {
        replace(path, pem.as_bytes())
    } else {
        create_new(path)
            .and_then(|file| fill(file, pem.as_bytes()))
            .map_err(|source| match source.kind() {
                io::ErrorKind::AlreadyExists => KeygenError::Exists(path.to_owned()),
                _ => KeygenError::Write {
                    path: path.to_owned(),
                    source,
                },
            })
    };
    written.map(|()| kid)
}

/// Creates `path` for writing, owner-only, failing if anything (a link
/// included) is there already.
fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

fn fill(mut file: File, contents: &[u8]) -> io::Result<()> {
    file.write_all(contents)?;
    file.sync_all()
}

/// Writes a new file beside `path`, then renames it over `path`: readers
/// never see half a key, and a link at `path` is replaced, not followed.
fn replace(path: &Path, contents: &[u8]) -> Result<(), KeygenError> {
    let failed = |source| KeygenError::Write {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| failed(io::Error::other("the path names no file")))?;
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|e| failed(io::Error::other(e.to_string())))?;
    let temporary = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        hex::encode(suffix)
    ));
    let result = create_new(&temporary)
        .and_then(|file| fill(file, contents))
        .and_then(|()| fs::rename(&temporary, path));
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result.map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_key_is_p256_pkcs8_and_loads_with_its_kid() {
        let (pem, kid) = new_p256_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{kid}");
        let keys = SigningKeys::from_pem(&pem).unwrap();
        assert_eq!(keys.current().alg(), jsonwebtoken::Algorithm::ES256);
        assert_eq!(keys.current().kid(), kid);
        assert_ne!(new_p256_pem().unwrap().1, kid, "every key is new");
    }

    #[test]
    fn the_file_is_owner_only_and_never_overwritten_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mint.pem");
        let kid = write_p256_key(&path, false).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let first = fs::read(&path).unwrap();
        assert_eq!(
            SigningKeys::from_pem_file(&path).unwrap().current().kid(),
            kid
        );

        assert!(matches!(
            write_p256_key(&path, false),
            Err(KeygenError::Exists(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), first);

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let replaced = write_p256_key(&path, true).unwrap();
        assert_ne!(replaced, kid);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_link_at_the_path_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "somebody's data").unwrap();
        let path = dir.path().join("mint.pem");
        std::os::unix::fs::symlink(&victim, &path).unwrap();

        assert!(matches!(
            write_p256_key(&path, false),
            Err(KeygenError::Exists(_))
        ));
        write_p256_key(&path, true).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "somebody's data");
        assert!(
            !fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(SigningKeys::from_pem_file(&path).is_ok());
    }

    #[test]
    fn a_missing_folder_is_a_write_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/mint.pem");
        for force in [false, true] {
            let error = write_p256_key(&path, force).unwrap_err();
            assert!(matches!(error, KeygenError::Write { .. }), "{error}");
            assert!(error.to_string().contains("missing/mint.pem"), "{error}");
        }
    }
}
