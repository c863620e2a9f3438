//! The bundles an API definition may name, and what the gateway takes from
//! each: the manifest's `custom_middleware`, which replaces the API's own
//! (spec/tyk-coprocess.md §2.4).
//!
//! Three sources, the first that knows a name wins: bundle zips given on the
//! command line (by file name, verified as the gateway verifies a download),
//! a `manifest.json` given on the command line (standing for any other name),
//! and the bundles this project ships in `bundles/`, whose manifests are
//! compiled in from `manifest/`.

use std::path::Path;

use crate::bundle::{self, BundleError, Middleware};

/// The bundles served from `bundles/`, by name, with the manifest each is
/// built from (the README's table; a test checks each zip against it).
pub const SHIPPED: [(&str, &str); 3] = [
    (
        "phantom-bundle-v1.zip",
        include_str!("../../manifest/manifest.json"),
    ),
    (
        "phantom-bundle-idx-v1.zip",
        include_str!("../../manifest/manifest-id-extractor.json"),
    ),
    (
        "phantom-bundle.zip",
        include_str!("../../manifest/manifest-curity.json"),
    ),
];

/// One bundle the check knows.
#[derive(Debug, Clone)]
struct Known {
    name: String,
    /// Where its manifest came from, for messages.
    origin: String,
    /// Its middleware, or why the gateway would refuse the bundle.
    middleware: Result<Middleware, String>,
    /// Given by its own path (not found in a folder of bundles).
    named: bool,
}

/// The bundles API definitions are checked against.
#[derive(Debug, Clone)]
pub struct Bundles {
    given: Vec<Known>,
    manifest: Option<Known>,
    shipped: Vec<Known>,
}

/// What an API's bundle name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The middleware the gateway will use, and where it was read from.
    Found {
        middleware: Middleware,
        origins: Vec<String>,
    },
    /// Names no source knows.
    Unknown(Vec<String>),
    /// A given bundle the gateway would refuse: its name and why.
    Refused { name: String, reason: String },
    /// Several bundles that the gateway cannot merge, and why.
    Conflict(String),
}

impl Bundles {
    /// The shipped bundles only.
    ///
    /// # Errors
    ///
    /// When a compiled-in manifest does not read, which a test rules out.
    pub fn shipped() -> Result<Self, BundleError> {
        let mut shipped = Vec::new();
        for (name, manifest) in SHIPPED {
            let middleware = bundle::read_manifest(manifest.as_bytes(), name)?;
            shipped.push(Known {
                name: name.to_owned(),
                origin: format!("{name} (shipped, built from manifest/)"),
                middleware: Ok(middleware),
                named: false,
            });
        }
        Ok(Bundles {
            given: Vec::new(),
            manifest: None,
            shipped,
        })
    }

    /// Adds a bundle zip, known by its file name; `named` when the operator
    /// named this file (rather than a folder holding it). It is verified as
    /// the gateway verifies a download (entries, checksum); a bundle that
    /// fails is kept as refused, so that the APIs naming it are told why.
    ///
    /// # Errors
    ///
    /// When the file cannot be read as a bundle at all.
    pub fn add_zip(&mut self, path: &Path, named: bool) -> Result<(), BundleError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let middleware = match bundle::verify(path, None) {
            Ok(report) => Ok(report.middleware),
            Err(e) if e.is_unreadable() => return Err(e),
            Err(e) => Err(e.to_string()),
        };
        self.given.push(Known {
            name,
            origin: path.display().to_string(),
            middleware,
            named,
        });
        Ok(())
    }

    /// Sets the manifest that stands for every bundle name not given as a
    /// zip (the manifest a bundle is about to be built from).
    ///
    /// # Errors
    ///
    /// When the manifest does not read.
    pub fn set_manifest(&mut self, path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
        let origin = format!("manifest {}", path.display());
        let middleware = bundle::read_manifest(bytes, &origin)?;
        self.manifest = Some(Known {
            name: String::new(),
            origin,
            middleware: Ok(middleware),
            named: true,
        });
        Ok(())
    }

    /// The bundle zips the operator named one by one, as (name, path).
    pub fn named(&self) -> impl Iterator<Item = (&str, &str)> {
        self.given
            .iter()
            .filter(|k| k.named)
            .map(|k| (k.name.as_str(), k.origin.as_str()))
    }

    /// The names of the shipped bundles.
    pub fn shipped_names() -> impl Iterator<Item = &'static str> {
        SHIPPED.iter().map(|(name, _)| *name)
    }

    fn find(&self, name: &str) -> Option<&Known> {
        self.given
            .iter()
            .find(|k| k.name == name)
            .or(self.manifest.as_ref())
            .or_else(|| self.shipped.iter().find(|k| k.name == name))
    }

    /// What the gateway configures from `names`: one bundle name, or several
    /// separated by commas, merged as the gateway merges them.
    pub fn resolve(&self, names: &str) -> Resolved {
        let names: Vec<&str> = names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        let unknown: Vec<String> = names
            .iter()
            .filter(|n| self.find(n).is_none())
            .map(|n| (*n).to_owned())
            .collect();
        if !unknown.is_empty() {
            return Resolved::Unknown(unknown);
        }
        let mut parts = Vec::new();
        let mut origins = Vec::new();
        for name in &names {
            let Some(known) = self.find(name) else {
                return Resolved::Unknown(vec![(*name).to_owned()]);
            };
            match &known.middleware {
                Ok(middleware) => parts.push(middleware),
                Err(reason) => {
                    return Resolved::Refused {
                        name: (*name).to_owned(),
                        reason: reason.clone(),
                    };
                }
            }
            origins.push(known.origin.clone());
        }
        match merge(&parts) {
            Ok(middleware) => Resolved::Found {
                middleware,
                origins,
            },
            Err(why) => Resolved::Conflict(why),
        }
    }
}

/// Several bundles' sections as one, as the gateway merges them: list
/// hooks appended in bundle order, at most one `auth_check`, one driver for
/// all, and the first `id_extractor` wins (spec/tyk-coprocess.md §2.4).
fn merge(parts: &[&Middleware]) -> Result<Middleware, String> {
    if let [only] = parts {
        return Ok((*only).clone());
    }
    let mut merged = Middleware::default();
    for (index, part) in parts.iter().enumerate() {
        if index == 0 {
            merged.driver.clone_from(&part.driver);
        } else if part.driver != merged.driver {
            return Err(format!(
                "the bundles use different drivers ({:?} and {:?}); the gateway needs one",
                merged.driver, part.driver
            ));
        }
        if let Some(hook) = &part.auth_check {
            if merged.auth_check.is_some() {
                return Err(
                    "more than one of the bundles sets auth_check; the gateway allows one".into(),
                );
            }
            merged.auth_check = Some(hook.clone());
        }
        merged.hooks.extend(part.hooks.iter().cloned());
        if merged.id_extractor.is_none() {
            merged.id_extractor.clone_from(&part.id_extractor);
        }
    }
    Ok(merged)
}
