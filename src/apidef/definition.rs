//! Classic and OAS API definitions read into one [`ApiDefinition`]: only the
//! settings the plugin depends on, each remembered with the field it came
//! from so that a finding can name it in the definition's own terms.
//!
//! Tyk reads an OAS definition by converting its `x-tyk-api-gateway`
//! extension into the classic structure (spec/tyk-coprocess.md §2.2), so the
//! OAS plugin settings are turned into a classic `custom_middleware` section
//! here too, and that section is read by the bundle module's parser, the one
//! that reads manifests.
//!
//! Go's JSON decoder leaves a field of the wrong type unread and fails the
//! whole definition; it also matches struct keys without regard to case.
//! Both are reported as problems of the definition: a key spelt in another
//! case is not read here, so that this reading and Tyk's never differ
//! silently.

mod classic;
mod oas;

use serde_json::{Map, Value};

use crate::bundle::{BundleError, Middleware};

/// Which schema a definition is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The classic (Tyk native) API definition.
    Classic,
    /// An OpenAPI document with Tyk's `x-tyk-api-gateway` extension.
    Oas,
}

/// The settings findings refer to, by concept; [`Setting::field`] gives the
/// field's path in either schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Keyless,
    CustomAuth,
    Bundle,
    BundleEnabled,
    Driver,
    AuthCheck,
    PostKeyAuth,
    OtherHooks,
    IdExtractor,
    ConfigData,
    ConfigDataEnabled,
    StripAuthData,
    BaseIdentity,
    OptionsPassthrough,
    IgnoredPaths,
    /// The definition's own plugin section, replaced by a bundle's.
    OwnMiddleware,
}

impl Setting {
    /// The field's path in a definition of `kind`.
    pub fn field(self, kind: Kind) -> &'static str {
        match kind {
            Kind::Classic => match self {
                Setting::Keyless => "use_keyless",
                Setting::CustomAuth => "custom_plugin_auth_enabled",
                Setting::Bundle => "custom_middleware_bundle",
                Setting::BundleEnabled => "custom_middleware_bundle_disabled",
                Setting::Driver => "custom_middleware.driver",
                Setting::AuthCheck => "custom_middleware.auth_check",
                Setting::PostKeyAuth => "custom_middleware.post_key_auth",
                Setting::OtherHooks => "custom_middleware",
                Setting::IdExtractor => "custom_middleware.id_extractor",
                Setting::ConfigData => "config_data",
                Setting::ConfigDataEnabled => "config_data_disabled",
                Setting::StripAuthData => "strip_auth_data",
                Setting::BaseIdentity => "base_identity_provided_by",
                Setting::OptionsPassthrough => "CORS.options_passthrough",
                Setting::IgnoredPaths => "version_data.versions.*.extended_paths.ignored",
                Setting::OwnMiddleware => "custom_middleware",
            },
            Kind::Oas => match self {
                Setting::Keyless => "x-tyk-api-gateway.server.authentication.enabled",
                Setting::CustomAuth => "x-tyk-api-gateway.server.authentication.custom.enabled",
                Setting::Bundle => "x-tyk-api-gateway.middleware.global.pluginConfig.bundle.path",
                Setting::BundleEnabled => {
                    "x-tyk-api-gateway.middleware.global.pluginConfig.bundle.enabled"
                }
                Setting::Driver => "x-tyk-api-gateway.middleware.global.pluginConfig.driver",
                Setting::AuthCheck => "x-tyk-api-gateway.server.authentication.custom.config",
                Setting::PostKeyAuth => {
                    "x-tyk-api-gateway.middleware.global.postAuthenticationPlugins"
                }
                Setting::OtherHooks => "x-tyk-api-gateway.middleware.global",
                Setting::IdExtractor => {
                    "x-tyk-api-gateway.server.authentication.custom.config.idExtractor"
                }
                Setting::ConfigData => {
                    "x-tyk-api-gateway.middleware.global.pluginConfig.data.value"
                }
                Setting::ConfigDataEnabled => {
                    "x-tyk-api-gateway.middleware.global.pluginConfig.data.enabled"
                }
                Setting::StripAuthData => {
                    "x-tyk-api-gateway.server.authentication.stripAuthorizationData"
                }
                Setting::BaseIdentity => {
                    "x-tyk-api-gateway.server.authentication.baseIdentityProvider"
                }
                Setting::OptionsPassthrough => {
                    "x-tyk-api-gateway.middleware.global.cors.optionsPassthrough"
                }
                Setting::IgnoredPaths => {
                    "x-tyk-api-gateway.middleware.operations.*.ignoreAuthentication"
                }
                Setting::OwnMiddleware => "x-tyk-api-gateway (plugin settings)",
            },
        }
    }
}

/// Request headers Tyk sets after authentication: one version's global
/// headers (classic), or the API's `transformRequestHeaders` (OAS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderSet {
    /// Where the set is written.
    pub field: String,
    /// Where its list of removed headers is written.
    pub remove_field: String,
    pub enabled: bool,
    /// `(name, value)` pairs, in the order written.
    pub add: Vec<(String, String)>,
    /// Names removed before the additions.
    pub remove: Vec<String>,
}

/// What the plugin depends on in one API definition.
#[derive(Debug)]
pub struct ApiDefinition {
    pub kind: Kind,
    pub api_id: String,
    pub name: String,
    pub org_id: String,
    /// No authentication at all: Tyk never calls the auth hook.
    pub keyless: bool,
    /// Custom plugin authentication is switched on.
    pub custom_auth: bool,
    /// Fields of other authentication methods switched on as well.
    pub other_auth: Vec<String>,
    pub base_identity: String,
    pub strip_auth_data: bool,
    /// The bundle name(s) as written; empty for none.
    pub bundle: String,
    pub bundle_enabled: bool,
    /// The definition's own plugin section (replaced by a bundle's).
    pub middleware: Result<Middleware, BundleError>,
    /// `config_data` as written (`None`: absent or `null`).
    pub config_data: Option<Value>,
    pub config_data_enabled: bool,
    /// Tyk checks the requested version against the session's access
    /// rights (classic `version_data.not_versioned` false).
    pub versioned: bool,
    /// The version names of `version_data.versions`.
    pub versions: Vec<String>,
    pub headers: Vec<HeaderSet>,
    pub options_passthrough: bool,
    /// Paths (classic) or operations (OAS) that skip authentication.
    pub ignored: Vec<String>,
    pub listen_path: String,
    /// `(field, problem)`: fields Tyk would not read as written.
    pub problems: Vec<(String, String)>,
}

impl ApiDefinition {
    /// How findings name the API: its ID, else its name.
    pub fn label(&self) -> String {
        if !self.api_id.is_empty() {
            self.api_id.clone()
        } else if !self.name.is_empty() {
            self.name.clone()
        } else {
            "(no api_id)".to_owned()
        }
    }
}

/// Why a file is not an API definition this tool can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error(
        "not a Tyk API definition: expected a classic definition (api_id, proxy, ...) or an \
         OpenAPI document with x-tyk-api-gateway{hint}"
    )]
    NotADefinition { hint: &'static str },
}

/// Reads one API definition from the bytes of a JSON file.
///
/// # Errors
///
/// [`DefinitionError`] when the text is not JSON or not an API definition.
pub fn read_definition(bytes: &[u8]) -> Result<ApiDefinition, DefinitionError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| DefinitionError::Json(e.to_string()))?;
    let Value::Object(root) = value else {
        return Err(DefinitionError::NotADefinition { hint: "" });
    };
    let mut reader = Reader::default();
    if let Some(Value::Object(extension)) = root.get("x-tyk-api-gateway") {
        return Ok(oas::read(extension, &mut reader));
    }
    const CLASSIC_KEYS: [&str; 6] = [
        "api_id",
        "proxy",
        "version_data",
        "use_keyless",
        "custom_plugin_auth_enabled",
        "custom_middleware_bundle",
    ];
    if CLASSIC_KEYS.iter().any(|key| root.contains_key(*key)) {
        return Ok(classic::read(&root, &mut reader));
    }
    let hint = if root.contains_key("api_definition") {
        " (a Dashboard export? check the object under api_definition on its own)"
    } else {
        ""
    };
    Err(DefinitionError::NotADefinition { hint })
}

/// Reads typed fields, collecting the problems Tyk's decoder would have.
#[derive(Default)]
struct Reader {
    problems: Vec<(String, String)>,
}

/// `parent.key` for messages.
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl Reader {
    /// The value of struct field `key` in `object` at path `at`, if present
    /// and not `null`.
    fn get<'a>(
        &mut self,
        object: &'a Map<String, Value>,
        at: &str,
        key: &str,
    ) -> Option<&'a Value> {
        if let Some(other) = object
            .keys()
            .find(|other| other.as_str() != key && other.eq_ignore_ascii_case(key))
        {
            self.problems.push((
                join(at, other),
                format!(
                    "Tyk reads this key as {key:?} (it ignores case in key names) but this check \
                     does not; write it {key:?}"
                ),
            ));
        }
        object.get(key).filter(|v| !v.is_null())
    }

    fn wrong_type(&mut self, at: &str, key: &str, expected: &str) {
        self.problems.push((
            join(at, key),
            format!("must be {expected}; Tyk cannot load the definition as written"),
        ));
    }

    fn boolean(&mut self, object: &Map<String, Value>, at: &str, key: &str) -> bool {
        match self.get(object, at, key) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.wrong_type(at, key, "true or false");
                false
            }
        }
    }

    fn string(&mut self, object: &Map<String, Value>, at: &str, key: &str) -> String {
        match self.get(object, at, key) {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                self.wrong_type(at, key, "a string");
                String::new()
            }
        }
    }

    fn object<'a>(
        &mut self,
        object: &'a Map<String, Value>,
        at: &str,
        key: &str,
    ) -> Option<&'a Map<String, Value>> {
        match self.get(object, at, key) {
            None => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => {
                self.wrong_type(at, key, "an object");
                None
            }
        }
    }

    fn array<'a>(
        &mut self,
        object: &'a Map<String, Value>,
        at: &str,
        key: &str,
    ) -> Option<&'a Vec<Value>> {
        match self.get(object, at, key) {
            None => None,
            Some(Value::Array(items)) => Some(items),
            Some(_) => {
                self.wrong_type(at, key, "a list");
                None
            }
        }
    }

    /// A list of strings; other items are problems.
    fn strings(&mut self, object: &Map<String, Value>, at: &str, key: &str) -> Vec<String> {
        let Some(items) = self.array(object, at, key) else {
            return Vec::new();
        };
        let strings: Vec<String> = items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        if strings.len() != items.len() {
            self.wrong_type(at, key, "a list of strings");
        }
        strings
    }
}
