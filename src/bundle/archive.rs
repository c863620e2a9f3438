//! The bundle zip: writing one reproducibly and atomically, and checking one's
//! entries the way the gateway's unpacker would.
//!
//! The gateway unpacks with a plain zip reader: only stored and deflate
//! entries can be read; names that are absolute or contain `..` are refused;
//! directory entries are created one level at a time and file entries do not
//! create their parent folders. The writer therefore puts each folder's
//! directory entry before the first file in it, and the reader refuses zips
//! that the gateway could not unpack.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process;
use std::sync::atomic::{AtomicU32, Ordering};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System, ZipArchive, ZipWriter};

use super::BundleError;
use super::manifest::{MANIFEST_NAME, check_entry_name};

/// Fixed metadata for every entry, so that equal inputs give equal zips: no
/// clock, no file modes or owner from the build machine.
fn entry_options(permissions: u32) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(6))
        .last_modified_time(DateTime::DEFAULT)
        .unix_permissions(permissions)
        .system(System::Unix)
}

/// A bundle being written to a temporary file beside its destination.
pub(super) struct BundleWriter {
    // Dropped before `temp`, so an abandoned zip is closed before its file is
    // removed.
    zip: ZipWriter<File>,
    temp: TempFile,
    output: PathBuf,
    /// Directory entries written so far (with their trailing `/`).
    dirs: BTreeSet<String>,
}

impl BundleWriter {
    /// Creates the output's folder if needed and a temporary file in it.
    pub fn create(output: &Path) -> Result<Self, BundleError> {
        let dir = super::parent_dir(output);
        fs::create_dir_all(dir).map_err(|source| BundleError::WriteOutput {
            path: dir.to_path_buf(),
            source,
        })?;
        let (file, temp) = TempFile::create(output)?;
        Ok(Self {
            zip: ZipWriter::new(file),
            temp,
            output: output.to_path_buf(),
            dirs: BTreeSet::new(),
        })
    }

    /// Adds a file entry named exactly `name`, after directory entries for any
    /// of its folders not yet written.
    pub fn add_file(&mut self, name: &str, data: &[u8]) -> Result<(), BundleError> {
        for (slash, _) in name.match_indices('/') {
            let dir = &name[..=slash];
            if self.dirs.insert(dir.to_owned()) {
                let result = self.zip.add_directory(dir, entry_options(0o755));
                result.map_err(|source| self.zip_error(source))?;
            }
        }
        let result = self.zip.start_file(name, entry_options(0o644));
        result.map_err(|source| self.zip_error(source))?;
        self.zip
            .write_all(data)
            .map_err(|source| self.zip_error(source.into()))
    }

    /// Finishes the zip, flushes it to disk and renames it to the output path.
    pub fn commit(self) -> Result<(), BundleError> {
        let Self {
            zip, temp, output, ..
        } = self;
        let file = zip.finish().map_err(|source| BundleError::WriteZip {
            path: output.clone(),
            source,
        })?;
        let write_error = |source| BundleError::WriteOutput {
            path: output.clone(),
            source,
        };
        file.sync_all().map_err(write_error)?;
        drop(file);
        fs::rename(&temp.path, &output).map_err(write_error)?;
        temp.keep();
        Ok(())
    }

    fn zip_error(&self, source: zip::result::ZipError) -> BundleError {
        BundleError::WriteZip {
            path: self.output.clone(),
            source,
        }
    }
}

/// A temporary file that is removed unless kept.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// Creates `.<name>.<pid>.<n>.tmp` beside `output`; the rename that
    /// replaces `output` then stays within one file system.
    fn create(output: &Path) -> Result<(File, Self), BundleError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = output.file_name().ok_or_else(|| BundleError::WriteOutput {
            path: output.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "the output path names no file"),
        })?;
        let dir = super::parent_dir(output);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let mut temp_name = std::ffi::OsString::from(".");
            temp_name.push(name);
            temp_name.push(format!(".{}.{n}.tmp", process::id()));
            let path = dir.join(temp_name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok((file, Self { path, keep: false })),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists && n < 1000 => {}
                Err(source) => return Err(BundleError::WriteOutput { path, source }),
            }
        }
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: the error that abandoned the file is the one to report.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// An opened bundle whose entries passed the gateway's unpacking checks.
pub(super) struct BundleReader {
    zip: ZipArchive<BufReader<File>>,
    path: PathBuf,
}

impl BundleReader {
    /// Opens the zip and checks every entry: a safe name, stored or deflate,
    /// not encrypted, and its parent folder created by an earlier entry.
    pub fn open(path: &Path) -> Result<Self, BundleError> {
        let file = File::open(path).map_err(|source| BundleError::OpenBundle {
            path: path.to_path_buf(),
            source,
        })?;
        let zip = ZipArchive::new(BufReader::new(file)).map_err(|source| BundleError::ReadZip {
            path: path.to_path_buf(),
            source,
        })?;
        let reader = Self {
            zip,
            path: path.to_path_buf(),
        };
        reader.check_entries()?;
        Ok(reader)
    }

    fn check_entries(&self) -> Result<(), BundleError> {
        // The reader keeps one entry per name; the gateway would unpack both
        // and keep the later one, so which bytes count would be ambiguous.
        if self.zip.has_duplicate_names() {
            return Err(BundleError::DuplicateEntries);
        }
        let mut dirs = HashSet::new();
        for index in 0..self.zip.len() {
            let entry = self
                .zip
                .by_index_data(index)
                .map_err(|source| self.read_error(source))?;
            let name = entry
                .name()
                .map_err(|source| self.read_error(source))?
                .into_owned();
            check_entry_name(&name).map_err(|reason| BundleError::UnsafeEntry {
                name: name.clone(),
                reason,
            })?;
            let method = entry.compression();
            if method != CompressionMethod::Stored && method != CompressionMethod::Deflated {
                return Err(BundleError::UnsupportedCompression {
                    name,
                    method: describe(method),
                });
            }
            if entry.encrypted() {
                return Err(BundleError::EncryptedEntry { name });
            }
            let segments = segments(&name);
            let parents = segments
                .split_last()
                .map_or(&[][..], |(_, parents)| parents);
            if !parents.is_empty() {
                let parent = parents.join("/");
                if !dirs.contains(&parent) {
                    return Err(BundleError::MissingParent { name, parent });
                }
            }
            if entry.is_dir() && !segments.is_empty() {
                dirs.insert(segments.join("/"));
            }
        }
        Ok(())
    }

    /// The bytes of the top-level `manifest.json`, at most `limit`.
    pub fn read_manifest(&mut self, limit: Limit) -> Result<Vec<u8>, BundleError> {
        let index = self
            .zip
            .index_for_name(MANIFEST_NAME)
            .ok_or(BundleError::NoManifest)?;
        let mut data = Vec::new();
        self.stream_index(index, MANIFEST_NAME, limit, |chunk| {
            data.extend_from_slice(chunk);
        })?;
        Ok(data)
    }

    /// The uncompressed size the file entry named exactly `name` declares.
    pub fn declared_size(&self, name: &str) -> Result<u64, BundleError> {
        let index = self.file_index(name)?;
        let entry = self
            .zip
            .by_index_data(index)
            .map_err(|source| self.read_error(source))?;
        Ok(entry.size())
    }

    /// Feeds the bytes of the file entry named exactly `name` to `sink`, a
    /// piece at a time, reading at most `limit` of them.
    pub fn stream_file(
        &mut self,
        name: &str,
        limit: Limit,
        sink: impl FnMut(&[u8]),
    ) -> Result<(), BundleError> {
        let index = self.file_index(name)?;
        self.stream_index(index, name, limit, sink)
    }

    fn file_index(&self, name: &str) -> Result<usize, BundleError> {
        let missing = || BundleError::MissingFile {
            name: name.to_owned(),
        };
        let index = self.zip.index_for_name(name).ok_or_else(missing)?;
        let entry = self
            .zip
            .by_index_data(index)
            .map_err(|source| self.read_error(source))?;
        if entry.is_dir() {
            return Err(missing());
        }
        Ok(index)
    }

    /// Refuses an entry whose declared size is over `limit` before inflating
    /// anything, then reads through a reader that stops after `limit` bytes
    /// whatever the header said (a header can lie).
    fn stream_index(
        &mut self,
        index: usize,
        name: &str,
        limit: Limit,
        sink: impl FnMut(&[u8]),
    ) -> Result<(), BundleError> {
        let read_entry = |source| BundleError::ReadEntry {
            name: name.to_owned(),
            source,
        };
        let entry = self
            .zip
            .by_index(index)
            .map_err(|source| read_entry(source.into()))?;
        if entry.size() > limit.bytes {
            return Err(BundleError::DeclaredTooLarge {
                name: name.to_owned(),
                declared: entry.size(),
                limit: limit.bytes,
                what: limit.what,
            });
        }
        // The zip reader also checks the entry's CRC-32 at the end.
        match feed_capped(entry, limit.bytes, sink) {
            Ok(true) => Ok(()),
            Ok(false) => Err(BundleError::InflatesTooLarge {
                name: name.to_owned(),
                limit: limit.bytes,
                what: limit.what,
            }),
            Err(source) => Err(read_entry(source)),
        }
    }

    fn read_error(&self, source: zip::result::ZipError) -> BundleError {
        BundleError::ReadZip {
            path: self.path.clone(),
            source,
        }
    }
}

/// A bound on the bytes read from an entry, and what it bounds (for messages).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limit {
    pub bytes: u64,
    pub what: &'static str,
}

/// Feeds `reader` to `sink` in pieces of at most 64 KiB until it ends; `false`
/// as soon as it holds more than `limit` bytes (the excess is never fed).
fn feed_capped(reader: impl Read, limit: u64, mut sink: impl FnMut(&[u8])) -> io::Result<bool> {
    let mut reader = reader.take(limit.saturating_add(1));
    let mut buffer = vec![0; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        total += n as u64;
        if total > limit {
            return Ok(false);
        }
        sink(&buffer[..n]);
    }
}

/// Path segments as the gateway's file system sees them: empty and `.`
/// segments name no folder.
fn segments(name: &str) -> Vec<&str> {
    name.split('/')
        .filter(|segment| !segment.is_empty() && *segment != ".")
        .collect()
}

/// A compression method with its number where the reader only knows that.
fn describe(method: CompressionMethod) -> String {
    #[allow(deprecated)] // The variant is the only way to learn the number.
    if let CompressionMethod::Unsupported(number) = method {
        return format!("{number} ({})", CompressionMethod::name_from_u16(number));
    }
    format!("{method:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeding_stops_past_the_limit_whatever_the_reader_holds() {
        let mut fed = Vec::new();
        let data = vec![7u8; 200_000];
        assert!(feed_capped(&data[..], 200_000, |c| fed.extend_from_slice(c)).unwrap());
        assert_eq!(fed, data);

        fed.clear();
        assert!(!feed_capped(&data[..], 199_999, |c| fed.extend_from_slice(c)).unwrap());
        assert!(fed.len() <= 199_999, "{}", fed.len());
        // An endless reader ends at the limit too.
        assert!(!feed_capped(io::repeat(0), 1 << 20, |_| {}).unwrap());
        assert!(feed_capped(io::empty(), 0, |_| {}).unwrap());
    }

    #[test]
    fn segments_ignore_empty_and_dot_parts() {
        assert_eq!(segments("a//b/./c"), ["a", "b", "c"]);
        assert_eq!(segments("lib/"), ["lib"]);
        assert!(segments("./").is_empty());
    }

    #[test]
    fn unknown_methods_are_described_with_their_number() {
        assert_eq!(describe(CompressionMethod::BZIP2), "12 (Bzip2)");
        assert_eq!(describe(CompressionMethod::ZSTD), "93 (Zstd)");
    }

    #[test]
    fn nested_files_get_their_directory_entries_first_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out").join("b.zip");
        let mut writer = BundleWriter::create(&output).unwrap();
        writer.add_file("lib/x/a.py", b"a").unwrap();
        writer.add_file("lib/b.py", b"b").unwrap();
        writer.add_file("top.py", b"t").unwrap();
        writer.commit().unwrap();

        let zip = ZipArchive::new(File::open(&output).unwrap()).unwrap();
        let names: Vec<_> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
        assert_eq!(
            names,
            ["lib/", "lib/x/", "lib/x/a.py", "lib/b.py", "top.py"]
        );
        // The result passes the gateway's unpacking rules.
        BundleReader::open(&output).unwrap();
        // Only the bundle is left in the folder: the temporary file was renamed.
        let left: Vec<_> = fs::read_dir(output.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from("b.zip")]);
    }

    #[test]
    fn an_abandoned_bundle_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("b.zip");
        let mut writer = BundleWriter::create(&output).unwrap();
        writer.add_file("a.py", b"a").unwrap();
        drop(writer);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_file_before_its_folder_entry_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.zip");
        let mut zip = ZipWriter::new(File::create(&path).unwrap());
        zip.start_file("lib/a.py", entry_options(0o644)).unwrap();
        zip.write_all(b"a").unwrap();
        zip.add_directory("lib/", entry_options(0o755)).unwrap();
        zip.finish().unwrap();
        match BundleReader::open(&path) {
            Err(BundleError::MissingParent { name, parent }) => {
                assert_eq!((name.as_str(), parent.as_str()), ("lib/a.py", "lib"));
            }
            other => panic!("{:?}", other.err()),
        }
    }
}
