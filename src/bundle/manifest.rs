//! `manifest.json`: the fields the gateway reads, checked for the types its
//! JSON decoder needs, inside an object that is otherwise kept as written (so
//! keys this tool does not know survive a build).
//!
//! Also the rules for names in `file_list`: the builder stores each name as the
//! zip entry name and the gateway unpacks it below its bundle folder, so a name
//! must stay inside that folder and mean the same file on every system.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::BundleError;

/// The manifest's own entry in the zip.
pub(super) const MANIFEST_NAME: &str = "manifest.json";

const FILE_LIST: &str = "file_list";
const CUSTOM_MIDDLEWARE: &str = "custom_middleware";
const CHECKSUM: &str = "checksum";
const SIGNATURE: &str = "signature";

/// Hook lists, in the order the gateway runs them (`auth_check` runs between
/// `pre` and `post_key_auth`).
const HOOK_LISTS: [&str; 4] = ["pre", "post_key_auth", "post", "response"];

/// `extract_with` values the gateway implements; any other leaves the
/// extractor off.
const EXTRACTORS: [&str; 3] = ["value", "regex", "xpath"];

/// A parsed manifest.
#[derive(Debug)]
pub(super) struct Manifest {
    /// The whole object, unknown keys included.
    fields: Map<String, Value>,
    /// Absent or `null` reads as empty, as in the gateway.
    pub file_list: Vec<String>,
    pub checksum: String,
    pub signature: String,
    pub middleware: Middleware,
}

/// The parts of a `custom_middleware` section (a manifest's, or an API
/// definition's own) that decide what the gateway calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Middleware {
    /// `driver`, possibly empty.
    pub driver: String,
    /// `auth_check`; `None` when the section has none.
    pub auth_check: Option<Hook>,
    /// `(list, hook)` for every entry of the hook lists, in chain order.
    pub hooks: Vec<(&'static str, Hook)>,
    /// `id_extractor`, when the section has one (active or not).
    pub id_extractor: Option<IdExtractor>,
}

/// One hook entry (`auth_check`, or an entry of a hook list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hook {
    pub name: String,
    pub disabled: bool,
    /// The gateway sends the body once (`raw_body`) instead of twice.
    pub raw_body_only: bool,
}

/// `custom_middleware.id_extractor`: the gateway's own cache of sessions
/// per extracted value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdExtractor {
    pub disabled: bool,
    /// `header`, `form`, `body` (or anything else, which extracts nothing).
    pub extract_from: String,
    /// `value`, `regex` or `xpath`.
    pub extract_with: String,
    /// `extractor_config.header_name`.
    pub header_name: String,
    /// `extractor_config.param_name`.
    pub param_name: String,
}

impl IdExtractor {
    /// Whether the gateway uses it: not disabled, and an `extract_with` it
    /// implements (any other value leaves the extractor off).
    pub fn is_active(&self) -> bool {
        !self.disabled && EXTRACTORS.contains(&self.extract_with.as_str())
    }
}

/// JSON types the gateway's decoder requires of a field. `null` is accepted
/// for all of them and reads as the zero value.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Object,
    Hooks,
    Strings,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Self::Str => "a string",
            Self::Bool => "true or false",
            Self::Object => "an object",
            Self::Hooks => "a list of hook objects",
            Self::Strings => "a list of strings",
        }
    }

    fn matches(self, value: &Value) -> bool {
        match self {
            Self::Str => value.is_string(),
            Self::Bool => value.is_boolean(),
            Self::Object => value.is_object(),
            Self::Hooks => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_object)),
            Self::Strings => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
        }
    }
}

impl Manifest {
    /// Parses `bytes`; `origin` names the manifest in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self, BundleError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|source| BundleError::ManifestJson {
                origin: origin.to_owned(),
                source,
            })?;
        let Value::Object(fields) = value else {
            return Err(BundleError::ManifestNotObject {
                origin: origin.to_owned(),
            });
        };
        let file_list = field(&fields, "", FILE_LIST, Kind::Strings)?
            .and_then(Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let checksum = string(&fields, "", CHECKSUM)?;
        let signature = string(&fields, "", SIGNATURE)?;
        let middleware = match field(&fields, "", CUSTOM_MIDDLEWARE, Kind::Object)? {
            Some(Value::Object(section)) => Middleware::parse(section, CUSTOM_MIDDLEWARE)?,
            _ => Middleware::default(),
        };
        Ok(Self {
            fields,
            file_list,
            checksum,
            signature,
            middleware,
        })
    }

    /// What the Tyk builder requires, plus name rules that keep the zip
    /// unpackable: a driver, at least one hook, safe and distinct file names.
    pub fn check_buildable(&self) -> Result<(), BundleError> {
        if self.middleware.driver.is_empty() {
            return Err(BundleError::NoDriver);
        }
        let auth_named = self
            .middleware
            .auth_check
            .as_ref()
            .is_some_and(|hook| !hook.name.is_empty());
        if !auth_named && self.middleware.hooks.is_empty() {
            return Err(BundleError::NoHooks);
        }
        let mut seen = HashSet::new();
        for name in &self.file_list {
            check_file_name(name).map_err(|reason| BundleError::BadFileName {
                name: name.clone(),
                reason,
            })?;
            if !seen.insert(name.as_str()) {
                return Err(BundleError::DuplicateFile { name: name.clone() });
            }
        }
        Ok(())
    }

    /// The gateway reads listed files from below its bundle folder; a name
    /// that is absolute or climbs out with `..` is refused.
    pub fn check_listed_entries(&self) -> Result<(), BundleError> {
        for name in &self.file_list {
            check_entry_name(name).map_err(|reason| BundleError::BadFileName {
                name: name.clone(),
                reason,
            })?;
        }
        Ok(())
    }

    /// The manifest as written into the zip: every original key, with
    /// `file_list`, `checksum` and `signature` set.
    pub fn sealed(&self, checksum: &str, signature: &str) -> Result<Vec<u8>, BundleError> {
        let mut fields = self.fields.clone();
        let names = self.file_list.iter().cloned().map(Value::String).collect();
        fields.insert(FILE_LIST.to_owned(), Value::Array(names));
        fields.insert(CHECKSUM.to_owned(), Value::String(checksum.to_owned()));
        fields.insert(SIGNATURE.to_owned(), Value::String(signature.to_owned()));
        let mut json = serde_json::to_vec_pretty(&Value::Object(fields)).map_err(|source| {
            BundleError::ManifestJson {
                origin: "the manifest to write".to_owned(),
                source,
            }
        })?;
        json.push(b'\n');
        Ok(json)
    }
}

impl Middleware {
    /// Reads a `custom_middleware` section; field paths in errors start with
    /// `at`.
    pub(super) fn parse(section: &Map<String, Value>, at: &str) -> Result<Self, BundleError> {
        let driver = string(section, at, "driver")?;
        let auth_check = match field(section, at, "auth_check", Kind::Object)? {
            Some(Value::Object(hook)) => Some(Hook::parse(hook, &format!("{at}.auth_check"))?),
            _ => None,
        };
        let mut hooks = Vec::new();
        for list in HOOK_LISTS {
            if let Some(Value::Array(entries)) = field(section, at, list, Kind::Hooks)? {
                for (index, entry) in entries.iter().enumerate() {
                    if let Value::Object(hook) = entry {
                        hooks.push((list, Hook::parse(hook, &format!("{at}.{list}[{index}]"))?));
                    }
                }
            }
        }
        let id_extractor = match field(section, at, "id_extractor", Kind::Object)? {
            Some(Value::Object(extractor)) => Some(IdExtractor::parse(
                extractor,
                &format!("{at}.id_extractor"),
            )?),
            _ => None,
        };
        Ok(Self {
            driver,
            auth_check,
            hooks,
            id_extractor,
        })
    }

    /// The custom-auth hook name, when the gateway will call it by name.
    pub fn active_auth_check(&self) -> Option<&str> {
        let hook = self.auth_check.as_ref()?;
        (!hook.name.is_empty() && !hook.disabled).then_some(hook.name.as_str())
    }

    /// Enabled list hooks as `kind:name`, in chain order.
    pub fn active_hooks(&self) -> Vec<String> {
        self.hooks
            .iter()
            .filter(|(_, hook)| !hook.disabled)
            .map(|(list, hook)| format!("{list}:{}", hook.name))
            .collect()
    }

    /// The id_extractor the gateway will use, if any.
    pub fn active_id_extractor(&self) -> Option<&IdExtractor> {
        self.id_extractor.as_ref().filter(|e| e.is_active())
    }
}

impl IdExtractor {
    fn parse(extractor: &Map<String, Value>, at: &str) -> Result<Self, BundleError> {
        let (header_name, param_name) =
            match field(extractor, at, "extractor_config", Kind::Object)? {
                Some(Value::Object(config)) => {
                    let at = format!("{at}.extractor_config");
                    (
                        string(config, &at, "header_name")?,
                        string(config, &at, "param_name")?,
                    )
                }
                _ => (String::new(), String::new()),
            };
        Ok(Self {
            disabled: boolean(extractor, at, "disabled")?,
            extract_from: string(extractor, at, "extract_from")?,
            extract_with: string(extractor, at, "extract_with")?,
            header_name,
            param_name,
        })
    }
}

impl Hook {
    fn parse(hook: &Map<String, Value>, at: &str) -> Result<Self, BundleError> {
        string(hook, at, "path")?;
        boolean(hook, at, "require_session")?;
        Ok(Self {
            name: string(hook, at, "name")?,
            disabled: boolean(hook, at, "disabled")?,
            raw_body_only: boolean(hook, at, "raw_body_only")?,
        })
    }
}

/// The value of `key` in `object` (at path `at`), if present and not `null`.
///
/// The gateway matches keys ignoring case; this tool reads only the canonical
/// lowercase name and refuses other spellings, so that the two never read
/// different fields.
fn field<'a>(
    object: &'a Map<String, Value>,
    at: &str,
    key: &str,
    kind: Kind,
) -> Result<Option<&'a Value>, BundleError> {
    let path = |name: &str| {
        if at.is_empty() {
            name.to_owned()
        } else {
            format!("{at}.{name}")
        }
    };
    if let Some(other) = object
        .keys()
        .find(|other| other.as_str() != key && fold(other) == key)
    {
        return Err(BundleError::KeyCase {
            found: path(other),
            expected: path(key),
        });
    }
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) if kind.matches(value) => Ok(Some(value)),
        Some(_) => Err(BundleError::FieldType {
            field: path(key),
            expected: kind.expected(),
        }),
    }
}

fn string(object: &Map<String, Value>, at: &str, key: &str) -> Result<String, BundleError> {
    Ok(field(object, at, key, Kind::Str)?
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned())
}

fn boolean(object: &Map<String, Value>, at: &str, key: &str) -> Result<bool, BundleError> {
    Ok(field(object, at, key, Kind::Bool)?
        .and_then(Value::as_bool)
        .unwrap_or_default())
}

/// Case folding close to Go's key matching (which also folds `ſ` and the
/// Kelvin sign onto ASCII letters).
fn fold(key: &str) -> String {
    key.chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'ſ' { 's' } else { c })
        .collect()
}

/// Rules for a `file_list` name when building: a relative path with forward
/// slashes, written plainly (no `.`, `..` or empty segments), so the zip entry,
/// the file the gateway unpacks and the file it hashes are one and the same.
/// Returns why a name is refused.
pub(super) fn check_file_name(name: &str) -> Result<(), &'static str> {
    check_entry_name(name)?;
    if name.contains('\\') {
        return Err("uses a backslash; write paths with forward slashes");
    }
    if name.contains('\0') {
        return Err("contains a NUL character");
    }
    if name == MANIFEST_NAME {
        return Err("is the bundle's own manifest; it is added to the zip automatically");
    }
    for segment in name.split('/') {
        match segment {
            "" => return Err("has an empty path segment or ends with \"/\"; name a file"),
            "." => return Err("has a \".\" segment; write the path without it"),
            _ => {}
        }
    }
    Ok(())
}

/// The gateway's rule for a name it unpacks or reads from its bundle folder:
/// not empty, not absolute, no `..` segment. Backslashes count as separators
/// here, so that the rule holds wherever the zip is unpacked.
pub(super) fn check_entry_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    let bytes = name.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if name.starts_with(['/', '\\']) || drive {
        return Err("is an absolute path; write it relative to the bundle's top level");
    }
    if name.split(['/', '\\']).any(|segment| segment == "..") {
        return Err("contains a \"..\" segment, which leaves the bundle's folder");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
