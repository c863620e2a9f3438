//! `check-api`: checks Tyk API definitions, and the bundles they name,
//! against what the plugin needs. Exit 0 when there is no error, 1 with
//! errors, 2 when an input cannot be read.

use std::path::{Path, PathBuf};

use clap::ValueEnum;

use super::*;
use crate::apidef::{self, Bundles, Report, Unreadable};

/// Largest file read as an API definition or manifest (OAS documents with
/// many paths reach a few MiB).
const MAX_INPUT_BYTES: u64 = 16 << 20;

#[derive(Debug, Args)]
pub struct CheckApiArgs {
    /// API definition files (classic or OAS), or folders: every `*.json` in
    /// them.
    #[arg(required = true, value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// A bundle zip the definitions may name (known by its file name, and
    /// verified as the gateway verifies a download), or a folder of them.
    /// May be repeated.
    #[arg(long = "bundle", value_name = "ZIP")]
    pub bundles: Vec<PathBuf>,
    /// The manifest.json of the bundle the definitions name, when its zip is
    /// not built yet; it stands for every bundle name not given with
    /// --bundle.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// How to print the findings.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Output formats of `check-api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per finding, then a summary.
    Text,
    /// One JSON document, for pipelines.
    Json,
}

/// `check-api`: reads the inputs, checks them, prints the report.
pub fn check_api(args: &CheckApiArgs) -> ExitCode {
    let mut report = Report::default();
    let globals = match global_identity() {
        Ok(globals) => globals,
        Err(problem) => {
            report.unreadable.push(Unreadable {
                file: "the plugin's environment (.env)".to_owned(),
                problem,
            });
            return print(&report, args.format);
        }
    };
    let bundles = match bundles(args, &mut report) {
        Some(bundles) => bundles,
        None => return print(&report, args.format),
    };
    let mut definitions = Vec::new();
    for (file, _) in files(&args.inputs, "json", &mut report) {
        let shown = file.display().to_string();
        match read_capped(&file) {
            Ok(bytes) => match apidef::read_definition(&bytes) {
                Ok(def) => definitions.push((shown, def)),
                Err(e) => report.unreadable.push(Unreadable {
                    file: shown,
                    problem: e.to_string(),
                }),
            },
            Err(problem) => report.unreadable.push(Unreadable {
                file: shown,
                problem,
            }),
        }
    }
    apidef::check(&definitions, &bundles, &globals, &mut report);
    print(&report, args.format)
}

/// The global identity rules, from `.env` and the environment as the plugin
/// reads them.
fn global_identity() -> Result<crate::api_rules::IdentityRules, String> {
    load_dotenv()?;
    config::identity_from_source(&config::Environment).map_err(|e| e.to_string())
}

/// The shipped bundles plus those given; `None` when a given one cannot be
/// read (recorded in `report`).
fn bundles(args: &CheckApiArgs, report: &mut Report) -> Option<Bundles> {
    let mut bundles = match Bundles::shipped() {
        Ok(bundles) => bundles,
        Err(e) => {
            report.unreadable.push(Unreadable {
                file: "the shipped manifests".to_owned(),
                problem: e.to_string(),
            });
            return None;
        }
    };
    let unreadable_before = report.unreadable.len();
    for (zip, named) in files(&args.bundles, "zip", report) {
        if let Err(e) = bundles.add_zip(&zip, named) {
            report.unreadable.push(Unreadable {
                file: zip.display().to_string(),
                problem: e.to_string(),
            });
        }
    }
    if let Some(path) = &args.manifest {
        let read = read_capped(path).and_then(|bytes| {
            bundles
                .set_manifest(path, &bytes)
                .map_err(|e| e.to_string())
        });
        if let Err(problem) = read {
            report.unreadable.push(Unreadable {
                file: path.display().to_string(),
                problem,
            });
        }
    }
    (report.unreadable.len() == unreadable_before).then_some(bundles)
}

/// The files named (`true`), with every `*.{extension}` of the folders
/// named (`false`), in name order. Empty folders are recorded as
/// unreadable; a missing file is found unreadable when it is read.
fn files(inputs: &[PathBuf], extension: &str, report: &mut Report) -> Vec<(PathBuf, bool)> {
    let mut files = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            files.push((input.clone(), true));
            continue;
        }
        let listed = std::fs::read_dir(input).map(|entries| {
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| {
                    path.is_file()
                        && path
                            .extension()
                            .is_some_and(|e| e.eq_ignore_ascii_case(extension))
                })
                .collect();
            found.sort();
            found
        });
        match listed {
            Ok(found) if found.is_empty() => report.unreadable.push(Unreadable {
                file: input.display().to_string(),
                problem: format!("the folder holds no *.{extension} file"),
            }),
            Ok(found) => files.extend(found.into_iter().map(|path| (path, false))),
            Err(e) => report.unreadable.push(Unreadable {
                file: input.display().to_string(),
                problem: format!("cannot list the folder: {e}"),
            }),
        }
    }
    files
}

/// The file's bytes, at most [`MAX_INPUT_BYTES`].
fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(format!("larger than {MAX_INPUT_BYTES} bytes"));
    }
    Ok(bytes)
}

fn print(report: &Report, format: Format) -> ExitCode {
    let text = match format {
        Format::Text => report.text(),
        Format::Json => report.json() + "\n",
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    ExitCode::from(report.exit_code())
}
