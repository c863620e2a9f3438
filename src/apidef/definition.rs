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

use serde_json::{Map, Value};

use crate::bundle::{self, BundleError, Middleware};

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
        return Ok(oas(extension, &mut reader));
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
        return Ok(classic(&root, &mut reader));
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

/// Authentication methods of a classic definition that run beside custom
/// authentication when switched on.
const CLASSIC_OTHER_AUTH: [&str; 7] = [
    "use_standard_auth",
    "use_basic_auth",
    "enable_jwt",
    "use_oauth2",
    "use_openid",
    "enable_signature_checking",
    "use_mutual_tls_auth",
];

fn classic(root: &Map<String, Value>, r: &mut Reader) -> ApiDefinition {
    let custom_middleware = match r.get(root, "", "custom_middleware") {
        None => Ok(Middleware::default()),
        Some(Value::Object(section)) => {
            bundle::read_custom_middleware(section, "custom_middleware")
        }
        Some(_) => Err(BundleError::FieldType {
            field: "custom_middleware".to_owned(),
            expected: "an object",
        }),
    };
    let mut versioned = true;
    let mut versions = Vec::new();
    let mut headers = Vec::new();
    let mut ignored = Vec::new();
    if let Some(data) = r.object(root, "", "version_data") {
        versioned = !r.boolean(data, "version_data", "not_versioned");
        if let Some(map) = r.object(data, "version_data", "versions") {
            for (name, version) in map {
                versions.push(name.clone());
                let at = format!("version_data.versions.{name}");
                let Value::Object(version) = version else {
                    r.problems.push((
                        at,
                        "must be an object; Tyk cannot load the definition".into(),
                    ));
                    continue;
                };
                headers.push(classic_headers(version, &at, r));
                ignored.extend(classic_ignored(version, &at, r));
            }
        }
    }
    // With options_passthrough, OPTIONS requests skip every middleware,
    // authentication included (spec/tyk-coprocess.md §2.5).
    let passthrough = match r.object(root, "", "CORS") {
        Some(cors) => r.boolean(cors, "CORS", "options_passthrough"),
        None => false,
    };
    let listen_path = match r.object(root, "", "proxy") {
        Some(proxy) => r.string(proxy, "proxy", "listen_path"),
        None => String::new(),
    };
    let other_auth = CLASSIC_OTHER_AUTH
        .iter()
        .filter(|key| r.boolean(root, "", key))
        .map(|key| (*key).to_owned())
        .collect();
    // `enable_coprocess_auth` is the older name; Tyk turns it into
    // `custom_plugin_auth_enabled` when it loads the definition.
    let custom_auth = r.boolean(root, "", "custom_plugin_auth_enabled")
        | r.boolean(root, "", "enable_coprocess_auth");
    ApiDefinition {
        kind: Kind::Classic,
        api_id: r.string(root, "", "api_id"),
        name: r.string(root, "", "name"),
        org_id: r.string(root, "", "org_id"),
        keyless: r.boolean(root, "", "use_keyless"),
        custom_auth,
        other_auth,
        base_identity: r.string(root, "", "base_identity_provided_by"),
        strip_auth_data: r.boolean(root, "", "strip_auth_data"),
        bundle: r.string(root, "", "custom_middleware_bundle"),
        bundle_enabled: !r.boolean(root, "", "custom_middleware_bundle_disabled"),
        middleware: custom_middleware,
        config_data: root.get("config_data").filter(|v| !v.is_null()).cloned(),
        config_data_enabled: !r.boolean(root, "", "config_data_disabled"),
        versioned,
        versions,
        headers,
        options_passthrough: passthrough,
        ignored,
        listen_path,
        problems: std::mem::take(&mut r.problems),
    }
}

/// A classic version's global request headers.
fn classic_headers(version: &Map<String, Value>, at: &str, r: &mut Reader) -> HeaderSet {
    let mut add = Vec::new();
    if let Some(map) = r.object(version, at, "global_headers") {
        for (name, value) in map {
            match value {
                Value::String(value) => add.push((name.clone(), value.clone())),
                _ => r.wrong_type(&join(at, "global_headers"), name, "a string"),
            }
        }
    }
    HeaderSet {
        field: join(at, "global_headers"),
        enabled: !r.boolean(version, at, "global_headers_disabled"),
        add,
        remove: r.strings(version, at, "global_headers_remove"),
    }
}

/// A classic version's paths that skip authentication.
fn classic_ignored(version: &Map<String, Value>, at: &str, r: &mut Reader) -> Vec<String> {
    let mut paths = Vec::new();
    if let Some(extended) = r.object(version, at, "extended_paths") {
        let at = join(at, "extended_paths");
        for entry in r.array(extended, &at, "ignored").into_iter().flatten() {
            if let Some(path) = entry.get("path").and_then(Value::as_str) {
                paths.push(path.to_owned());
            }
        }
    }
    if let Some(old) = r.object(version, at, "paths") {
        paths.extend(r.strings(old, &join(at, "paths"), "ignored"));
    }
    paths
}

const X: &str = "x-tyk-api-gateway";

fn oas(x: &Map<String, Value>, r: &mut Reader) -> ApiDefinition {
    let empty = Map::new();
    let info = r.object(x, X, "info").unwrap_or(&empty);
    let at_info = join(X, "info");
    let server = r.object(x, X, "server").unwrap_or(&empty);
    let at_server = join(X, "server");
    let listen_path = match r.object(server, &at_server, "listenPath") {
        Some(listen) => r.string(listen, &join(&at_server, "listenPath"), "value"),
        None => String::new(),
    };
    let at_auth = join(&at_server, "authentication");
    let auth = r
        .object(server, &at_server, "authentication")
        .unwrap_or(&empty);
    let at_custom = join(&at_auth, "custom");
    let custom = r.object(auth, &at_auth, "custom").unwrap_or(&empty);
    let at_config = join(&at_custom, "config");
    let config = r.object(custom, &at_custom, "config");

    let mut other_auth = Vec::new();
    for method in ["hmac", "oidc"] {
        if let Some(section) = r.object(auth, &at_auth, method)
            && r.boolean(section, &join(&at_auth, method), "enabled")
        {
            other_auth.push(join(&at_auth, method));
        }
    }
    if let Some(schemes) = r.object(auth, &at_auth, "securitySchemes") {
        for (name, scheme) in schemes {
            if scheme.get("enabled").and_then(Value::as_bool) == Some(true) {
                other_auth.push(format!("{at_auth}.securitySchemes.{name}"));
            }
        }
    }

    let at_middleware = join(X, "middleware");
    let middleware = r.object(x, X, "middleware").unwrap_or(&empty);
    let at_global = join(&at_middleware, "global");
    let global = r
        .object(middleware, &at_middleware, "global")
        .unwrap_or(&empty);
    let at_plugin = join(&at_global, "pluginConfig");
    let plugin = r
        .object(global, &at_global, "pluginConfig")
        .unwrap_or(&empty);
    let (bundle, bundle_enabled) = match r.object(plugin, &at_plugin, "bundle") {
        Some(b) => {
            let at = join(&at_plugin, "bundle");
            (r.string(b, &at, "path"), r.boolean(b, &at, "enabled"))
        }
        None => (String::new(), false),
    };
    let (config_data, config_data_enabled) = match r.object(plugin, &at_plugin, "data") {
        Some(data) => {
            let at = join(&at_plugin, "data");
            let enabled = r.boolean(data, &at, "enabled");
            (data.get("value").filter(|v| !v.is_null()).cloned(), enabled)
        }
        None => (None, false),
    };

    // The classic section Tyk converts these settings into.
    let mut section = Map::new();
    if let Some(driver) = plugin.get("driver") {
        section.insert("driver".into(), driver.clone());
    }
    section.insert(
        "auth_check".into(),
        Value::Object(oas_hook(config, &at_config, r)),
    );
    if let Some(config) = config
        && let Some(extractor) = r.object(config, &at_config, "idExtractor")
    {
        section.insert(
            "id_extractor".into(),
            Value::Object(oas_extractor(
                extractor,
                &join(&at_config, "idExtractor"),
                r,
            )),
        );
    }
    for (list, plural, singular) in [
        ("pre", "prePlugins", "prePlugin"),
        (
            "post_key_auth",
            "postAuthenticationPlugins",
            "postAuthenticationPlugin",
        ),
        ("post", "postPlugins", "postPlugin"),
        ("response", "responsePlugins", "responsePlugin"),
    ] {
        // The plural form wins over the deprecated one, as in Tyk.
        let entries = match r.array(global, &at_global, plural) {
            Some(entries) => Some((entries, join(&at_global, plural))),
            None => r.object(global, &at_global, singular).and_then(|old| {
                let at = join(&at_global, singular);
                r.array(old, &at, "plugins")
                    .map(|entries| (entries, join(&at, "plugins")))
            }),
        };
        if let Some((entries, at)) = entries {
            let hooks = entries
                .iter()
                .enumerate()
                .map(|(i, entry)| {
                    Value::Object(oas_hook(entry.as_object(), &format!("{at}[{i}]"), r))
                })
                .collect();
            section.insert(list.into(), Value::Array(hooks));
        }
    }
    let own = bundle::read_custom_middleware(&section, &format!("{X} (as custom_middleware)"));

    let mut headers = Vec::new();
    if let Some(transform) = r.object(global, &at_global, "transformRequestHeaders") {
        let at = join(&at_global, "transformRequestHeaders");
        let mut add = Vec::new();
        for entry in r.array(transform, &at, "add").into_iter().flatten() {
            match (
                entry.get("name").and_then(Value::as_str),
                entry.get("value").and_then(Value::as_str),
            ) {
                (Some(name), Some(value)) => add.push((name.to_owned(), value.to_owned())),
                _ => r.wrong_type(&at, "add", "a list of {name, value} strings"),
            }
        }
        headers.push(HeaderSet {
            enabled: r.boolean(transform, &at, "enabled"),
            remove: r.strings(transform, &at, "remove"),
            field: at,
            add,
        });
    }
    let options_passthrough = match r.object(global, &at_global, "cors") {
        Some(cors) => r.boolean(cors, &join(&at_global, "cors"), "optionsPassthrough"),
        None => false,
    };
    let mut ignored = Vec::new();
    if let Some(operations) = r.object(middleware, &at_middleware, "operations") {
        for (id, operation) in operations {
            let skips = operation
                .get("ignoreAuthentication")
                .and_then(|i| i.get("enabled"))
                .and_then(Value::as_bool)
                == Some(true);
            if skips {
                ignored.push(format!("operation {id}"));
            }
        }
    }

    ApiDefinition {
        kind: Kind::Oas,
        api_id: r.string(info, &at_info, "id"),
        name: r.string(info, &at_info, "name"),
        org_id: r.string(info, &at_info, "orgId"),
        // Tyk: `use_keyless` is the negation of authentication.enabled.
        keyless: !r.boolean(auth, &at_auth, "enabled"),
        custom_auth: r.boolean(custom, &at_custom, "enabled"),
        other_auth,
        base_identity: r.string(auth, &at_auth, "baseIdentityProvider"),
        strip_auth_data: r.boolean(auth, &at_auth, "stripAuthorizationData"),
        bundle,
        bundle_enabled,
        middleware: own,
        config_data,
        config_data_enabled,
        // OAS definitions are never versioned in the classic sense: each
        // version is a definition of its own, with its own API ID.
        versioned: false,
        versions: Vec::new(),
        headers,
        options_passthrough,
        ignored,
        listen_path,
        problems: std::mem::take(&mut r.problems),
    }
}

/// An OAS plugin entry (`{enabled, functionName, path, rawBodyOnly}`) as a
/// classic hook entry. An absent entry is a disabled one, as in Tyk's
/// conversion.
fn oas_hook(entry: Option<&Map<String, Value>>, at: &str, r: &mut Reader) -> Map<String, Value> {
    let mut hook = Map::new();
    let enabled = entry.is_some_and(|e| r.boolean(e, at, "enabled"));
    hook.insert("disabled".into(), Value::Bool(!enabled));
    if let Some(entry) = entry {
        for (from, to) in [
            ("functionName", "name"),
            ("path", "path"),
            ("rawBodyOnly", "raw_body_only"),
            ("requireSession", "require_session"),
        ] {
            if let Some(value) = entry.get(from) {
                hook.insert(to.into(), value.clone());
            }
        }
    }
    hook
}

/// An OAS `idExtractor` as the classic `id_extractor`.
fn oas_extractor(extractor: &Map<String, Value>, at: &str, r: &mut Reader) -> Map<String, Value> {
    let mut classic = Map::new();
    let enabled = r.boolean(extractor, at, "enabled");
    classic.insert("disabled".into(), Value::Bool(!enabled));
    for (from, to) in [("source", "extract_from"), ("with", "extract_with")] {
        if let Some(value) = extractor.get(from) {
            classic.insert(to.into(), value.clone());
        }
    }
    if let Some(config) = r.object(extractor, at, "config") {
        let mut converted = Map::new();
        for (from, to) in [
            ("headerName", "header_name"),
            ("formParamName", "param_name"),
        ] {
            if let Some(value) = config.get(from) {
                converted.insert(to.into(), value.clone());
            }
        }
        classic.insert("extractor_config".into(), Value::Object(converted));
    }
    classic
}
