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

/// The parts of `custom_middleware` that decide what the gateway calls.
#[derive(Debug, Default)]
pub(super) struct Middleware {
    pub driver: String,
    pub auth_check: Hook,
    /// `(list, hook)` for every entry of the hook lists, in chain order.
    pub hooks: Vec<(&'static str, Hook)>,
    /// See [`super::VerifyReport::id_extractor`].
    pub id_extractor: bool,
}

#[derive(Debug, Default)]
pub(super) struct Hook {
    pub name: String,
    pub disabled: bool,
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
            Some(Value::Object(section)) => Middleware::parse(section)?,
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
        if self.middleware.auth_check.name.is_empty() && self.middleware.hooks.is_empty() {
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
    fn parse(section: &Map<String, Value>) -> Result<Self, BundleError> {
        let at = CUSTOM_MIDDLEWARE;
        let driver = string(section, at, "driver")?;
        let auth_check = match field(section, at, "auth_check", Kind::Object)? {
            Some(Value::Object(hook)) => Hook::parse(hook, &format!("{at}.auth_check"))?,
            _ => Hook::default(),
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
            Some(Value::Object(extractor)) => {
                let at = format!("{at}.id_extractor");
                let disabled = boolean(extractor, &at, "disabled")?;
                let with = string(extractor, &at, "extract_with")?;
                string(extractor, &at, "extract_from")?;
                field(extractor, &at, "extractor_config", Kind::Object)?;
                !disabled && EXTRACTORS.contains(&with.as_str())
            }
            _ => false,
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
        let hook = &self.auth_check;
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
}

impl Hook {
    fn parse(hook: &Map<String, Value>, at: &str) -> Result<Self, BundleError> {
        string(hook, at, "path")?;
        boolean(hook, at, "require_session")?;
        boolean(hook, at, "raw_body_only")?;
        Ok(Self {
            name: string(hook, at, "name")?,
            disabled: boolean(hook, at, "disabled")?,
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
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Manifest, BundleError> {
        Manifest::parse(json.as_bytes(), "test manifest")
    }

    fn buildable(json: &str) -> Result<(), BundleError> {
        parse(json)?.check_buildable()
    }

    const GRPC_AUTH: &str = r#"{"file_list": [], "custom_middleware":
        {"driver": "grpc", "auth_check": {"name": "PhantomToken"}}}"#;

    #[test]
    fn minimal_grpc_auth_manifest_is_buildable() {
        let manifest = parse(GRPC_AUTH).unwrap();
        manifest.check_buildable().unwrap();
        assert_eq!(manifest.middleware.driver, "grpc");
        assert_eq!(
            manifest.middleware.active_auth_check(),
            Some("PhantomToken")
        );
        assert!(manifest.file_list.is_empty());
        assert_eq!(manifest.checksum, "");
        assert_eq!(manifest.signature, "");
    }

    #[test]
    fn a_missing_or_empty_driver_is_refused() {
        for json in [
            r#"{"custom_middleware": {"auth_check": {"name": "A"}}}"#,
            r#"{"custom_middleware": {"driver": "", "auth_check": {"name": "A"}}}"#,
            r#"{"custom_middleware": {"driver": null, "auth_check": {"name": "A"}}}"#,
            r#"{"file_list": []}"#,
        ] {
            assert!(
                matches!(buildable(json), Err(BundleError::NoDriver)),
                "{json}"
            );
        }
    }

    #[test]
    fn a_manifest_without_hooks_is_refused() {
        for json in [
            r#"{"custom_middleware": {"driver": "grpc"}}"#,
            r#"{"custom_middleware": {"driver": "grpc", "auth_check": {"name": ""}}}"#,
            r#"{"custom_middleware": {"driver": "grpc", "pre": [], "post": [],
                "post_key_auth": [], "response": []}}"#,
        ] {
            let error = buildable(json).unwrap_err();
            assert!(matches!(error, BundleError::NoHooks), "{json}");
            assert!(error.to_string().contains("auth_check.name"), "{error}");
        }
    }

    #[test]
    fn any_list_hook_satisfies_the_hook_rule() {
        for list in HOOK_LISTS {
            let json = format!(
                r#"{{"custom_middleware": {{"driver": "grpc", "{list}": [{{"name": "H"}}]}}}}"#
            );
            buildable(&json).unwrap();
        }
    }

    #[test]
    fn hooks_are_reported_in_chain_order_without_disabled_ones() {
        let manifest = parse(
            r#"{"custom_middleware": {"driver": "grpc",
                "response": [{"name": "R"}],
                "post": [{"name": "P1"}, {"name": "P2", "disabled": true}],
                "post_key_auth": [{"name": "InjectJwtPostKeyAuth"}],
                "pre": [{"name": "Pre"}],
                "auth_check": {"name": "Auth", "disabled": true}}}"#,
        )
        .unwrap();
        assert_eq!(
            manifest.middleware.active_hooks(),
            [
                "pre:Pre",
                "post_key_auth:InjectJwtPostKeyAuth",
                "post:P1",
                "response:R"
            ]
        );
        assert_eq!(manifest.middleware.active_auth_check(), None);
    }

    #[test]
    fn id_extractor_is_active_only_when_enabled_with_a_known_method() {
        let cases = [
            (
                r#"{"extract_from": "header", "extract_with": "value"}"#,
                true,
            ),
            (r#"{"extract_with": "regex", "disabled": false}"#, true),
            (r#"{"extract_with": "xpath"}"#, true),
            (r#"{"extract_with": "value", "disabled": true}"#, false),
            (r#"{"extract_with": "jsonpath"}"#, false),
            (r#"{}"#, false),
            ("null", false),
        ];
        for (extractor, active) in cases {
            let json = format!(
                r#"{{"custom_middleware": {{"driver": "grpc", "id_extractor": {extractor}}}}}"#
            );
            assert_eq!(
                parse(&json).unwrap().middleware.id_extractor,
                active,
                "{extractor}"
            );
        }
    }

    #[test]
    fn fields_of_the_wrong_type_are_named() {
        let cases = [
            (r#"{"file_list": "a.py"}"#, "file_list"),
            (r#"{"file_list": ["a.py", 3]}"#, "file_list"),
            (r#"{"checksum": 5}"#, "checksum"),
            (r#"{"custom_middleware": []}"#, "custom_middleware"),
            (
                r#"{"custom_middleware": {"driver": 1}}"#,
                "custom_middleware.driver",
            ),
            (
                r#"{"custom_middleware": {"pre": {"name": "A"}}}"#,
                "custom_middleware.pre",
            ),
            (
                r#"{"custom_middleware": {"post": ["A"]}}"#,
                "custom_middleware.post",
            ),
            (
                r#"{"custom_middleware": {"auth_check": {"name": "A", "disabled": "yes"}}}"#,
                "custom_middleware.auth_check.disabled",
            ),
            (
                r#"{"custom_middleware": {"response": [{"name": "A"}, {"raw_body_only": 1}]}}"#,
                "custom_middleware.response[1].raw_body_only",
            ),
            (
                r#"{"custom_middleware": {"id_extractor": {"extractor_config": "x"}}}"#,
                "custom_middleware.id_extractor.extractor_config",
            ),
        ];
        for (json, expected) in cases {
            match parse(json) {
                Err(BundleError::FieldType { field, .. }) => assert_eq!(field, expected, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }

    #[test]
    fn non_json_and_non_object_manifests_are_refused() {
        assert!(matches!(parse("{"), Err(BundleError::ManifestJson { .. })));
        assert!(matches!(
            parse("[]"),
            Err(BundleError::ManifestNotObject { .. })
        ));
    }

    #[test]
    fn keys_differing_only_in_case_are_refused() {
        let cases = [
            (r#"{"File_List": []}"#, "File_List", "file_list"),
            (r#"{"CHECKSUM": ""}"#, "CHECKSUM", "checksum"),
            (
                r#"{"custom_middleware": {"Driver": "grpc"}}"#,
                "custom_middleware.Driver",
                "custom_middleware.driver",
            ),
            (
                r#"{"custom_middleware": {"auth_check": {"Name": "A"}}}"#,
                "custom_middleware.auth_check.Name",
                "custom_middleware.auth_check.name",
            ),
            // The Kelvin sign folds onto "k" in the gateway's matching.
            (
                "{\"custom_middleware\": {\"post_\u{212a}ey_auth\": []}}",
                "custom_middleware.post_\u{212a}ey_auth",
                "custom_middleware.post_key_auth",
            ),
        ];
        for (json, found_key, expected_key) in cases {
            match parse(json) {
                Err(BundleError::KeyCase { found, expected }) => {
                    assert_eq!(
                        (found.as_str(), expected.as_str()),
                        (found_key, expected_key)
                    );
                }
                other => panic!("{json}: {other:?}"),
            }
        }
    }

    #[test]
    fn file_names_follow_the_path_rules() {
        for good in ["a.py", "lib/x/helper.py", "my file.txt", "a..b", ".hidden"] {
            assert_eq!(check_file_name(good), Ok(()), "{good}");
        }
        let bad = [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("\\share\\a", "absolute"),
            ("C:/a.py", "absolute"),
            ("../evil", ".."),
            ("lib/../../evil", ".."),
            ("lib\\..\\evil", ".."),
            ("lib\\a.py", "backslash"),
            ("a\0b", "NUL"),
            ("lib//a.py", "empty path segment"),
            ("lib/", "empty path segment"),
            ("./a.py", "\".\" segment"),
            ("manifest.json", "manifest"),
        ];
        for (name, reason) in bad {
            let refused = check_file_name(name).unwrap_err();
            assert!(refused.contains(reason), "{name:?}: {refused}");
        }
    }

    #[test]
    fn entry_names_are_refused_only_when_absolute_or_climbing() {
        for good in ["a.py", "lib/", "lib/a.py", "./a.py", "a..b/c"] {
            assert_eq!(check_entry_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "/abs",
            "\\abs",
            "c:\\x",
            "..",
            "../evil",
            "a/../../b",
            "a\\..\\b",
        ] {
            assert!(check_entry_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn build_rejects_bad_and_repeated_file_list_names() {
        let json = |list: &str| {
            format!(
                r#"{{"file_list": {list}, "custom_middleware":
                    {{"driver": "grpc", "auth_check": {{"name": "A"}}}}}}"#
            )
        };
        match buildable(&json(r#"["ok.py", "../evil.py"]"#)) {
            Err(BundleError::BadFileName { name, .. }) => assert_eq!(name, "../evil.py"),
            other => panic!("{other:?}"),
        }
        match buildable(&json(r#"["a.py", "b.py", "a.py"]"#)) {
            Err(BundleError::DuplicateFile { name }) => assert_eq!(name, "a.py"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sealing_fills_checksum_and_signature_and_keeps_unknown_keys() {
        let manifest = parse(
            r#"{"custom_middleware": {"driver": "grpc", "auth_check": {"name": "A"},
                "traffic_logs": {"name": "T"}}, "vendor_note": {"x": [1, 2]},
                "checksum": "stale", "signature": "stale"}"#,
        )
        .unwrap();
        let sealed: Value =
            serde_json::from_slice(&manifest.sealed("abc", "c2ln").unwrap()).unwrap();
        assert_eq!(sealed["checksum"], "abc");
        assert_eq!(sealed["signature"], "c2ln");
        assert_eq!(sealed["file_list"], serde_json::json!([]));
        assert_eq!(sealed["vendor_note"], serde_json::json!({"x": [1, 2]}));
        assert_eq!(sealed["custom_middleware"]["traffic_logs"]["name"], "T");
        assert_eq!(sealed["custom_middleware"]["auth_check"]["name"], "A");
    }
}
