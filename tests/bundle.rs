//! Bundles through the public API, checked by tools that share no code with
//! ours: Python's `zipfile` and `hashlib` read what `build` wrote, `openssl`
//! makes the keys and checks the signatures, and Python writes the malformed
//! zips that `verify` must refuse.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tempfile::TempDir;
use tyk_phantom_token::bundle::{self, BundleError};

const OPENSSL: &str = "/usr/bin/openssl";

/// Reads a zip with Python: every entry's metadata, file contents, the CRC
/// check, and the MD5 of the files the manifest lists.
const PY_LIST: &str = r#"
import hashlib, json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
manifest = json.loads(z.read("manifest.json"))
print(json.dumps({
    "bad_crc": z.testzip(),
    "entries": [{"name": i.filename, "method": i.compress_type,
                 "date_time": list(i.date_time), "mode": i.external_attr >> 16,
                 "system": i.create_system} for i in z.infolist()],
    "files": {i.filename: z.read(i).decode("latin-1") for i in z.infolist() if not i.is_dir()},
    "manifest": manifest,
    "md5": hashlib.md5(b"".join(z.read(n) for n in manifest["file_list"])).hexdigest(),
}))
"#;

/// Writes a zip with Python from `[[name, text, method], ...]` (method 0
/// stored, 8 deflate, 12 bzip2), entries in the order given.
const PY_WRITE: &str = r#"
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for name, text, method in json.loads(sys.argv[2]):
        info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
        info.compress_type = method
        z.writestr(info, text.encode("latin-1"))
"#;

/// Writes a zip by hand from `[{"name", "text", "fill", "mib", "declared"}, ...]`:
/// each entry deflated, holding `text` then `mib` MiB of `fill` (a NUL byte by
/// default) as one compressed MiB repeated, so a gigabyte costs about one MiB
/// of zip; the CRC-32 is the real one; `declared` overrides the uncompressed
/// size written in the headers.
const PY_BOMB: &str = r#"
import json, struct, sys, zlib

def gf2_times(mat, vec):
    s, i = 0, 0
    while vec:
        if vec & 1:
            s ^= mat[i]
        vec >>= 1
        i += 1
    return s

def gf2_square(mat):
    return [gf2_times(mat, mat[n]) for n in range(32)]

def crc_combine(crc1, crc2, len2):
    """CRC-32 of A+B from crc(A), crc(B) and len(B), as zlib's crc32_combine."""
    odd = [0xEDB88320] + [1 << n for n in range(31)]
    even = gf2_square(odd)
    odd = gf2_square(even)
    while len2:
        even = gf2_square(odd)
        if len2 & 1:
            crc1 = gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = gf2_square(even)
        if len2 & 1:
            crc1 = gf2_times(odd, crc1)
        len2 >>= 1
    return crc1 ^ crc2

def entry_data(text, fill, mib):
    """Raw deflate of text + mib MiB of fill: one compressed MiB repeated
    (each ends with a full flush, so each stands alone), and its CRC-32."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = c.compress(text) + c.flush(zlib.Z_FULL_FLUSH)
    crc, size = zlib.crc32(text), len(text)
    if mib:
        block = fill * (1 << 20)
        data += (c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)) * mib
        power, power_len, n = zlib.crc32(block), 1 << 20, mib
        while n:
            if n & 1:
                crc = crc_combine(crc, power, power_len)
            power, power_len, n = crc_combine(power, power, power_len), power_len * 2, n >> 1
        size += mib << 20
    return data + c.flush(zlib.Z_FINISH), crc, size

with open(sys.argv[1], "wb") as out:
    central = b""
    entries = json.loads(sys.argv[2])
    for e in entries:
        name = e["name"].encode()
        data, crc, size = entry_data(e.get("text", "").encode("latin-1"),
                                     e.get("fill", "\0").encode("latin-1"), e.get("mib", 0))
        declared = e.get("declared", size)
        offset = out.tell()
        fields = (20, 0, 8, 0, 33, crc, len(data), declared, len(name), 0)
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields) + name + data)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x0314, *fields,
                               0, 0, 0, 0o100644 << 16, offset) + name
    start = out.tell()
    out.write(central)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries),
                          len(central), start, 0))
"#;

fn run(program: &str, args: &[&str]) -> std::process::Output {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn read_zip(path: &Path) -> Value {
    let output = run("python3", &["-c", PY_LIST, path.to_str().unwrap()]);
    serde_json::from_slice(&output.stdout).unwrap()
}

fn write_zip(path: &Path, entries: &[(&str, &str, u16)]) {
    let spec = serde_json::to_string(entries).unwrap();
    run("python3", &["-c", PY_WRITE, path.to_str().unwrap(), &spec]);
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, content).unwrap();
    path
}

/// A source folder with two files and a manifest listing them.
struct Source {
    dir: TempDir,
    manifest: PathBuf,
}

const A_PY: &str = "print('a')\n";
const HELPER_PY: &str = "def helper():\n    return 1\n";

impl Source {
    fn new(file_list: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "src/a.py", A_PY);
        write(dir.path(), "src/lib/helper.py", HELPER_PY);
        let manifest = write(
            dir.path(),
            "src/manifest.json",
            &json!({
                "file_list": file_list,
                "custom_middleware": {
                    "driver": "grpc",
                    "auth_check": {"name": "PhantomToken"},
                    "post_key_auth": [{"name": "InjectJwtPostKeyAuth"}],
                    "id_extractor": {
                        "extract_from": "header",
                        "extract_with": "value",
                        "extractor_config": {"header_name": "Authorization"}
                    }
                },
                "vendor_note": "kept as written"
            })
            .to_string(),
        );
        Self { dir, manifest }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn build(&self, output: &str, key: Option<&Path>) -> (PathBuf, bundle::BuildReport) {
        let output = self.path(output);
        let report = bundle::build(&self.manifest, &output, key).unwrap();
        (output, report)
    }
}

/// A key pair made by `openssl`, with the private key in one format and the
/// public key in both.
struct KeyPair {
    private: PathBuf,
    pkix: PathBuf,
    pkcs1_public: PathBuf,
}

impl KeyPair {
    /// `pkcs8` false: `RSA PRIVATE KEY` (PKCS#1); true: `PRIVATE KEY`.
    fn generate(dir: &Path, name: &str, pkcs8: bool) -> Self {
        let private = dir.join(format!("{name}.pem"));
        let out = private.to_str().unwrap();
        if pkcs8 {
            let args = [
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ];
            run(OPENSSL, &[&args[..], &["-out", out]].concat());
        } else {
            run(OPENSSL, &["genrsa", "-traditional", "-out", out, "2048"]);
        }
        let pkix = dir.join(format!("{name}.pub.pem"));
        let pkcs1_public = dir.join(format!("{name}.rsapub.pem"));
        run(
            OPENSSL,
            &["rsa", "-in", out, "-pubout", "-out", pkix.to_str().unwrap()],
        );
        run(
            OPENSSL,
            &[
                "rsa",
                "-in",
                out,
                "-RSAPublicKey_out",
                "-out",
                pkcs1_public.to_str().unwrap(),
            ],
        );
        let label = if pkcs8 {
            "PRIVATE KEY"
        } else {
            "RSA PRIVATE KEY"
        };
        assert_pem_label(&private, label);
        assert_pem_label(&pkix, "PUBLIC KEY");
        assert_pem_label(&pkcs1_public, "RSA PUBLIC KEY");
        Self {
            private,
            pkix,
            pkcs1_public,
        }
    }
}

fn assert_pem_label(path: &Path, label: &str) {
    let text = fs::read_to_string(path).unwrap();
    let first = format!("-----BEGIN {label}-----");
    assert!(text.starts_with(&first), "{path:?}: {text}");
}

#[test]
fn unsigned_bundle_holds_the_listed_files_then_the_manifest() {
    let source = Source::new(&["a.py", "lib/helper.py"]);
    // The output folder does not exist yet: build creates it.
    let (zip, report) = source.build("out/nested/bundle.zip", None);
    let read = read_zip(&zip);

    let names: Vec<_> = read["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["a.py", "lib/", "lib/helper.py", "manifest.json"],
        "listed files in order, the folder entry before its file, the manifest last"
    );
    assert_eq!(read["bad_crc"], Value::Null);
    for entry in read["entries"].as_array().unwrap() {
        assert!(
            [0, 8].contains(&entry["method"].as_u64().unwrap()),
            "{entry}"
        );
        assert_eq!(entry["date_time"], json!([1980, 1, 1, 0, 0, 0]), "{entry}");
        assert_eq!(entry["system"], 3, "made on Unix: {entry}");
        let mode = if entry["name"] == "lib/" {
            0o40755
        } else {
            0o100644
        };
        assert_eq!(entry["mode"], mode, "{entry}");
    }
    assert_eq!(read["files"]["a.py"], A_PY);
    assert_eq!(read["files"]["lib/helper.py"], HELPER_PY);

    let manifest = &read["manifest"];
    assert_eq!(
        manifest["checksum"], read["md5"],
        "checksum is MD5 of the listed files"
    );
    assert_eq!(report.checksum, read["md5"]);
    assert_eq!(manifest["signature"], "");
    assert_eq!(manifest["file_list"], json!(["a.py", "lib/helper.py"]));
    assert_eq!(manifest["vendor_note"], "kept as written");
    assert_eq!(manifest["custom_middleware"]["driver"], "grpc");
    assert_eq!(
        manifest["custom_middleware"]["post_key_auth"][0]["name"],
        "InjectJwtPostKeyAuth"
    );
    assert!(!report.signed);
    assert_eq!(report.files, ["a.py", "lib/helper.py"]);

    let verified = bundle::verify(&zip, None).unwrap();
    assert_eq!(verified.checksum, report.checksum);
    assert!(!verified.signature_present);
    assert!(!verified.signature_checked);
}

#[test]
fn grpc_bundle_with_no_files_reports_what_the_gateway_will_configure() {
    let source = Source::new(&[]);
    let (zip, report) = source.build("bundle.zip", None);
    assert_eq!(report.checksum, "d41d8cd98f00b204e9800998ecf8427e");
    let read = read_zip(&zip);
    assert_eq!(read["entries"].as_array().unwrap().len(), 1);
    assert_eq!(read["entries"][0]["name"], "manifest.json");
    assert_eq!(
        read["manifest"]["checksum"],
        "d41d8cd98f00b204e9800998ecf8427e"
    );

    let verified = bundle::verify(&zip, None).unwrap();
    assert_eq!(verified.driver, "grpc");
    assert_eq!(verified.auth_check.as_deref(), Some("PhantomToken"));
    assert_eq!(verified.hooks, ["post_key_auth:InjectJwtPostKeyAuth"]);
    assert!(verified.id_extractor);
}

#[test]
fn the_same_inputs_give_byte_identical_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyPair::generate(dir.path(), "k", false);
    let source = Source::new(&["a.py", "lib/helper.py"]);
    let (first, _) = source.build("first.zip", None);
    let (first_signed, _) = source.build("first-signed.zip", Some(&keys.private));

    // Nothing about the source files but their bytes may reach the zip.
    let a = source.path("src/a.py");
    let file = fs::File::options().write(true).open(&a).unwrap();
    file.set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .unwrap();
    drop(file);
    fs::set_permissions(&a, fs::Permissions::from_mode(0o700)).unwrap();

    let (second, _) = source.build("second.zip", None);
    let (second_signed, _) = source.build("second-signed.zip", Some(&keys.private));
    assert_eq!(fs::read(first).unwrap(), fs::read(second).unwrap());
    assert_eq!(
        fs::read(first_signed).unwrap(),
        fs::read(second_signed).unwrap()
    );
}

/// Signs with each private key format and checks the signature with
/// `openssl dgst` over the concatenated files, then with `verify` under both
/// public key formats.
#[test]
fn signatures_verify_with_openssl_and_with_both_public_key_formats() {
    let dir = tempfile::tempdir().unwrap();
    for pkcs8 in [false, true] {
        let keys = KeyPair::generate(dir.path(), &format!("key-{pkcs8}"), pkcs8);
        let source = Source::new(&["a.py", "lib/helper.py"]);
        let (zip, report) = source.build("signed.zip", Some(&keys.private));
        assert!(report.signed);

        let read = read_zip(&zip);
        let signature = STANDARD
            .decode(read["manifest"]["signature"].as_str().unwrap())
            .unwrap();
        let sig = dir.path().join("sig.bin");
        fs::write(&sig, &signature).unwrap();
        let data = dir.path().join("data.bin");
        fs::write(&data, format!("{A_PY}{HELPER_PY}")).unwrap();
        let check = |public: &Path| {
            Command::new(OPENSSL)
                .args(["dgst", "-sha256", "-verify"])
                .arg(public)
                .arg("-signature")
                .arg(&sig)
                .arg(&data)
                .output()
                .unwrap()
        };
        let output = check(&keys.pkix);
        assert!(
            output.status.success(),
            "pkcs8={pkcs8}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("Verified OK"));
        // Control: the same check fails once the data differs.
        fs::write(&data, format!("{HELPER_PY}{A_PY}")).unwrap();
        assert!(!check(&keys.pkix).status.success());

        for public in [&keys.pkix, &keys.pkcs1_public] {
            let verified = bundle::verify(&zip, Some(public)).unwrap();
            assert!(verified.signature_checked && verified.signature_present);
            assert_eq!(verified.checksum, report.checksum);
        }
        // Without a key the signature is reported but not checked.
        let verified = bundle::verify(&zip, None).unwrap();
        assert!(verified.signature_present && !verified.signature_checked);
    }
}

#[test]
fn changed_file_content_fails_with_invalid_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyPair::generate(dir.path(), "k", false);
    let source = Source::new(&["a.py"]);
    let (zip, _) = source.build("signed.zip", Some(&keys.private));
    let manifest = read_zip(&zip)["files"]["manifest.json"]
        .as_str()
        .unwrap()
        .to_owned();
    let tampered = source.path("tampered.zip");
    write_zip(
        &tampered,
        &[("a.py", "print('b')\n", 8), ("manifest.json", &manifest, 8)],
    );

    // The checksum is checked with or without a key, before the signature.
    for key in [None, Some(keys.pkix.as_path())] {
        let error = bundle::verify(&tampered, key).unwrap_err();
        assert!(
            matches!(error, BundleError::InvalidChecksum { .. }),
            "{error:?}"
        );
        assert!(error.to_string().starts_with("invalid checksum"), "{error}");
    }
}

#[test]
fn a_signature_from_another_key_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let signer = KeyPair::generate(dir.path(), "signer", false);
    let other = KeyPair::generate(dir.path(), "other", true);
    let source = Source::new(&["a.py"]);
    let (zip, _) = source.build("signed.zip", Some(&signer.private));
    bundle::verify(&zip, Some(&signer.pkix)).unwrap();
    for public in [&other.pkix, &other.pkcs1_public] {
        let error = bundle::verify(&zip, Some(public)).unwrap_err();
        assert!(
            matches!(error, BundleError::BadSignature { .. }),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with("crypto/rsa: verification error"),
            "{error}"
        );
    }
}

#[test]
fn an_unsigned_bundle_fails_when_a_public_key_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyPair::generate(dir.path(), "k", false);
    let source = Source::new(&[]);
    let (zip, _) = source.build("unsigned.zip", None);
    let error = bundle::verify(&zip, Some(&keys.pkix)).unwrap_err();
    assert!(matches!(error, BundleError::NotSigned), "{error:?}");
    assert!(
        error.to_string().starts_with("Bundle isn't signed"),
        "{error}"
    );
}

/// A valid bundle's entries, re-written by Python with `change` applied.
fn rewritten(
    source: &Source,
    name: &str,
    change: impl Fn(&mut Vec<(String, String, u16)>),
) -> PathBuf {
    let (zip, _) = source.build("valid.zip", None);
    let read = read_zip(&zip);
    let mut entries: Vec<(String, String, u16)> = read["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let entry = e["name"].as_str().unwrap().to_owned();
            let text = read["files"][&entry].as_str().unwrap_or("").to_owned();
            (entry, text, e["method"].as_u64().unwrap() as u16)
        })
        .collect();
    change(&mut entries);
    let path = source.path(name);
    let borrowed: Vec<_> = entries
        .iter()
        .map(|(n, t, m)| (n.as_str(), t.as_str(), *m))
        .collect();
    write_zip(&path, &borrowed);
    path
}

#[test]
fn entries_leaving_the_bundle_folder_are_refused() {
    let source = Source::new(&["a.py"]);
    // Control: re-written unchanged, the bundle still verifies.
    bundle::verify(&rewritten(&source, "control.zip", |_| {}), None).unwrap();
    for evil in ["../evil", "lib/../../evil", "/etc/evil"] {
        let zip = rewritten(&source, "evil.zip", |entries| {
            entries.insert(0, (evil.to_owned(), "x".to_owned(), 8));
        });
        match bundle::verify(&zip, None) {
            Err(BundleError::UnsafeEntry { name, .. }) => assert_eq!(name, evil),
            other => panic!("{evil}: {other:?}"),
        }
    }
}

#[test]
fn compression_other_than_stored_or_deflate_is_refused() {
    let source = Source::new(&["a.py"]);
    // Control: re-written unchanged, the bundle still verifies.
    bundle::verify(&rewritten(&source, "control.zip", |_| {}), None).unwrap();
    let stored = rewritten(&source, "stored.zip", |entries| {
        entries.iter_mut().for_each(|e| e.2 = 0);
    });
    bundle::verify(&stored, None).unwrap();

    let zip = rewritten(&source, "bzip2.zip", |entries| {
        entries[0].2 = 12;
    });
    let error = bundle::verify(&zip, None).unwrap_err();
    match &error {
        BundleError::UnsupportedCompression { name, method } => {
            assert_eq!(name, "a.py");
            assert!(method.starts_with("12"), "{method}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        error.to_string().contains("stored (0) and deflate (8)"),
        "{error}"
    );
}

#[test]
fn a_listed_file_missing_from_the_zip_is_an_error() {
    let source = Source::new(&["a.py"]);
    let zip = rewritten(&source, "missing.zip", |entries| {
        entries.retain(|e| e.0 != "a.py");
    });
    match bundle::verify(&zip, None) {
        Err(BundleError::MissingFile { name }) => assert_eq!(name, "a.py"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_zip_without_manifest_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("no-manifest.zip");
    write_zip(&zip, &[("a.py", A_PY, 8)]);
    assert!(matches!(
        bundle::verify(&zip, None),
        Err(BundleError::NoManifest)
    ));
}

#[test]
fn failed_builds_name_the_fault_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyPair::generate(dir.path(), "k", false);

    let source = Source::new(&["a.py", "absent.py"]);
    let output = source.path("out/bundle.zip");
    match bundle::build(&source.manifest, &output, None) {
        Err(BundleError::ReadFile { name, .. }) => assert_eq!(name, "absent.py"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read_dir(source.path("out")).unwrap().count(), 0);

    let source = Source::new(&["../a.py"]);
    let output = source.path("bundle.zip");
    assert!(matches!(
        bundle::build(&source.manifest, &output, None),
        Err(BundleError::BadFileName { .. })
    ));
    assert!(!output.exists());

    // A public key cannot sign.
    let source = Source::new(&["a.py"]);
    let output = source.path("bundle.zip");
    assert!(matches!(
        bundle::build(&source.manifest, &output, Some(&keys.pkix)),
        Err(BundleError::KeyFormat { .. })
    ));
    assert!(!output.exists());
}

/// The bundles shipped in `bundles/` are exactly what `bundle build` makes from
/// the manifests in `manifest/`, so the compose stack serves current ones.
#[test]
fn committed_bundles_match_their_manifests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for (manifest, bundle, hooks) in [
        (
            "manifest/manifest.json",
            "bundles/phantom-bundle-v1.zip",
            &[][..],
        ),
        (
            "manifest/manifest-id-extractor.json",
            "bundles/phantom-bundle-idx-v1.zip",
            &[],
        ),
        // The name API definitions written for Curity's tutorial ask for,
        // with the hooks of Curity's manifest.
        (
            "manifest/manifest-curity.json",
            "bundles/phantom-bundle.zip",
            &["post_key_auth:InjectJwtPostKeyAuth"],
        ),
    ] {
        let fresh = dir.path().join("fresh.zip");
        tyk_phantom_token::bundle::build(&root.join(manifest), &fresh, None).unwrap();
        let committed = std::fs::read(root.join(bundle)).unwrap();
        assert!(
            std::fs::read(&fresh).unwrap() == committed,
            "{bundle} is stale: rebuild it with `tyk-phantom-token bundle build --manifest {manifest} --output {bundle}`"
        );
        let report = tyk_phantom_token::bundle::verify(&root.join(bundle), None).unwrap();
        assert_eq!(report.driver, "grpc");
        assert_eq!(report.auth_check.as_deref(), Some("PhantomAuthCheck"));
        assert_eq!(report.hooks, hooks, "{bundle}");
    }
}

fn write_bomb(path: &Path, entries: Value) {
    run(
        "python3",
        &["-c", PY_BOMB, path.to_str().unwrap(), &entries.to_string()],
    );
}

/// The most memory this test process has held (Linux `VmHWM`), in bytes.
fn peak_memory() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

const GIB_MIB: u64 = 1024;
/// Far below the gigabyte a bomb inflates to.
const MEMORY_BOUND: u64 = 256 << 20;

fn bomb_manifest(files: &[&str]) -> String {
    json!({
        "file_list": files,
        "custom_middleware": {"driver": "grpc", "auth_check": {"name": "PhantomAuthCheck"}},
        "checksum": "d41d8cd98f00b204e9800998ecf8427e",
    })
    .to_string()
}

/// Verifies `zip` and returns the error, checking that it came fast and with
/// bounded memory.
fn refused(zip: &Path) -> BundleError {
    let started = std::time::Instant::now();
    let error = bundle::verify(zip, None).expect_err("the bundle must be refused");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}: {error}",
        started.elapsed()
    );
    assert!(
        peak_memory() < MEMORY_BOUND,
        "peak memory {} bytes",
        peak_memory()
    );
    error
}

#[test]
fn a_listed_file_that_inflates_to_a_gigabyte_is_refused_before_inflating() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("bomb.zip");
    write_bomb(
        &zip,
        json!([
            {"name": "manifest.json", "text": bomb_manifest(&["bomb.py"])},
            {"name": "bomb.py", "mib": GIB_MIB},
        ]),
    );
    assert!(fs::metadata(&zip).unwrap().len() < 2 << 20, "a small zip");
    let error = refused(&zip);
    match &error {
        BundleError::DeclaredTooLarge {
            name,
            declared,
            limit,
            ..
        } => {
            assert_eq!(name, "bomb.py");
            assert_eq!(*declared, GIB_MIB << 20);
            assert_eq!(*limit, bundle::MAX_LISTED_FILE_BYTES);
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("bomb.py"), "{error}");
}

#[test]
fn an_entry_that_inflates_past_its_declared_size_is_stopped_early() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("liar.zip");
    write_bomb(
        &zip,
        json!([
            {"name": "manifest.json", "text": bomb_manifest(&["liar.py"])},
            {"name": "liar.py", "mib": GIB_MIB, "declared": 4096},
        ]),
    );
    let error = refused(&zip);
    let text = error.to_string();
    assert!(text.contains("liar.py"), "{text}");
    assert!(text.contains("declared"), "{text}");
}

#[test]
fn a_manifest_padded_to_a_gigabyte_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // JSON followed by a gigabyte of spaces is still valid JSON.
    let manifest = bomb_manifest(&[]);
    let honest = dir.path().join("manifest-bomb.zip");
    write_bomb(
        &honest,
        json!([{"name": "manifest.json", "text": manifest, "fill": " ", "mib": GIB_MIB}]),
    );
    match refused(&honest) {
        BundleError::DeclaredTooLarge { name, limit, .. } => {
            assert_eq!(name, "manifest.json");
            assert_eq!(limit, bundle::MAX_MANIFEST_BYTES);
        }
        other => panic!("{other:?}"),
    }
    let liar = dir.path().join("manifest-liar.zip");
    write_bomb(
        &liar,
        json!([{"name": "manifest.json", "text": manifest, "fill": " ", "mib": GIB_MIB,
                "declared": manifest.len()}]),
    );
    let error = refused(&liar);
    assert!(error.to_string().contains("manifest.json"), "{error}");
}

#[test]
fn listed_files_are_capped_in_total_too() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("repeated.zip");
    // One file under the per-file limit, listed often enough to pass the total.
    let mib = (bundle::MAX_LISTED_FILE_BYTES >> 20) - 1;
    let times = (bundle::MAX_LISTED_BYTES / (mib << 20) + 1) as usize;
    write_bomb(
        &zip,
        json!([
            {"name": "manifest.json", "text": bomb_manifest(&vec!["a.py"; times])},
            {"name": "a.py", "mib": mib},
        ]),
    );
    match refused(&zip) {
        BundleError::ListedTooLarge { declared, limit } => {
            assert_eq!(declared, times as u64 * (mib << 20));
            assert_eq!(limit, bundle::MAX_LISTED_BYTES);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_large_listed_file_is_hashed_without_holding_it_in_memory() {
    use md5::{Digest, Md5};
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("large.zip");
    let mib = 24;
    assert!(mib << 20 < bundle::MAX_LISTED_FILE_BYTES);
    let mut md5 = Md5::new();
    let block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        md5.update(&block);
    }
    drop(block);
    let manifest = json!({
        "file_list": ["data.bin"],
        "custom_middleware": {"driver": "grpc", "auth_check": {"name": "PhantomAuthCheck"}},
        "checksum": hex::encode(md5.finalize()),
    })
    .to_string();
    write_bomb(
        &zip,
        json!([
            {"name": "manifest.json", "text": manifest},
            {"name": "data.bin", "mib": mib},
        ]),
    );
    let before = peak_memory();
    let report = bundle::verify(&zip, None).unwrap();
    assert_eq!(report.auth_check.as_deref(), Some("PhantomAuthCheck"));
    let grew = peak_memory().saturating_sub(before);
    assert!(
        grew < 8 << 20,
        "verifying a {mib} MiB file raised peak memory by {grew} bytes"
    );
}
