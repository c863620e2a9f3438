//! Tyk plugin bundles: building them as `tyk bundle build` does, and verifying
//! them as the gateway does after a fresh download.
//!
//! A bundle is a zip holding the files named in `manifest.json`'s `file_list`,
//! then `manifest.json` itself. When the gateway loads a bundle, the manifest's
//! `custom_middleware` replaces the API's, so a bundle is how this plugin's hook
//! names and driver reach an API; for a gRPC plugin the file list is usually
//! empty.
//!
//! The checksum (MD5) and the optional signature (RSA PKCS#1 v1.5 over SHA-256)
//! cover the listed files only, never the manifest. For a gRPC bundle, signing
//! therefore says nothing about the hooks or the driver: the server the gateway
//! downloads bundles from has to be trusted either way.
//!
//! # Layout
//!
//! - `manifest`: the manifest fields the gateway reads, their types, and the
//!   rules for names in `file_list`.
//! - `digest`: checksum and signature; reading key files.
//! - `archive`: writing a reproducible zip atomically; the entry checks the
//!   gateway makes when it unpacks one.

mod archive;
mod digest;
mod manifest;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use archive::{BundleReader, BundleWriter, Limit};
use digest::Digests;
pub use manifest::{Hook, IdExtractor, Middleware};
use manifest::{MANIFEST_NAME, Manifest};

/// Largest `manifest.json` [`verify`] reads (ours are a few hundred bytes).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Largest listed file [`verify`] reads, uncompressed.
pub const MAX_LISTED_FILE_BYTES: u64 = 64 << 20;
/// Largest total of the listed files [`verify`] reads, uncompressed. A file
/// listed twice counts twice: it is hashed twice.
pub const MAX_LISTED_BYTES: u64 = 256 << 20;

/// What [`build`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReport {
    /// Lowercase hex MD5 of the listed files, as written into the manifest.
    pub checksum: String,
    /// Whether the manifest carries a signature.
    pub signed: bool,
    /// The `file_list` names, in the order written (`manifest.json` excluded).
    pub files: Vec<String>,
}

/// What [`verify`] checked and what the gateway will configure from the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Lowercase hex MD5 of the listed files (equal to the manifest's).
    pub checksum: String,
    /// The signature was verified against the public key given.
    pub signature_checked: bool,
    /// The manifest has a non-empty signature (checked or not).
    pub signature_present: bool,
    /// `custom_middleware.driver`, possibly empty.
    pub driver: String,
    /// The custom-auth hook name, when set and not disabled.
    pub auth_check: Option<String>,
    /// The other enabled hooks as `kind:name`, in the order the gateway runs
    /// them: `pre`, `post_key_auth`, `post`, `response`.
    pub hooks: Vec<String>,
    /// An `id_extractor` the gateway will use: present, not disabled, and with
    /// an `extract_with` it implements (`value`, `regex`, `xpath`).
    pub id_extractor: bool,
    /// The manifest's whole `custom_middleware`, which replaces the API's
    /// own when the gateway loads the bundle.
    pub middleware: Middleware,
}

/// Why a bundle could not be built or did not verify. Where the gateway has a
/// message for the same failure, it starts the text, so operators recognise it
/// from the gateway's logs.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read manifest {path:?}: {source}")]
    ReadManifest { path: PathBuf, source: io::Error },
    #[error("{origin} is not valid JSON: {source}")]
    ManifestJson {
        origin: String,
        source: serde_json::Error,
    },
    #[error("{origin} must hold a JSON object")]
    ManifestNotObject { origin: String },
    #[error(
        "manifest key \"{found}\" must be written \"{expected}\" (the gateway ignores the case \
         of keys; this tool reads only the lowercase name, so that both see the same field)"
    )]
    KeyCase { found: String, expected: String },
    #[error("manifest field \"{field}\" must be {expected}")]
    FieldType {
        field: String,
        expected: &'static str,
    },
    #[error("custom_middleware.driver is empty; set it to \"grpc\" for this plugin")]
    NoDriver,
    #[error(
        "no hooks defined: set custom_middleware.auth_check.name or add an entry to \
         custom_middleware.pre, post_key_auth, post or response"
    )]
    NoHooks,
    #[error("file_list entry {name:?} {reason}")]
    BadFileName { name: String, reason: &'static str },
    #[error("file_list names {name:?} twice; list each file once")]
    DuplicateFile { name: String },
    #[error("cannot read {path:?} (listed in file_list as {name:?}): {source}")]
    ReadFile {
        name: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot read key file {path:?}: {source}")]
    ReadKey { path: PathBuf, source: io::Error },
    #[error("key file {path:?} {problem}")]
    KeyFormat { path: PathBuf, problem: String },
    #[error("cannot sign with key file {path:?}: {source}")]
    Sign { path: PathBuf, source: rsa::Error },
    #[error("cannot write {path:?}: {source}")]
    WriteOutput { path: PathBuf, source: io::Error },
    #[error("cannot write bundle {path:?}: {source}")]
    WriteZip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
    #[error("cannot open bundle {path:?}: {source}")]
    OpenBundle { path: PathBuf, source: io::Error },
    #[error("cannot read bundle {path:?} as a zip: {source}")]
    ReadZip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
    #[error("zip entry {name:?} {reason}; the gateway rejects the bundle")]
    UnsafeEntry { name: String, reason: &'static str },
    #[error(
        "zip entry {name:?} uses compression method {method}; the gateway reads only \
         stored (0) and deflate (8)"
    )]
    UnsupportedCompression { name: String, method: String },
    #[error("zip entry {name:?} is encrypted; the gateway cannot read encrypted entries")]
    EncryptedEntry { name: String },
    #[error("the bundle has two entries with the same name; rebuild it")]
    DuplicateEntries,
    #[error(
        "zip entry {name:?} needs folder \"{parent}/\" but no earlier directory entry creates \
         it; the gateway does not create parent folders (rebuild the bundle)"
    )]
    MissingParent { name: String, parent: String },
    #[error("the bundle has no manifest.json at its top level")]
    NoManifest,
    #[error("file_list names {name:?} but the bundle holds no such file")]
    MissingFile { name: String },
    #[error(
        "zip entry {name:?} declares {declared} bytes uncompressed, more than the {limit} \
         allowed for {what}; the bundle is refused without inflating it"
    )]
    DeclaredTooLarge {
        name: String,
        declared: u64,
        limit: u64,
        what: &'static str,
    },
    #[error(
        "the files in file_list declare {declared} bytes uncompressed together, more than the \
         {limit} allowed; the bundle is refused without inflating them"
    )]
    ListedTooLarge { declared: u64, limit: u64 },
    #[error(
        "zip entry {name:?} inflates to more than the {limit} bytes allowed for {what}, \
         whatever its header declares; the bundle is refused"
    )]
    InflatesTooLarge {
        name: String,
        limit: u64,
        what: &'static str,
    },
    #[error("cannot read {name:?} from the bundle: {source}")]
    ReadEntry { name: String, source: io::Error },
    #[error(
        "Bundle isn't signed: a public key was given but manifest.json has no signature \
         (build the bundle with a signing key)"
    )]
    NotSigned,
    #[error(
        "invalid checksum: manifest.json says {expected:?} but the listed files hash to \
         {actual:?}"
    )]
    InvalidChecksum { expected: String, actual: String },
    #[error("the signature in manifest.json is not standard base64: {source}")]
    SignatureEncoding { source: base64::DecodeError },
    #[error(
        "crypto/rsa: verification error: the signature in manifest.json does not match the \
         listed files under public key {path:?}"
    )]
    BadSignature { path: PathBuf },
}

/// Builds a bundle from `manifest_path` into `output`, as
/// `tyk bundle build -m <manifest> -o <output> [-k <key>]` does.
///
/// Listed files are read relative to the manifest's folder. The manifest is
/// written back with `checksum` and `signature` filled in (`signature` is empty
/// without a key) and every other key kept. The zip is reproducible: the same
/// inputs give the same bytes. It is written to a temporary file next to
/// `output` and renamed into place, so `output` is never left half-written.
///
/// # Errors
///
/// [`BundleError`] names the manifest field, listed file or key file at fault.
pub fn build(
    manifest_path: &Path,
    output: &Path,
    signing_key: Option<&Path>,
) -> Result<BuildReport, BundleError> {
    let bytes = fs::read(manifest_path).map_err(|source| BundleError::ReadManifest {
        path: manifest_path.to_path_buf(),
        source,
    })?;
    let manifest = Manifest::parse(&bytes, &format!("manifest {manifest_path:?}"))?;
    manifest.check_buildable()?;
    // The key is read before anything is written, so a bad key costs nothing.
    let key = signing_key
        .map(|path| digest::read_private_key(path).map(|key| (path, key)))
        .transpose()?;

    let base = parent_dir(manifest_path);
    let mut writer = BundleWriter::create(output)?;
    let mut digests = Digests::default();
    for name in &manifest.file_list {
        let path = base.join(name);
        // Each file is read once and the same bytes are hashed and zipped.
        let data = fs::read(&path).map_err(|source| BundleError::ReadFile {
            name: name.clone(),
            path,
            source,
        })?;
        digests.update(&data);
        writer.add_file(name, &data)?;
    }
    let sums = digests.finish();
    let signature = match &key {
        Some((path, key)) => sums.sign(key, path)?,
        None => String::new(),
    };
    let sealed = manifest.sealed(&sums.checksum, &signature)?;
    writer.add_file(MANIFEST_NAME, &sealed)?;
    writer.commit()?;

    Ok(BuildReport {
        checksum: sums.checksum,
        signed: key.is_some(),
        files: manifest.file_list,
    })
}

/// Verifies a bundle as the gateway does after downloading it.
///
/// Entries must be relative without `..`, stored or deflated, and nested ones
/// need a directory entry before them. A downloaded zip may be crafted to
/// inflate to gigabytes, so the manifest and the listed files are bounded
/// ([`MAX_MANIFEST_BYTES`], [`MAX_LISTED_FILE_BYTES`], [`MAX_LISTED_BYTES`]),
/// by their declared sizes before inflating and by the bytes actually read,
/// and files are hashed as they are read, never held whole. Then, in the gateway's order: with a
/// public key the manifest must carry a signature; the MD5 of the listed files
/// must equal `checksum`; with a public key the signature must verify. Without
/// a key a signature is not checked, only reported.
///
/// # Errors
///
/// [`BundleError`]; the gateway's own wording starts the message where it has
/// one (`Bundle isn't signed`, `invalid checksum`, `crypto/rsa: verification
/// error`).
pub fn verify(bundle_path: &Path, public_key: Option<&Path>) -> Result<VerifyReport, BundleError> {
    let key = public_key
        .map(|path| digest::read_public_key(path).map(|key| (path, key)))
        .transpose()?;
    let mut bundle = BundleReader::open(bundle_path)?;
    let bytes = bundle.read_manifest(Limit {
        bytes: MAX_MANIFEST_BYTES,
        what: MANIFEST_NAME,
    })?;
    let manifest = Manifest::parse(
        &bytes,
        &format!("{MANIFEST_NAME} in bundle {bundle_path:?}"),
    )?;
    manifest.check_listed_entries()?;

    let signature_present = !manifest.signature.is_empty();
    if key.is_some() && !signature_present {
        return Err(BundleError::NotSigned);
    }
    // Declared sizes first, so that a bundle over a limit is refused before
    // anything is inflated; then every file is read through a limit anyway,
    // as the declared sizes may lie.
    let mut declared: u64 = 0;
    for name in &manifest.file_list {
        let size = bundle.declared_size(name)?;
        if size > MAX_LISTED_FILE_BYTES {
            return Err(BundleError::DeclaredTooLarge {
                name: name.clone(),
                declared: size,
                limit: MAX_LISTED_FILE_BYTES,
                what: "a listed file",
            });
        }
        declared = declared.saturating_add(size);
    }
    if declared > MAX_LISTED_BYTES {
        return Err(BundleError::ListedTooLarge {
            declared,
            limit: MAX_LISTED_BYTES,
        });
    }
    // Streamed into the digests, never held whole.
    let mut digests = Digests::default();
    let mut read: u64 = 0;
    for name in &manifest.file_list {
        let left = MAX_LISTED_BYTES - read.min(MAX_LISTED_BYTES);
        let limit = if left < MAX_LISTED_FILE_BYTES {
            Limit {
                bytes: left,
                what: "the listed files together",
            }
        } else {
            Limit {
                bytes: MAX_LISTED_FILE_BYTES,
                what: "a listed file",
            }
        };
        bundle.stream_file(name, limit, |chunk| {
            read += chunk.len() as u64;
            digests.update(chunk);
        })?;
    }
    let sums = digests.finish();
    if sums.checksum != manifest.checksum {
        return Err(BundleError::InvalidChecksum {
            expected: manifest.checksum,
            actual: sums.checksum,
        });
    }
    if let Some((path, key)) = &key {
        sums.verify(key, path, &manifest.signature)?;
    }

    let middleware = manifest.middleware;
    Ok(VerifyReport {
        checksum: sums.checksum,
        signature_checked: key.is_some(),
        signature_present,
        driver: middleware.driver.clone(),
        auth_check: middleware.active_auth_check().map(str::to_owned),
        hooks: middleware.active_hooks(),
        id_extractor: middleware.active_id_extractor().is_some(),
        middleware,
    })
}

/// The `custom_middleware` of a `manifest.json` (its bytes; `origin` names
/// it in errors), read with the same rules as [`build`] and [`verify`].
///
/// # Errors
///
/// [`BundleError`] naming the field at fault.
pub fn read_manifest(bytes: &[u8], origin: &str) -> Result<Middleware, BundleError> {
    Ok(Manifest::parse(bytes, origin)?.middleware)
}

/// An API definition's own `custom_middleware` section, read as a manifest's
/// is: the same section, the same field rules. Field paths in errors start
/// with `at` (the section's place in the definition).
///
/// # Errors
///
/// [`BundleError`] naming the field at fault.
pub fn read_custom_middleware(
    section: &serde_json::Map<String, serde_json::Value>,
    at: &str,
) -> Result<Middleware, BundleError> {
    Middleware::parse(section, at)
}

impl BundleError {
    /// Whether the bundle could not be read at all (no such file, not a zip,
    /// an entry that cannot be inflated), as opposed to read and refused by
    /// the gateway's rules.
    pub fn is_unreadable(&self) -> bool {
        matches!(
            self,
            BundleError::OpenBundle { .. }
                | BundleError::ReadZip { .. }
                | BundleError::ReadEntry { .. }
                | BundleError::ReadManifest { .. }
        )
    }
}

/// The folder `path` is in; `.` for a bare file name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}
